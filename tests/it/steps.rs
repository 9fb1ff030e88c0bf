//! The controllers' pure steps (validate, build, status) on the YAML fixtures in
//! `tests/fixtures/operator/`, the built children compared with a snapshot beside them
//! (`TWIN_UPDATE_SNAPSHOTS=1` rewrites it after a deliberate change).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use twin_operator::api::dataset::{DatasetArtifacts, DatasetPhase, DatasetStats, SourceStatus};
use twin_operator::api::endpoint::EndpointPhase;
use twin_operator::api::training::TrainingPhase;
use twin_operator::api::{TwinDataset, TwinEndpoint, TwinTrainingJob};
use twin_operator::contract::{BuildReport, FailedBuild, PublishedBuild, env, labels};
use twin_operator::operator::children::ChildSet;
use twin_operator::operator::children::job::{ContainerEnd, JobPods, ObservedJob, job_finished};
use twin_operator::operator::children::naming::{CRONJOB_NAME_LIMIT, NAME_LIMIT};
use twin_operator::operator::dataset::build;
use twin_operator::operator::dataset::status::from_build;
use twin_operator::operator::dataset::validate::{
    CONFIGMAP_RECHECK, ObservedConfigMaps, ValidDataset, validate,
};
use twin_operator::operator::driver::Validation;
use twin_operator::operator::{OperatorSettings, endpoint, training};

use crate::support::repo;

/// The documents of a fixture, by kind.
pub fn fixture(name: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple(&repo::read(&format!("tests/fixtures/operator/{name}"))).unwrap()
}

pub fn of_kind<T: DeserializeOwned>(documents: &[Value], kind: &str) -> Vec<T> {
    documents
        .iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .collect()
}

pub fn with_status<T: DeserializeOwned>(document: &Value, status: Value) -> T {
    let mut document = document.clone();
    document["status"] = status;
    serde_json::from_value(document).unwrap()
}

fn observed_config_maps(documents: &[Value], names: &[&str]) -> ObservedConfigMaps {
    let found: Vec<ConfigMap> = of_kind(documents, "ConfigMap");
    names
        .iter()
        .map(|name| {
            (name.to_string(), found.iter().find(|c| c.metadata.name.as_deref() == Some(name)).cloned())
        })
        .collect()
}

fn proceed<'a>(validation: Validation<ValidDataset<'a>, DatasetPhase>) -> ValidDataset<'a> {
    match validation {
        Validation::Proceed(valid) => valid,
        Validation::Wait(verdict) => panic!("the dataset does not validate: {verdict:?}"),
    }
}

/// Compares a child set with `tests/fixtures/operator/<name>.children.json`, rewriting it
/// under `TWIN_UPDATE_SNAPSHOTS=1`.
pub fn assert_children_snapshot(set: &ChildSet, name: &str) {
    let snapshot_path = repo::path(&format!("tests/fixtures/operator/{name}.children.json"));
    let built: Vec<&Value> = set.children().iter().map(|c| &c.object).collect();
    let built = serde_json::to_string_pretty(&built).unwrap() + "\n";
    if std::env::var_os("TWIN_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot_path, &built).unwrap();
    }
    let snapshot = std::fs::read_to_string(&snapshot_path).unwrap_or_else(|_| {
        panic!("no snapshot at {}: run with TWIN_UPDATE_SNAPSHOTS=1", snapshot_path.display())
    });
    assert!(built == snapshot, "the built children differ from {}:\n{built}", snapshot_path.display());
}

#[test]
fn a_datasets_children_match_their_snapshot() {
    let documents = fixture("dataset-paul.yaml");
    let dataset: TwinDataset = of_kind(&documents, "TwinDataset").remove(0);
    let valid = proceed(validate(&dataset, &observed_config_maps(&documents, &["notes"])));
    assert_eq!(valid.config_maps, ["notes"], "a ConfigMap two sources read is mounted once");
    let children = build::build(&valid, &OperatorSettings::for_tests("t"));
    let set = children.child_set().unwrap();
    let order: Vec<(&str, &str)> =
        set.children().iter().map(|c| (c.resource.kind.as_str(), c.name.as_str())).collect();
    assert_eq!(order, [("ConfigMap", "paul-spec"), ("Job", "paul-build-3"), ("CronJob", "paul-refresh")]);

    assert_children_snapshot(&set, "dataset-paul");

    // What the snapshot holds, said as the behaviour it is for.
    let pod = children.job.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    let read_only = |path: &str| mounts.iter().find(|m| m.mount_path == path).and_then(|m| m.read_only);
    assert_eq!(read_only("/mnt/twin/pvc/drafts"), Some(true));
    assert_eq!(read_only("/mnt/twin/pvc/twins-data"), Some(false), "the output claim is written");
    assert_eq!(read_only("/etc/twin/configmaps/notes"), Some(true));
    let variables = pod.containers[0].env.clone().unwrap();
    let secret = |name: &str| {
        let variable = variables.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name}"));
        assert!(variable.value.is_none(), "{name} must not carry the secret's value");
        let selector = variable.value_from.clone().unwrap().secret_key_ref.unwrap();
        (selector.name, selector.key)
    };
    assert_eq!(secret(&env::git_token("my-talks")), ("git".to_string(), "token".to_string()));
    assert_eq!(secret(env::GENERATOR_API_KEY), ("openai".to_string(), "api-key".to_string()));
    let job_template =
        children.cron_job.as_ref().unwrap().spec.as_ref().unwrap().job_template.metadata.clone().unwrap();
    assert_eq!(
        job_template.annotations.unwrap()[labels::DATASET_ANNOTATION],
        "paul",
        "scheduled Jobs name their dataset"
    );
}

#[test]
fn validation_says_what_is_missing_and_when_to_look_again() {
    let documents = fixture("dataset-missing-configmap.yaml");
    let dataset: TwinDataset = of_kind(&documents, "TwinDataset").remove(0);
    let Validation::Wait(verdict) = validate(&dataset, &observed_config_maps(&documents, &["notes"])) else {
        panic!("a missing ConfigMap must wait")
    };
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (DatasetPhase::Pending, "ConfigMapNotFound")
    );
    assert!(
        verdict.assessment.message.contains("\"notes\" (source \"drafts\") not found in namespace \"twins\"")
    );
    assert_eq!(verdict.recheck, Some(CONFIGMAP_RECHECK), "ConfigMaps are not watched");

    let documents = fixture("dataset-missing-key.yaml");
    let dataset: TwinDataset = of_kind(&documents, "TwinDataset").remove(0);
    let Validation::Wait(verdict) = validate(&dataset, &observed_config_maps(&documents, &["notes"])) else {
        panic!("a missing key must wait")
    };
    assert_eq!(verdict.assessment.reason, "ConfigMapKeyNotFound");
    assert!(verdict.assessment.message.contains("b.md") && !verdict.assessment.message.contains("a.md"));

    let documents = fixture("dataset-local-output.yaml");
    let dataset: TwinDataset = of_kind(&documents, "TwinDataset").remove(0);
    let Validation::Wait(verdict) = validate(&dataset, &Default::default()) else {
        panic!("file:// must fail")
    };
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (DatasetPhase::Failed, "InvalidSpec")
    );
    assert!(verdict.assessment.message.contains("twin up"));
    assert_eq!(verdict.recheck, None, "a bad spec waits for a change");
}

#[test]
fn long_names_give_unique_children_within_their_limits() {
    let documents = fixture("dataset-long-names.yaml");
    let datasets: Vec<TwinDataset> = of_kind(&documents, "TwinDataset");
    let mut names = Vec::new();
    for dataset in &datasets {
        let children =
            build::build(&proceed(validate(dataset, &Default::default())), &OperatorSettings::for_tests("t"));
        let cron_job = children.cron_job.as_ref().unwrap().metadata.name.clone().unwrap();
        let job = children.job.metadata.name.clone().unwrap();
        let config_map = children.spec_config_map.metadata.name.clone().unwrap();
        assert!(cron_job.len() <= CRONJOB_NAME_LIMIT && cron_job.ends_with("-refresh"), "{cron_job}");
        assert!(job.len() <= NAME_LIMIT && job.ends_with("-build-12"), "{job}");
        assert!(config_map.len() <= NAME_LIMIT, "{config_map}");
        for value in children.job.metadata.labels.as_ref().unwrap().values() {
            assert!(value.len() <= 63, "label value {value}");
        }
        assert!(build::builds_dataset(&children.job, dataset));
        names.extend([cron_job, job, config_map]);
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "two datasets share a child name: {names:?}");
    let other = build::build(
        &proceed(validate(&datasets[1], &Default::default())),
        &OperatorSettings::for_tests("t"),
    );
    assert!(!build::builds_dataset(&other.job, &datasets[0]));
}

fn build_job(documents: &[Value], condition: Option<&str>) -> Job {
    let dataset: TwinDataset = of_kind(documents, "TwinDataset").remove(0);
    let mut job =
        build::build(&proceed(validate(&dataset, &Default::default())), &OperatorSettings::for_tests("t"))
            .job;
    if let Some(condition) = condition {
        job.status = Some(
            serde_json::from_value(json!({"completionTime": "2026-11-30T04:10:00Z",
                "conditions": [{"type": condition, "status": "True"}]}))
            .unwrap(),
        );
    }
    job
}

#[test]
fn a_build_report_becomes_the_status() {
    let documents = fixture("dataset-local-output.yaml");
    let mut dataset_document = documents[0].clone();
    dataset_document["spec"]["output"]["uri"] = json!("s3://twins/out");
    let documents = vec![dataset_document];
    let dataset: TwinDataset = of_kind(&documents, "TwinDataset").remove(0);
    let published = BuildReport::Published(PublishedBuild {
        revision: "rev-77".into(),
        unchanged: false,
        stats: DatasetStats { documents: 12, chunks: 80, instruct_samples: 160, preference_samples: 0 },
        sources: vec![
            SourceStatus { name: "blog".into(), documents: 12, error: None },
            SourceStatus { name: "talks".into(), documents: 0, error: Some("HTTP 404".into()) },
        ],
        artifacts: DatasetArtifacts {
            root: "s3://twins/out/datasets/paul/rev-77".into(),
            ..Default::default()
        },
        clean: Default::default(),
        embedded_chunks: 80,
        quality: Default::default(),
        timings: None,
    });
    let observed = |condition, report: Option<&BuildReport>| ObservedJob {
        job: Some(build_job(&documents, condition)),
        pods: JobPods {
            ended: report
                .map(|r| ContainerEnd { message: Some(r.to_termination_message()), ..Default::default() }),
            unschedulable: None,
        },
    };
    let (verdict, ready) = from_build(&dataset, &observed(Some("Complete"), Some(&published)));
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (DatasetPhase::Ready, "RevisionPublished")
    );
    assert!(
        verdict.assessment.message.contains("sources that failed: talks"),
        "{}",
        verdict.assessment.message
    );
    assert_eq!(verdict.recheck, Some(Duration::from_secs(300)));
    assert_eq!(
        (ready.revision.as_deref(), ready.stats.as_ref().map(|s| s.chunks)),
        (Some("rev-77"), Some(80))
    );
    assert!(ready.last_build_time.is_some());

    let failed = BuildReport::Failed(FailedBuild {
        error: "no source yielded a usable document".into(),
        reason: "NoDocuments".into(),
        sources: vec![SourceStatus {
            name: "blog".into(),
            documents: 0,
            error: Some("HTTP 404 from the feed".into()),
        }],
    });
    let ready_dataset: TwinDataset = with_status(&documents[0], serde_json::to_value(&ready).unwrap());
    let (verdict, status) = from_build(&ready_dataset, &observed(Some("Failed"), Some(&failed)));
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (DatasetPhase::Failed, "NoDocuments")
    );
    assert!(verdict.assessment.message.contains("blog: HTTP 404 from the feed"));
    assert_eq!(status.revision.as_deref(), Some("rev-77"), "what was published is still there");

    let (verdict, _) = from_build(&dataset, &observed(Some("Complete"), None));
    assert_eq!(verdict.assessment.reason, "BuildResultMissing");
    let (verdict, _) = from_build(&dataset, &observed(None, None));
    assert_eq!(
        (verdict.assessment.phase, verdict.assessment.reason.as_str()),
        (DatasetPhase::Running, "Building")
    );
    assert_eq!(from_build(&dataset, &ObservedJob::default()).0.assessment.reason, "BuildPending");
    assert!(job_finished(&build_job(&documents, Some("Failed"))));
}

#[test]
fn a_training_job_waits_for_its_dataset_and_pins_its_revision() {
    let documents = fixture("training.yaml");
    let job: TwinTrainingJob = of_kind(&documents, "TwinTrainingJob").remove(0);
    let dataset = |status: Value| -> TwinDataset { with_status(&documents[1], status) };
    let settings = OperatorSettings::for_tests("t");
    let wait = |dataset: Option<&TwinDataset>| match training::validate::validate(&job, dataset, &settings) {
        Validation::Wait(verdict) => verdict,
        Validation::Proceed(pinned) => panic!("proceeded with {pinned:?}"),
    };
    let missing = wait(None);
    assert_eq!(
        (missing.assessment.phase, missing.assessment.reason.as_str()),
        (TrainingPhase::Pending, "DatasetNotFound")
    );
    assert!(missing.assessment.message.contains("spec.datasetRef.name"));
    let running = wait(Some(&dataset(json!({"phase": "Running"}))));
    assert_eq!(
        (running.assessment.phase, running.assessment.reason.as_str()),
        (TrainingPhase::WaitingForDataset, "WaitingForDataset")
    );
    let failed =
        wait(Some(&dataset(json!({"phase": "Failed", "conditions": [{"type": "Ready", "status": "False",
        "reason": "NoDocuments", "message": "Job paul-build-1 failed: no source yielded a usable document",
        "lastTransitionTime": "2026-11-30T04:10:00Z"}]}))));
    assert_eq!(failed.assessment.reason, "DatasetFailed");
    assert!(
        failed.assessment.message.contains("no source yielded a usable document"),
        "the upstream's failure is repeated"
    );

    let ready = dataset(json!({"phase": "Ready", "revision": "r1"}));
    let Validation::Proceed(pinned) = training::validate::validate(&job, Some(&ready), &settings) else {
        panic!("a Ready dataset proceeds")
    };
    assert_eq!(pinned.run.revision.as_str(), "r1");
    // The same generation keeps its revision when the dataset moves on; a new one takes the newest.
    let mut pinned_job: TwinTrainingJob =
        with_status(&documents[0], json!({"observedGeneration": 1, "datasetRevision": "r1"}));
    let newer = dataset(json!({"phase": "Ready", "revision": "r2"}));
    let revision = |job: &TwinTrainingJob| match training::validate::validate(job, Some(&newer), &settings) {
        Validation::Proceed(pinned) => pinned.run.revision,
        Validation::Wait(verdict) => panic!("{verdict:?}"),
    };
    assert_eq!(revision(&pinned_job), "r1");
    pinned_job.metadata.generation = Some(2);
    assert_eq!(revision(&pinned_job), "r2");
}

#[test]
fn an_endpoint_resolves_its_model_then_its_dataset() {
    let documents = fixture("endpoint.yaml");
    let endpoint_of =
        |document: &Value| -> TwinEndpoint { serde_json::from_value(document.clone()).unwrap() };
    let endpoint = endpoint_of(&documents[0]);
    let job = |status: Value| -> TwinTrainingJob { with_status(&documents[1], status) };
    let dataset = |status: Value| -> TwinDataset { with_status(&documents[2], status) };
    let wait_reason = |training_job: Option<&TwinTrainingJob>| match endpoint::validate::resolve_model(
        &endpoint,
        training_job,
    ) {
        Validation::Wait(verdict) => {
            (verdict.assessment.phase, verdict.assessment.reason, verdict.assessment.message)
        }
        Validation::Proceed(served) => panic!("resolved {served:?}"),
    };
    assert_eq!(wait_reason(None).1, "TrainingJobNotFound");
    assert_eq!(wait_reason(Some(&job(json!({"phase": "Running"})))).1, "WaitingForModel");
    let (phase, reason, message) =
        wait_reason(Some(&job(json!({"phase": "Failed", "conditions": [{"type": "Ready",
        "status": "False", "reason": "TrainerFailed", "message": "CUDA out of memory at batch 8",
        "lastTransitionTime": "2026-11-30T04:10:00Z"}]}))));
    assert_eq!((phase, reason.as_str()), (EndpointPhase::Failed, "TrainingJobFailed"));
    assert!(message.contains("CUDA out of memory at batch 8"), "{message}");

    let succeeded = job(json!({"phase": "Succeeded", "datasetRevision": "r1",
        "model": {"baseModel": "hf://meta-llama/Llama-3.1-8B", "adapterUri": "s3://twins/out/models/paul-v1/1/adapter"}}));
    let Validation::Proceed(served) = endpoint::validate::resolve_model(&endpoint, Some(&succeeded)) else {
        panic!("a Succeeded training job resolves")
    };
    assert_eq!(served.adapter_uri.as_deref(), Some("s3://twins/out/models/paul-v1/1/adapter"));
    let (_, verdict) = endpoint::validate::resolve_dataset(&endpoint, None, served.clone());
    assert_eq!(verdict.unwrap().assessment.reason, "DatasetNotFound");
    let (_, verdict) = endpoint::validate::resolve_dataset(
        &endpoint,
        Some(&dataset(json!({"phase": "Failed"}))),
        served.clone(),
    );
    assert_eq!(verdict.unwrap().assessment.reason, "DatasetFailed");
    let (lineage, verdict) = endpoint::validate::resolve_dataset(
        &endpoint,
        Some(&dataset(json!({"phase": "Ready", "revision": "r2"}))),
        served.clone(),
    );
    assert!(verdict.is_none(), "a Ready dataset lets the endpoint deploy: {verdict:?}");
    assert_eq!(
        (lineage.dataset_revision.as_deref(), lineage.adapter_revision.as_deref()),
        (Some("r2"), Some("r1")),
        "retrieval uses the dataset's newest revision; the lineage names the adapter's too"
    );
    // Rebuilding, or after a rebuild failed, the revision it published still serves.
    for phase in ["Running", "Failed"] {
        let (kept, verdict) = endpoint::validate::resolve_dataset(
            &endpoint,
            Some(&dataset(json!({"phase": phase, "revision": "r2"}))),
            served.clone(),
        );
        assert!(verdict.is_none(), "{phase}: {verdict:?}");
        assert_eq!(kept.dataset_revision.as_deref(), Some("r2"), "{phase}");
    }
    // Pinned to the adapter's revision.
    let mut pinned = endpoint.clone();
    pinned.spec.gateway.rag.revision = twin_operator::api::endpoint::RetrievalRevision::Adapter;
    let (lineage, _) = endpoint::validate::resolve_dataset(
        &pinned,
        Some(&dataset(json!({"phase": "Ready", "revision": "r2"}))),
        served,
    );
    assert_eq!(lineage.dataset_revision.as_deref(), Some("r1"), "retrieval pinned to the adapter's revision");

    let mut local = documents[0].clone();
    local["spec"]["model"] = json!({"baseModel": {"uri": "file:///models/x"}});
    let Validation::Wait(verdict) = endpoint::validate::resolve_model(&endpoint_of(&local), None) else {
        panic!("file://")
    };
    assert_eq!(verdict.assessment.reason, "InvalidSpec");
}

#[test]
fn the_readmes_build_report_is_one_the_controller_reads() {
    let report = BuildReport::parse(&repo::read("examples/build-report.json")).unwrap();
    let BuildReport::Published(published) = report else {
        panic!("examples/build-report.json is a failure report")
    };
    let example: TwinDataset =
        serde_saphyr::from_str(&repo::read("manifests/examples/twindataset.yaml")).unwrap();
    let names: Vec<&str> = example.spec.sources.iter().map(|s| s.name.as_str()).collect();
    let reported: Vec<&str> = published.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(reported, names, "the report names the example dataset's sources");
    assert_eq!(published.stats.documents, published.sources.iter().map(|s| s.documents).sum::<u64>());
}
