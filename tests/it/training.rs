//! The TwinTrainingJob controller's kubernetes backend on the real control plane: the trainer
//! Job and its configuration, waiting for the dataset, success and failure from the trainer's
//! termination message on a kwok GPU node, no second Job after a restart, and when a new run
//! starts (the promoted model staying meanwhile).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use twin_operator::api::{TwinDataset, TwinTrainingJob};
use twin_operator::contract::TrainerConfig;

use crate::operator::{examples_with_a_dataset, ready_message, sample};
use crate::support::repo;
use crate::support::scene::Scene;

/// The trainer Jobs of the scene, by name.
pub(crate) async fn trainer_jobs(scene: &Scene) -> Vec<String> {
    let mut names: Vec<String> = scene
        .list::<Job>()
        .await
        .iter()
        .filter(|job| job["metadata"]["labels"]["app.kubernetes.io/component"] == "trainer")
        .map(|job| job["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Applies the example TwinTrainingJob under another name, edited.
async fn edit_training_job(scene: &Scene, name: &str, edit: impl FnOnce(&mut Value)) {
    scene.apply_example_as("twintrainingjob.yaml", name, edit).await
}

/// A second build of the dataset publishes `revision` (a spec change starts build 2).
async fn publish_second_revision(scene: &Scene, revision: &str) {
    scene
        .apply_example("twindataset.yaml", |dataset| dataset["spec"]["chunking"]["maxTokens"] = json!(384))
        .await;
    scene.publish_build("paul", "paul-build-2", revision).await;
}

#[tokio::test]
async fn a_training_job_runs_the_trainer_on_gpus_and_reports_its_result() {
    let scene = Scene::new("trainer").await;
    scene.gpu_node("kwok-l4", 8).await;
    let operator = scene.operator("replica-a").await;
    scene.apply_examples().await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "WaitingForDataset", "WaitingForDataset").await;
    assert!(trainer_jobs(&scene).await.is_empty(), "no trainer runs while the dataset is not Ready");

    scene.publish_build("paul", "paul-build-1", "rev-3f9a").await;
    let running = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    assert_eq!(running["status"]["datasetRevision"], "rev-3f9a");
    assert_eq!(running["status"]["backend"]["kind"], "kubernetes");
    assert_eq!(running["status"]["backend"]["jobName"], "paul-v1-train-g1-rev3f9a");

    // The Job: the trainer image on one GPU of the example's nodes, locked down, with the Hub
    // token by reference, shared memory, and a failure the trainer explains not retried.
    let job = scene.get::<Job>("paul-v1-train-g1-rev3f9a").await.expect("the trainer Job");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "TwinTrainingJob");
    let spec = &job["spec"];
    assert_eq!(spec["backoffLimit"], 1);
    assert_eq!(spec["activeDeadlineSeconds"], 43200);
    assert_eq!(spec["podFailurePolicy"]["rules"][0]["action"], "FailJob");
    assert_eq!(spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"], json!([1]));
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "twin-trainer:test");
    assert_eq!(container["args"], json!(["--config", "/etc/twin/trainer/config.json"]));
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(container["resources"]["requests"]["nvidia.com/gpu"], "1");
    assert_eq!(container["resources"]["requests"]["memory"], "32Gi");
    assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.product"], "NVIDIA-L4");
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    assert_eq!(pod["serviceAccountName"], "twin-training");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let env = container["env"].as_array().unwrap();
    let token = env.iter().find(|e| e["name"] == "HF_TOKEN").expect("the Hub token");
    assert_eq!(token["valueFrom"]["secretKeyRef"], json!({"name": "hf", "key": "token", "optional": false}));
    assert!(
        env.iter().all(|e| e["value"].as_str().is_none_or(|v| !v.starts_with("hf_"))),
        "no secret value inline"
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let shm = volumes.iter().find(|v| v["name"] == "shm").unwrap();
    assert_eq!(shm["emptyDir"]["medium"], "Memory");

    // The configuration: the pinned revision's folder, the job's settings, the run's output.
    let config_map =
        scene.get::<ConfigMap>("paul-v1-train-g1-rev3f9a").await.expect("the trainer configuration");
    let config: TrainerConfig =
        serde_json::from_str(config_map["data"]["config.json"].as_str().unwrap()).unwrap();
    assert_eq!(config.dataset_uri, "s3://twins-bucket/twins/datasets/paul/rev-3f9a");
    assert_eq!(config.dataset_revision, "rev-3f9a");
    assert_eq!(config.base_model_uri, "hf://meta-llama/Llama-3.1-8B");
    assert_eq!(config.output_uri, "s3://twins-bucket/twins/models/paul-v1/g1-rev3f9a");
    assert_eq!(serde_json::to_value(&config.sft).unwrap()["method"], "qlora");
    assert!(config.dpo.enabled);

    // A restarted operator finds the run's Job: never a second one.
    operator.shutdown().await;
    let operator = scene.operator("replica-b").await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(trainer_jobs(&scene).await, ["paul-v1-train-g1-rev3f9a"]);

    // Success: the trainer's result becomes the status.
    let result = r#"{"status":"Succeeded","adapterUri":"s3://twins-bucket/twins/models/paul-v1/g1-rev3f9a/adapter","sftTrainLoss":1.25,"sftEvalLoss":1.5,"dpoRewardAccuracy":0.75,"vllmMaxLoraRank":32,"datasetRevision":"rev-3f9a"}"#;
    scene.end_job("paul-v1-train-g1-rev3f9a", 0, result).await;
    let done = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Succeeded", "AdapterPublished").await;
    let status = &done["status"];
    assert_eq!(
        status["metrics"],
        json!({"sftTrainLoss": 1.25, "sftEvalLoss": 1.5, "dpoRewardAccuracy": 0.75})
    );
    assert_eq!(
        status["model"],
        json!({"run": "g1-rev3f9a", "datasetRevision": "rev-3f9a", "baseModel": "hf://meta-llama/Llama-3.1-8B",
               "adapterUri": "s3://twins-bucket/twins/models/paul-v1/g1-rev3f9a/adapter", "maxLoraRank": 32})
    );
    // A result with no evaluation figures passes a job without a gate, and claims no figure.
    assert_eq!(
        status["evaluation"],
        json!({"run": "g1-rev3f9a", "adapterUri": "s3://twins-bucket/twins/models/paul-v1/g1-rev3f9a/adapter",
               "passed": true, "metricsUri": "s3://twins-bucket/twins/models/paul-v1/g1-rev3f9a/metrics.json"})
    );
    assert!(status["startTime"].is_string() && status["completionTime"].is_string(), "{status}");
    assert!(status["conditions"][0]["message"].as_str().unwrap().contains("SFT loss 1.250"));
    // Counted once, with its duration (the restarted operator saw it Running already).
    let metrics = operator.metrics.encode();
    let runs = |phase: &str| {
        sample(&metrics, &format!("twin_training_runs_total{{backend=\"kubernetes\",phase=\"{phase}\"}}"))
    };
    assert_eq!((runs("Succeeded"), runs("Running")), (Some(1.0), None), "{metrics}");
    assert_eq!(
        sample(&metrics, "twin_training_run_duration_seconds_count{backend=\"kubernetes\"}"),
        Some(1.0)
    );

    // A second job asks to retrain on every new revision; it trains on the same one first.
    edit_training_job(&scene, "paul-v2", |job| job["spec"]["retrainOnNewRevision"] = json!(true)).await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v2", "Running", "Training").await;
    scene.end_job("paul-v2-train-g1-rev3f9a", 0, result).await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v2", "Succeeded", "AdapterPublished").await;

    // A new dataset revision: paul-v2 retrains on it, as a new run of the same generation;
    // paul-v1, which did not ask, keeps its adapter.
    publish_second_revision(&scene, "rev-b00c").await;
    scene.wait_for_phase::<TwinDataset>("paul", "Ready", "RevisionPublished").await;
    let retrained = scene.wait_for_phase::<TwinTrainingJob>("paul-v2", "Running", "Training").await;
    assert_eq!(retrained["status"]["datasetRevision"], "rev-b00c");
    assert_eq!(
        retrained["status"]["model"]["adapterUri"],
        "s3://twins-bucket/twins/models/paul-v2/g1-rev3f9a/adapter",
        "the promoted model stays while a new run trains"
    );
    assert!(
        retrained["status"].get("metrics").is_none() && retrained["status"].get("evaluation").is_none(),
        "a new run shows no figure of the last one: {}",
        retrained["status"]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        trainer_jobs(&scene).await,
        ["paul-v1-train-g1-rev3f9a", "paul-v2-train-g1-rev3f9a", "paul-v2-train-g1-revb00c"]
    );
    let kept = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Succeeded", "AdapterPublished").await;
    assert_eq!(kept["status"]["datasetRevision"], "rev-3f9a");
    operator.shutdown().await;
}

#[tokio::test]
async fn a_failed_trainer_fails_the_run_with_its_reason() {
    let (scene, operator) = examples_with_a_dataset("trainer-failed", "rev-1").await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    let failure = r#"{"status":"Failed","reason":"OutOfMemory","message":"SFT ran out of GPU memory with 8 samples per device of up to 2048 tokens: lower perDeviceBatchSize"}"#;
    scene.end_job("paul-v1-train-g1-rev1", 1, failure).await;
    let failed = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Failed", "OutOfMemory").await;
    let message = ready_message(&failed);
    assert!(
        message.contains("Job paul-v1-train-g1-rev1 failed: SFT ran out of GPU memory with 8 samples"),
        "{message}"
    );
    assert!(failed["status"]["completionTime"].is_string());

    // A spec change after a failure is a new run, on the same revision.
    edit_training_job(&scene, "paul-v1", |job| job["spec"]["sft"]["perDeviceBatchSize"] = json!(2)).await;
    scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Running", "Training").await;
    assert_eq!(trainer_jobs(&scene).await, ["paul-v1-train-g1-rev1", "paul-v1-train-g2-rev1"]);
    // A run whose dataset had no preference triples succeeds and says DPO was skipped.
    edit_training_job(&scene, "no-dpo", |_| {}).await;
    scene.wait_for_phase::<TwinTrainingJob>("no-dpo", "Running", "Training").await;
    let skipped = r#"{"status":"Succeeded","sftTrainLoss":1.0,"dpoRewardAccuracy":null,"dpoSkipped":"the dataset has no preference triples (preference/train.jsonl)"}"#;
    scene.end_job("no-dpo-train-g1-rev1", 0, skipped).await;
    let done = scene.wait_for_phase::<TwinTrainingJob>("no-dpo", "Succeeded", "AdapterPublished").await;
    let message = done["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.ends_with("DPO skipped: the dataset has no preference triples (preference/train.jsonl))"),
        "{message}"
    );

    // A pod that died without a result (a crash, an eviction) still fails with a pointer to the logs.
    scene.end_job("paul-v1-train-g2-rev1", 1, "").await;
    let failed = scene.wait_for_phase::<TwinTrainingJob>("paul-v1", "Failed", "TrainerFailed").await;
    assert!(
        failed["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("kubectl logs job/paul-v1-train-g2-rev1")
    );
    operator.shutdown().await;
}

/// The configuration the operator writes for the trainer, kept in trainer/tests/fixtures: the
/// trainer's own tests parse the same file, so the two ends of the contract cannot drift apart.
#[test]
fn the_trainer_configuration_is_the_one_the_trainer_reads() {
    use twin_operator::operator::training::build::{Run, RunPlaces, trainer_config};

    let job: TwinTrainingJob =
        serde_saphyr::from_str(&repo::read("manifests/examples/twintrainingjob.yaml")).unwrap();
    let dataset: TwinDataset =
        serde_saphyr::from_str(&repo::read("manifests/examples/twindataset.yaml")).unwrap();
    let run = Run::new(&job, "rev-3f9a");
    let config = trainer_config(&job, &run, &RunPlaces::of(&job, &dataset, &run).unwrap());
    let written = serde_json::to_string_pretty(&config).unwrap() + "\n";
    let path = "trainer/tests/fixtures/operator-config.json";
    if std::env::var_os("TWIN_UPDATE_FIXTURES").is_some() {
        std::fs::write(repo::path(path), &written).unwrap();
    }
    assert_eq!(
        repo::read(path),
        written,
        "regenerate with TWIN_UPDATE_FIXTURES=1 and check the trainer still reads it"
    );
}
