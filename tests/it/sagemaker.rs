//! The TwinTrainingJob controller's sagemaker backend on the real control plane: against an
//! in-memory SageMaker that speaks the service's protocol to the real SDK client (a run created
//! once and mirrored while it runs, across a restart, to success, failure and a stop;
//! throttling; the finalizer stopping a running job; the credentials Secret the chart lets the
//! operator read) and against moto's emulator (create, describe, completed).

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use twin_operator::api::TwinTrainingJob;
use twin_operator::operator::Operator;

use crate::operator::{ready_message as message, sample};
use crate::support::moto::Moto;
use crate::support::sagemaker::{self, FakeSageMaker};
use crate::support::scene::{Scene, eventually};

const EXAMPLE: &str = "paul-v1-sagemaker";

async fn start_with(
    scene: &Scene,
    identity: &str,
    client: twin_operator::operator::training::sagemaker::wire::Client,
) -> Operator {
    scene.operator_with(identity, |settings| settings.sagemaker_client = Some(client)).await
}

/// The examples applied and the dataset's first revision published: the SageMaker example
/// starts its run.
async fn examples_with_a_dataset(scene: &Scene) {
    scene.apply_examples().await;
    scene.publish_build("paul", "paul-build-1", "rev-1").await;
}

/// The training job name the status records.
async fn recorded_name(scene: &Scene, name: &str) -> String {
    eventually(&format!("{name}'s SageMaker job name"), || async {
        scene.status_of::<TwinTrainingJob>(name).await["backend"]["jobName"].as_str().map(str::to_string)
    })
    .await
}

async fn apply_variant(scene: &Scene, name: &str, edit: impl FnOnce(&mut Value)) {
    scene.apply_example_as("twintrainingjob-sagemaker.yaml", name, edit).await
}

/// An operator against `fake`, the examples applied, and the SageMaker example's run created
/// and Running: the operator and the training job's name.
async fn running_example(scene: &Scene, fake: &FakeSageMaker) -> (Operator, String) {
    let operator = start_with(scene, "replica-a", fake.client().await).await;
    examples_with_a_dataset(scene).await;
    let name = recorded_name(scene, EXAMPLE).await;
    scene.wait_for_phase::<TwinTrainingJob>(EXAMPLE, "Running", "Training").await;
    (operator, name)
}

#[tokio::test]
async fn a_sagemaker_run_is_created_once_and_mirrors_the_training_job() {
    let scene = Scene::new("sm-mirror").await;
    let fake = FakeSageMaker::start().await;
    let (operator, name) = running_example(&scene, &fake).await;
    let running = scene.get::<TwinTrainingJob>(EXAMPLE).await.unwrap();
    assert_eq!(fake.creates(), std::slice::from_ref(&name));
    assert_eq!(running["status"]["datasetRevision"], "rev-1");
    let backend = &running["status"]["backend"];
    assert_eq!(backend["kind"], "sagemaker");
    assert_eq!(
        backend["trainingJobArn"],
        format!("arn:aws:sagemaker:eu-central-1:123456789012:training-job/{name}")
    );
    assert_eq!(backend["detail"], "InProgress/Starting");
    assert!(message(&running).contains("(Starting: Preparing the instances for training)"), "{running}");

    // What SageMaker was asked: the example's image, role, instance and spot settings, one
    // channel per split, the trainer's configuration, metrics read from its result line.
    let request = fake.job(&name).unwrap().request;
    let algorithm = &request["AlgorithmSpecification"];
    assert_eq!(
        algorithm["TrainingImage"],
        "123456789012.dkr.ecr.eu-central-1.amazonaws.com/twin-trainer:0.1.0"
    );
    assert_eq!(algorithm["TrainingInputMode"], "File");
    let metrics: Vec<&str> = algorithm["MetricDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        metrics,
        [
            "sft:train_loss",
            "sft:eval_loss",
            "dpo:reward_accuracy",
            "vllm:max_lora_rank",
            "twin:chat_template",
            "twin:nll_reduction",
            "twin:author_specific_nll_reduction",
            "twin:win_rate",
            "twin:serving_nll_reduction"
        ]
    );
    assert_eq!(request["RoleArn"], "arn:aws:iam::123456789012:role/twin-sagemaker-training");
    assert_eq!(request["ResourceConfig"]["InstanceType"], "ml.g5.2xlarge");
    assert_eq!(request["ResourceConfig"]["InstanceCount"], 1);
    assert_eq!(request["EnableManagedSpotTraining"], true);
    assert_eq!(
        request["StoppingCondition"],
        json!({"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 172800})
    );
    // The published revision has no preference triples: no channel for them.
    assert_eq!(
        request["InputDataConfig"],
        json!([{"ChannelName": "instruct", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix",
            "S3Uri": "s3://twins-bucket/twins/datasets/paul/rev-1/instruct/",
            "S3DataDistributionType": "FullyReplicated"
        }}}])
    );
    let config: Value = serde_json::from_str(request["HyperParameters"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["outputUri"], "s3://twins-bucket/twins/models/paul-v1-sagemaker/g1-rev1");
    assert_eq!(config["baseModelUri"], "s3://twins-bucket/models/Llama-3.1-8B");
    assert_eq!(config["datasetRevision"], "rev-1");
    assert_eq!(
        request["OutputDataConfig"]["S3OutputPath"],
        "s3://twins-bucket/twins/models/paul-v1-sagemaker/g1-rev1/sagemaker"
    );
    let tags = request["Tags"].as_array().unwrap();
    assert!(tags.contains(&json!({"Key": "llmtwin.dev/training-job", "Value": EXAMPLE})), "{tags:?}");

    // SageMaker moves on: the status follows (polled, with no watch event).
    fake.update(&name, |job| {
        job.secondary = "Training".into();
        job.message = "Training image download completed. Training in progress.".into();
    });
    eventually("the Training secondary status", || async {
        let status = scene.status_of::<TwinTrainingJob>(EXAMPLE).await;
        (status["backend"]["detail"] == "InProgress/Training").then_some(())
    })
    .await;

    // A restarted operator describes the job it recorded: never a second one.
    operator.shutdown().await;
    let described = fake.calls(|c| c.describes);
    let operator = start_with(&scene, "replica-b", fake.client().await).await;
    eventually("the restarted operator to describe the job", || async {
        (fake.calls(|c| c.describes) > described).then_some(())
    })
    .await;
    assert_eq!(fake.creates(), std::slice::from_ref(&name));

    // Completed: the adapter and the metrics SageMaker read from the trainer's result line.
    fake.update(&name, |job| {
        job.to("Completed", "Completed");
        job.metrics = vec![
            ("sft:train_loss".into(), 1.25),
            ("sft:eval_loss".into(), 1.5),
            ("vllm:max_lora_rank".into(), 16.0),
            ("twin:nll_reduction".into(), 0.125),
            ("twin:author_specific_nll_reduction".into(), 0.0621),
            ("train:progress".into(), 100.0),
        ];
    });
    let done = scene.wait_for_phase::<TwinTrainingJob>(EXAMPLE, "Succeeded", "AdapterPublished").await;
    let status = &done["status"];
    assert_eq!(status["metrics"], json!({"sftTrainLoss": 1.25, "sftEvalLoss": 1.5}));
    assert_eq!(
        status["model"],
        json!({"run": "g1-rev1", "datasetRevision": "rev-1", "baseModel": "s3://twins-bucket/models/Llama-3.1-8B",
               "adapterUri": "s3://twins-bucket/twins/models/paul-v1-sagemaker/g1-rev1/adapter", "maxLoraRank": 16})
    );
    // The evaluation's figures, from SageMaker's metrics, judged (no gate: promoted).
    assert_eq!(
        (status["evaluation"]["nllReduction"].as_f64(), status["evaluation"]["passed"].as_bool()),
        (Some(0.125), Some(true))
    );
    assert!(status["startTime"].is_string() && status["completionTime"].is_string(), "{status}");
    assert!(message(&done).contains("DPO skipped: no reward accuracy"), "{done}");
    // The run's evaluation against its base, from its metrics.
    assert!(
        message(&done)
            .contains("held-out NLL -0.125 nats/token against the base, author-specific reduction +0.062"),
        "{done}"
    );
    let metrics = operator.metrics.encode();
    assert_eq!(
        sample(&metrics, "twin_training_runs_total{backend=\"sagemaker\",phase=\"Succeeded\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(fake.creates(), [name]);
    operator.shutdown().await;
}

#[tokio::test]
async fn a_failed_or_stopped_training_job_fails_the_run_with_its_reason() {
    let scene = Scene::new("sm-failed").await;
    let fake = FakeSageMaker::start().await;
    let (operator, name) = running_example(&scene, &fake).await;
    fake.update(&name, |job| {
        job.to("Failed", "Failed");
        job.failure_reason = Some(
            "AlgorithmError: OutOfMemory: CUDA ran out of memory at per-device batch size 8 and 2048 tokens"
                .into(),
        );
    });
    let failed = scene.wait_for_phase::<TwinTrainingJob>(EXAMPLE, "Failed", "OutOfMemory").await;
    assert!(
        message(&failed)
            .ends_with("failed: CUDA ran out of memory at per-device batch size 8 and 2048 tokens"),
        "{failed}"
    );

    // Another job, stopped outside the operator after its run time ran out.
    apply_variant(&scene, "capped", |job| {
        job["spec"]["backend"]["sagemaker"]["maxRuntimeSeconds"] = json!(3600)
    })
    .await;
    let capped = recorded_name(&scene, "capped").await;
    scene.wait_for_phase::<TwinTrainingJob>("capped", "Running", "Training").await;
    fake.update(&capped, |job| job.to("Stopped", "MaxRuntimeExceeded"));
    let stopped = scene.wait_for_phase::<TwinTrainingJob>("capped", "Failed", "MaxRuntimeExceeded").await;
    assert!(message(&stopped).contains("maxRuntimeSeconds"), "{stopped}");
    assert_eq!(fake.creates().len(), 2);
    let metrics = operator.metrics.encode();
    assert_eq!(
        sample(&metrics, "twin_training_runs_total{backend=\"sagemaker\",phase=\"Failed\"}"),
        Some(2.0)
    );
    operator.shutdown().await;
}

#[tokio::test]
async fn throttling_is_retried_and_said_in_the_status_meanwhile() {
    let scene = Scene::new("sm-throttled").await;
    let fake = FakeSageMaker::start().await;
    let (operator, name) = running_example(&scene, &fake).await;
    // Four throttled answers: the SDK's three attempts of one call fail, and the status says
    // why while the controller backs off; the next call's first attempt is throttled too, and
    // its retry answered.
    fake.throttle_next(4);
    let throttled = scene.wait_for_phase::<TwinTrainingJob>(EXAMPLE, "Running", "SageMakerUnavailable").await;
    assert!(message(&throttled).contains("ThrottlingException: Rate exceeded"), "{throttled}");
    fake.update(&name, |job| job.secondary = "Training".into());
    eventually("the run to be described again", || async {
        let status = scene.status_of::<TwinTrainingJob>(EXAMPLE).await;
        (status["conditions"][0]["reason"] == "Training"
            && status["backend"]["detail"] == "InProgress/Training")
            .then_some(())
    })
    .await;
    assert_eq!(fake.calls(|c| (c.throttled, c.throttle_next)), (4, 0));
    let metrics = operator.metrics.encode();
    assert_eq!(
        sample(
            &metrics,
            "twin_reconcile_failures_total{controller=\"twintrainingjob\",reason=\"SageMakerUnavailable\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(fake.creates(), [name]);
    operator.shutdown().await;
}

#[tokio::test]
async fn deleting_a_running_job_stops_it_before_the_object_goes() {
    let scene = Scene::new("sm-delete").await;
    let fake = FakeSageMaker::start().await;
    let (operator, name) = running_example(&scene, &fake).await;
    let jobs = scene.api::<TwinTrainingJob>();
    jobs.delete(EXAMPLE, &Default::default()).await.unwrap();
    eventually("StopTrainingJob", || async { (fake.stops() == [name.clone()]).then_some(()) }).await;
    // Stopping takes SageMaker a while: the object stays meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = jobs.get_opt(EXAMPLE).await.unwrap().expect("held by the finalizer while the job stops");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(fake.stops().len(), 1, "stopped once, then waited for");
    fake.update(&name, |job| job.to("Stopped", "Stopped"));
    eventually("the object to go once the job stopped", || async {
        jobs.get_opt(EXAMPLE).await.ok()?.is_none().then_some(())
    })
    .await;
    operator.shutdown().await;
}

#[tokio::test]
async fn a_job_without_an_image_says_which_setting_to_set() {
    let scene = Scene::new("sm-image").await;
    let fake = FakeSageMaker::start().await;
    let operator = start_with(&scene, "replica-a", fake.client().await).await;
    examples_with_a_dataset(&scene).await;
    apply_variant(&scene, "no-image", |job| {
        job["spec"]["backend"]["sagemaker"].as_object_mut().unwrap().remove("image");
    })
    .await;
    let waiting = scene.wait_for_phase::<TwinTrainingJob>("no-image", "Pending", "TrainerImageNotSet").await;
    let said = message(&waiting);
    assert!(
        said.contains("--sagemaker-trainer-image") && said.contains("workloads.sagemakerTrainerImage"),
        "{said}"
    );
    // A gated Hub model would put its token in the training job's description: refused.
    apply_variant(&scene, "gated", |job| {
        job["spec"]["baseModel"] =
            json!({"uri": "hf://meta-llama/Llama-3.1-8B", "tokenSecretRef": {"name": "hf", "key": "token"}});
    })
    .await;
    let refused = scene.wait_for_phase::<TwinTrainingJob>("gated", "Failed", "InvalidSpec").await;
    assert!(message(&refused).starts_with("spec.baseModel.tokenSecretRef"), "{refused}");
    assert_eq!(fake.creates().len(), 1, "only the example's run was created");
    operator.shutdown().await;
}

#[tokio::test]
async fn the_keys_of_the_credentials_secret_sign_the_calls() {
    let scene = Scene::new("sm-keys").await;
    let fake = FakeSageMaker::start().await;
    // Per-job clients, as in a deployment, sent to the fake.
    let operator = scene
        .operator_with("replica-a", |settings| {
            settings.sagemaker_client = None;
            settings.sagemaker_endpoint_url = Some(fake.endpoint());
        })
        .await;
    let keys = [("AWS_ACCESS_KEY_ID", "AKIAFROMSECRET"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t")];
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some("aws-training".into()), ..Default::default() },
        data: Some(keys.into_iter().map(|(k, v)| (k.to_string(), ByteString(v.into()))).collect()),
        ..Default::default()
    };
    scene.api::<Secret>().create(&Default::default(), &secret).await.unwrap();
    // The chart lets the operator read no Secret unless told which: this namespace's, by name.
    scene.plane.grant_secrets(&scene.namespace, &["aws-training", "no-such-secret"]);
    scene.apply_example("twindataset.yaml", |_| {}).await;
    apply_variant(&scene, "keyed", |job| {
        job["spec"]["backend"]["sagemaker"]["credentialsSecretRef"] = json!({"name": "aws-training"});
    })
    .await;
    scene.publish_build("paul", "paul-build-1", "rev-1").await;
    scene.wait_for_phase::<TwinTrainingJob>("keyed", "Running", "Training").await;
    let signed_by = fake.calls(|c| c.signed_by.clone());
    assert!(!signed_by.is_empty());
    assert!(
        signed_by.iter().all(|(key, region)| key == "AKIAFROMSECRET" && region == "eu-central-1"),
        "{signed_by:?}"
    );
    // A Secret that does not exist: the run waits and says which.
    apply_variant(&scene, "unkeyed", |job| {
        job["spec"]["backend"]["sagemaker"]["credentialsSecretRef"] = json!({"name": "no-such-secret"});
    })
    .await;
    let waiting =
        scene.wait_for_phase::<TwinTrainingJob>("unkeyed", "Pending", "CredentialsSecretNotFound").await;
    assert!(message(&waiting).contains("\"no-such-secret\""), "{waiting}");
    assert_eq!(fake.creates().len(), 1);
    operator.shutdown().await;
}

#[tokio::test]
async fn a_run_against_motos_sagemaker_is_created_described_and_completed() {
    let moto = Moto::start();
    let client = sagemaker::client_at(&moto.endpoint()).await;
    let scene = Scene::new("sm-moto").await;
    let operator = start_with(&scene, "replica-a", client.clone()).await;
    examples_with_a_dataset(&scene).await;
    // moto completes a training job as soon as it is created.
    let done = scene.wait_for_phase::<TwinTrainingJob>(EXAMPLE, "Succeeded", "AdapterPublished").await;
    let name = done["status"]["backend"]["jobName"].as_str().unwrap().to_string();
    assert_eq!(
        done["status"]["model"]["adapterUri"],
        "s3://twins-bucket/twins/models/paul-v1-sagemaker/g1-rev1/adapter"
    );
    assert!(
        done["status"]["backend"]["trainingJobArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("training-job/{name}"))
    );
    // moto's view of what the operator created, read back over the same wire protocol.
    let described = client.call("DescribeTrainingJob", &json!({"TrainingJobName": name})).await.unwrap();
    assert_eq!(described["RoleArn"], "arn:aws:iam::123456789012:role/twin-sagemaker-training");
    assert_eq!(
        described["AlgorithmSpecification"]["TrainingImage"],
        "123456789012.dkr.ecr.eu-central-1.amazonaws.com/twin-trainer:0.1.0"
    );
    let config: Value =
        serde_json::from_str(described["HyperParameters"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["datasetRevision"], "rev-1");
    let listed = client.call("ListTrainingJobs", &json!({})).await.unwrap();
    assert_eq!(listed["TrainingJobSummaries"].as_array().unwrap().len(), 1, "{listed}");
    operator.shutdown().await;
}
