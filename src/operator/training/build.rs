//! Building the children of a TwinTrainingJob on the kubernetes backend (pure): a ConfigMap with
//! the trainer's configuration for the run and the run's Job, on GPUs. A run is one spec
//! generation on one dataset revision; its Job is named after both, so a restarted operator
//! finds it again instead of starting a second one, and Jobs are created once, never replaced.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::validate::ValidRun;
use crate::api::training::KubernetesBackend;
use crate::api::{TwinDataset, TwinTrainingJob};
use crate::contract::labels::{RUN_ANNOTATION, TRAINER_COMPONENT, TRAINING_NAME};
pub use crate::contract::trainer::{Run, RunPlaces, revision_folder, run_output};
use crate::contract::{TrainerConfig, paths};
use crate::operator::children::naming::{NAME_LIMIT, child_labels, child_name, owner_reference};
use crate::operator::children::pod::{
    claims, config_map_volume, default_resources, empty_dir, env_var, in_pod, job_pod, mount, mount_claims,
    s3_credentials, s3_env, secret_env,
};
use crate::operator::children::{ApplyPolicy, ChildSet};
use crate::operator::error::Result;
use crate::operator::settings::OperatorSettings;

/// The user the trainer image runs as (trainer/Dockerfile).
const TRAINER_UID: i64 = 1000;
/// The trainer's exit status for a failure it explained: retrying would fail the same way.
const EXPLAINED_FAILURE: i32 = 1;

/// Name of a run's Job (and of its configuration ConfigMap).
pub fn job_name(job: &TwinTrainingJob, run: &Run) -> String {
    child_name(&job.name_any(), &format!("-train-{}", run.name), NAME_LIMIT)
}

/// The desired children of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingChildren {
    /// The trainer's configuration, mounted into the pod.
    pub config_map: ConfigMap,
    /// The run's Job.
    pub job: Job,
}

impl TrainingChildren {
    /// In apply order: the ConfigMap (the Job mounts it), then the Job, created once.
    pub fn child_set(&self) -> Result<ChildSet> {
        let mut set = ChildSet::new();
        set.add(&self.config_map, ApplyPolicy::Apply)?;
        set.add(&self.job, ApplyPolicy::CreateOnce)?;
        Ok(set)
    }
}

fn meta(job: &TwinTrainingJob, name: String, run: &Run) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: job.namespace(),
        labels: Some(child_labels(TRAINING_NAME, &job.name_any(), TRAINER_COMPONENT)),
        annotations: Some(BTreeMap::from([(RUN_ANNOTATION.to_string(), run.name.clone())])),
        owner_references: owner_reference(job).map(|r| vec![r]),
        ..Default::default()
    }
}

/// The trainer's configuration for a run, with its places as a pod reaches them.
pub fn trainer_config(job: &TwinTrainingJob, run: &Run, places: &RunPlaces) -> TrainerConfig {
    TrainerConfig::for_run(job, run, places, paths::TERMINATION_MESSAGE_PATH, in_pod)
}

fn pod_template(
    job: &TwinTrainingJob,
    dataset: &TwinDataset,
    backend: &KubernetesBackend,
    run: &Run,
    settings: &OperatorSettings,
) -> PodTemplateSpec {
    let config_name = job_name(job, run);
    let mut volumes = vec![
        config_map_volume("config", &config_name),
        empty_dir("tmp", None, None),
        // PyTorch's data loader workers share tensors through /dev/shm, which is 64 MiB in a pod.
        empty_dir("shm", Some("Memory"), None),
    ];
    let mut mounts = vec![
        mount("config", paths::TRAINER_CONFIG_DIR, true),
        mount("tmp", "/tmp", false),
        mount("shm", "/dev/shm", false),
    ];
    let read = [
        (dataset.spec.output.uri.as_str(), false),
        (job.spec.base_model.uri.as_str(), false),
        (job.spec.output.uri.as_str(), true),
        // A control text of the user's own (`builtin:` ones ship with the trainer).
        (job.spec.evaluation.control.as_str(), false),
    ];
    let claims = claims(&read);
    mount_claims(claims.iter().map(|(claim, writes)| (claim.as_str(), *writes)), &mut volumes, &mut mounts);
    // The root filesystem is read-only: every cache goes to /tmp.
    let mut env = vec![
        env_var("HOME", "/tmp"),
        env_var("HF_HOME", "/tmp/hf"),
        env_var("TRITON_CACHE_DIR", "/tmp/triton"),
    ];
    if let Some(secret) = &job.spec.base_model.token_secret_ref {
        env.push(secret_env("HF_TOKEN", secret));
    }
    // S3 settings: the output's, else the dataset's (one set of AWS variables per pod).
    let s3 = [&job.spec.output, &dataset.spec.output].into_iter().find(|l| l.uri.starts_with("s3://"));
    env.extend(s3.map(s3_env).unwrap_or_default());
    let env_from = s3.and_then(s3_credentials);
    let overrides = &backend.pod;
    let mut resources = overrides.resources.clone().unwrap_or_else(|| default_resources("4", "32Gi", "64Gi"));
    if backend.gpus > 0 {
        let gpus = Quantity(backend.gpus.to_string());
        resources.limits.get_or_insert_default().insert(backend.gpu_resource_name.clone(), gpus.clone());
        resources.requests.get_or_insert_default().insert(backend.gpu_resource_name.clone(), gpus);
    }
    let container = Container {
        name: "trainer".into(),
        image: Some(overrides.image.clone().unwrap_or_else(|| settings.trainer_image.clone())),
        args: Some(vec![
            "--config".into(),
            format!("{}/{}", paths::TRAINER_CONFIG_DIR, paths::TRAINER_CONFIG_FILE),
        ]),
        env: Some(env),
        env_from,
        resources: Some(resources),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let labels = child_labels(TRAINING_NAME, &job.name_any(), TRAINER_COMPONENT);
    job_pod(labels, overrides, TRAINER_UID, container, volumes)
}

/// The desired children of a valid run on the kubernetes backend.
pub fn build(
    job: &TwinTrainingJob,
    valid: &ValidRun,
    backend: &KubernetesBackend,
    settings: &OperatorSettings,
) -> TrainingChildren {
    let (run, dataset, config) = (&valid.run, valid.dataset, &valid.config);
    let name = job_name(job, run);
    let config_map = ConfigMap {
        metadata: meta(job, name.clone(), run),
        data: Some(BTreeMap::from([(
            paths::TRAINER_CONFIG_FILE.to_string(),
            serde_json::to_string_pretty(config).expect("the trainer configuration serialises"),
        )])),
        ..Default::default()
    };
    let spec = JobSpec {
        // A crash or an evicted pod is retried once; a failure the trainer explained (exit
        // status 1: a missing dataset, a gated model, out of memory) fails the run at once.
        backoff_limit: Some(1),
        pod_failure_policy: Some(PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some("trainer".into()),
                    operator: "In".into(),
                    values: vec![EXPLAINED_FAILURE],
                }),
                on_pod_conditions: None,
            }],
        }),
        active_deadline_seconds: backend.active_deadline_seconds,
        ttl_seconds_after_finished: Some(7 * 24 * 3600),
        template: pod_template(job, dataset, backend, run, settings),
        ..Default::default()
    };
    TrainingChildren {
        config_map,
        job: Job { metadata: meta(job, name, run), spec: Some(spec), ..Default::default() },
    }
}
