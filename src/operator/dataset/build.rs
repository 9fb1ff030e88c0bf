//! Building the children of a TwinDataset (pure): a ConfigMap holding the spec, the build Job
//! of the current generation running `twin dataset build`, and a CronJob for `spec.schedule`.
//! Applied in that order (the Job mounts the ConfigMap); CronJobs are managed, so removing the
//! schedule deletes its CronJob. Build Jobs are history (each generation's Job stays until its
//! TTL), so they are created once and never pruned.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodTemplateSpec};
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::validate::ValidDataset;
use crate::api::TwinDataset;
use crate::contract::labels::{
    DATASET_ANNOTATION, DATASET_BUILD_COMPONENT, DATASET_NAME, GENERATION_ANNOTATION,
};
use crate::contract::{env, paths};
use crate::operator::children::naming::{
    CRONJOB_NAME_LIMIT, NAME_LIMIT, child_labels, child_name, instance_label, is_controlled_by,
    owner_reference,
};
use crate::operator::children::pod::{
    config_map_volume, default_resources, empty_dir, env_var, job_pod, mount, mount_claims, s3_credentials,
    secret_env,
};
use crate::operator::children::{ApplyPolicy, ChildSet};
use crate::operator::error::Result;
use crate::operator::settings::OperatorSettings;

/// The user the twin image runs as (distroless's nonroot).
const BUILD_UID: i64 = 65532;

/// The desired children of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetChildren {
    /// The spec, mounted into the build pod.
    pub spec_config_map: ConfigMap,
    /// The build Job of the current generation.
    pub job: Job,
    /// The refresh CronJob, when the dataset has a schedule.
    pub cron_job: Option<CronJob>,
}

/// Name of the build Job of a generation.
pub fn job_name(dataset: &TwinDataset) -> String {
    let generation = dataset.metadata.generation.unwrap_or(1);
    child_name(&dataset.name_any(), &format!("-build-{generation}"), NAME_LIMIT)
}

/// The label selector of a dataset's build Jobs and CronJob (scheduled Jobs carry it too). It
/// finds candidates; [`builds_dataset`] decides.
pub fn build_selector(dataset: &TwinDataset) -> String {
    format!(
        "{}={},{}={DATASET_BUILD_COMPONENT}",
        crate::contract::labels::INSTANCE,
        instance_label(&dataset.name_any()),
        crate::contract::labels::COMPONENT
    )
}

/// Whether a build Job builds this dataset: the dataset's full name in its annotation (the Jobs
/// of scheduled refreshes are owned by the CronJob, and the instance label may be hashed), or
/// the dataset as its controller (Jobs created before the annotation existed).
pub fn builds_dataset(job: &Job, dataset: &TwinDataset) -> bool {
    let named = job.annotations().get(DATASET_ANNOTATION).is_some_and(|name| *name == dataset.name_any());
    named || dataset.metadata.uid.as_deref().is_some_and(|uid| is_controlled_by(&job.metadata, uid))
}

/// Name of the spec ConfigMap.
pub fn spec_config_map_name(dataset: &TwinDataset) -> String {
    child_name(&dataset.name_any(), "-spec", NAME_LIMIT)
}

/// Name of the refresh CronJob.
pub fn cron_job_name(dataset: &TwinDataset) -> String {
    child_name(&dataset.name_any(), "-refresh", CRONJOB_NAME_LIMIT)
}

/// The annotations of every build Job: the dataset's full name and the generation it builds.
fn job_annotations(dataset: &TwinDataset) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DATASET_ANNOTATION.into(), dataset.name_any()),
        (GENERATION_ANNOTATION.into(), dataset.metadata.generation.unwrap_or(1).to_string()),
    ])
}

fn meta(dataset: &TwinDataset, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: dataset.namespace(),
        labels: Some(child_labels(DATASET_NAME, &dataset.name_any(), DATASET_BUILD_COMPONENT)),
        owner_references: owner_reference(dataset).map(|r| vec![r]),
        ..Default::default()
    }
}

fn pod_template(valid: &ValidDataset, settings: &OperatorSettings) -> PodTemplateSpec {
    let dataset = valid.dataset;
    let overrides = dataset.spec.job.clone().unwrap_or_default();
    let mut volumes = vec![
        config_map_volume("spec", &spec_config_map_name(dataset)),
        empty_dir("tmp", None, None),
        empty_dir("cache", None, None),
    ];
    let mut mounts = vec![
        mount("spec", paths::SPEC_DIR, true),
        mount("tmp", "/tmp", false),
        mount("cache", paths::CACHE_DIR, false),
    ];
    for (index, name) in valid.config_maps.iter().enumerate() {
        let volume = format!("configmap-{index}");
        volumes.push(config_map_volume(&volume, name));
        mounts.push(mount(&volume, &format!("{}/{name}", paths::CONFIGMAP_ROOT), true));
    }
    mount_claims(
        valid.claims.iter().map(|(claim, writes)| (claim.as_str(), *writes)),
        &mut volumes,
        &mut mounts,
    );
    let mut env = vec![
        env_var(env::CRAWLER_ALLOW_NETWORKS, settings.crawler_allow_networks.clone()),
        env_var(env::CRAWLER_USER_AGENT, settings.crawler_user_agent.clone()),
        env_var(env::MODELS_DIR, paths::MODELS_DIR),
        env_var(env::LOG_FORMAT, "json"),
    ];
    // Secrets by reference: each token or key reaches the build as one environment variable.
    for source in &dataset.spec.sources {
        if let Some(secret) = source.git.as_ref().and_then(|g| g.token_secret_ref.as_ref()) {
            env.push(secret_env(&env::git_token(&source.name), secret));
        }
    }
    if let Some(secret) = dataset
        .spec
        .instruct
        .as_ref()
        .and_then(|i| i.generator.as_ref())
        .and_then(|g| g.api_key_secret_ref.as_ref())
    {
        env.push(secret_env(env::GENERATOR_API_KEY, secret));
    }
    let env_from = s3_credentials(&dataset.spec.output);
    let resources = overrides.resources.clone().unwrap_or_else(|| default_resources("1", "1Gi", "2Gi"));
    let container = Container {
        name: "build".into(),
        image: Some(overrides.image.clone().unwrap_or_else(|| settings.twin_image.clone())),
        args: Some(vec![
            "dataset".into(),
            "build".into(),
            "-f".into(),
            paths::spec_path(),
            "--termination-message-path".into(),
            paths::TERMINATION_MESSAGE_PATH.into(),
        ]),
        env: Some(env),
        env_from,
        resources: Some(resources),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let labels = child_labels(DATASET_NAME, &dataset.name_any(), DATASET_BUILD_COMPONENT);
    job_pod(labels, &overrides, BUILD_UID, container, volumes)
}

fn job_spec(valid: &ValidDataset, settings: &OperatorSettings) -> JobSpec {
    JobSpec {
        backoff_limit: Some(2),
        active_deadline_seconds: Some(6 * 3600),
        ttl_seconds_after_finished: Some(7 * 24 * 3600),
        template: pod_template(valid, settings),
        ..Default::default()
    }
}

/// The desired children of a dataset.
pub fn build(valid: &ValidDataset, settings: &OperatorSettings) -> DatasetChildren {
    let dataset = valid.dataset;
    let spec_document = TwinDataset {
        metadata: ObjectMeta {
            name: dataset.metadata.name.clone(),
            namespace: dataset.metadata.namespace.clone(),
            generation: dataset.metadata.generation,
            ..Default::default()
        },
        spec: dataset.spec.clone(),
        status: None,
    };
    let spec_config_map = ConfigMap {
        metadata: meta(dataset, spec_config_map_name(dataset)),
        data: Some(BTreeMap::from([(
            paths::SPEC_FILE.to_string(),
            serde_json::to_string_pretty(&spec_document).expect("the spec serialises"),
        )])),
        ..Default::default()
    };
    let mut job_meta = meta(dataset, job_name(dataset));
    job_meta.annotations = Some(job_annotations(dataset));
    let job = Job { metadata: job_meta, spec: Some(job_spec(valid, settings)), ..Default::default() };
    let cron_job = dataset.spec.schedule.as_ref().map(|schedule| CronJob {
        metadata: meta(dataset, cron_job_name(dataset)),
        spec: Some(CronJobSpec {
            schedule: schedule.clone(),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(child_labels(DATASET_NAME, &dataset.name_any(), DATASET_BUILD_COMPONENT)),
                    annotations: Some(job_annotations(dataset)),
                    ..Default::default()
                }),
                spec: Some(job_spec(valid, settings)),
            },
            ..Default::default()
        }),
        ..Default::default()
    });
    DatasetChildren { spec_config_map, job, cron_job }
}

impl DatasetChildren {
    /// The children in apply order, for the applier: the spec ConfigMap, the Job (created
    /// once), the CronJob; CronJobs are managed (a removed schedule deletes its CronJob).
    pub fn child_set(&self) -> Result<ChildSet> {
        let mut set = ChildSet::new();
        set.add(&self.spec_config_map, ApplyPolicy::Apply)?;
        set.add(&self.job, ApplyPolicy::CreateOnce)?;
        if let Some(cron_job) = &self.cron_job {
            set.add(cron_job, ApplyPolicy::Apply)?;
        }
        set.manage::<CronJob>();
        Ok(set)
    }
}
