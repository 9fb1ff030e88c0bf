//! The children of a TwinDataset: a ConfigMap holding the spec, the build Job of the current
//! generation running `twin dataset build`, and a CronJob for `spec.schedule`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecretKeySelector, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::ObjectMeta;
use serde_json::json;

use super::labels::{bounded_name, child_labels, owner_reference};
use crate::api::TwinDataset;
use crate::api::common::SecretKeyRef;
use crate::operator::settings::OperatorSettings;
use crate::pipeline::collect::git::token_env;
use crate::pipeline::generate::GENERATOR_API_KEY_ENV;
use crate::storage::StorageUri;

/// Where the build container finds the spec.
pub const SPEC_MOUNT: &str = "/etc/twin/spec";
/// The spec's key in its ConfigMap.
pub const SPEC_KEY: &str = "twindataset.json";
/// The component label of build Jobs.
pub const COMPONENT: &str = "dataset-build";
/// The annotation that records which generation a Job builds.
pub const GENERATION_ANNOTATION: &str = "llmtwin.dev/generation";

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
    bounded_name(&dataset.name_any(), &format!("-build-{}", dataset.metadata.generation.unwrap_or(1)))
}

/// The label selector of a dataset's build Jobs and CronJob (scheduled Jobs carry it too).
pub fn build_selector(dataset: &TwinDataset) -> String {
    let labels = child_labels("twin-dataset", &dataset.name_any(), COMPONENT);
    format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/component={COMPONENT}",
        labels["app.kubernetes.io/instance"]
    )
}

/// Name of the spec ConfigMap.
pub fn spec_config_map_name(dataset: &TwinDataset) -> String {
    bounded_name(&dataset.name_any(), "-spec")
}

/// Name of the refresh CronJob.
pub fn cron_job_name(dataset: &TwinDataset) -> String {
    // CronJob names are limited to 52 characters: Kubernetes appends the schedule time.
    let name = bounded_name(&dataset.name_any(), "-refresh");
    if name.len() <= 52 { name } else { format!("{}-refresh", &name[..43].trim_end_matches('-')) }
}

fn meta(dataset: &TwinDataset, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: dataset.namespace(),
        labels: Some(child_labels("twin-dataset", &dataset.name_any(), COMPONENT)),
        owner_references: owner_reference(dataset).map(|r| vec![r]),
        ..Default::default()
    }
}

/// The claims a dataset reads or writes through `pvc://` URIs, and whether it writes to them.
fn claims(dataset: &TwinDataset) -> BTreeMap<String, bool> {
    let mut claims = BTreeMap::new();
    let mut add = |uri: &str, writes: bool| {
        if let Ok(StorageUri::Pvc { claim, .. }) = uri.parse::<StorageUri>() {
            let entry = claims.entry(claim).or_insert(false);
            *entry |= writes;
        }
    };
    for source in &dataset.spec.sources {
        if let Some(files) = &source.files {
            add(&files.uri, false);
        }
        if let Some(archive) = &source.archive {
            add(&archive.uri, false);
        }
    }
    add(&dataset.spec.output.uri, true);
    claims
}

fn pod_template(dataset: &TwinDataset, settings: &OperatorSettings) -> PodTemplateSpec {
    let overrides = dataset.spec.job.clone().unwrap_or_default();
    let mut volumes = vec![
        Volume {
            name: "spec".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: spec_config_map_name(dataset),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() },
        Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "spec".into(),
            mount_path: SPEC_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() },
        VolumeMount { name: "cache".into(), mount_path: "/var/cache/twin".into(), ..Default::default() },
    ];
    let mut config_maps: Vec<&str> =
        dataset.spec.sources.iter().filter_map(|s| s.config_map.as_ref()).map(|c| c.name.as_str()).collect();
    config_maps.sort();
    config_maps.dedup();
    for (index, name) in config_maps.into_iter().enumerate() {
        volumes.push(Volume {
            name: format!("configmap-{index}"),
            config_map: Some(ConfigMapVolumeSource { name: name.into(), ..Default::default() }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: format!("configmap-{index}"),
            mount_path: format!("/etc/twin/configmaps/{name}"),
            read_only: Some(true),
            ..Default::default()
        });
    }
    for (index, (claim, writes)) in claims(dataset).into_iter().enumerate() {
        volumes.push(Volume {
            name: format!("pvc-{index}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(!writes),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: format!("pvc-{index}"),
            mount_path: format!("/mnt/twin/pvc/{claim}"),
            read_only: Some(!writes),
            ..Default::default()
        });
    }
    let mut env = vec![
        EnvVar {
            name: "TWIN_CRAWLER_ALLOW_NETWORKS".into(),
            value: Some(settings.crawler_allow_networks.clone()),
            ..Default::default()
        },
        EnvVar {
            name: "TWIN_CRAWLER_USER_AGENT".into(),
            value: Some(settings.crawler_user_agent.clone()),
            ..Default::default()
        },
        EnvVar {
            name: "TWIN_MODELS_DIR".into(),
            value: Some("/var/cache/twin/models".into()),
            ..Default::default()
        },
        EnvVar { name: "TWIN_LOG_FORMAT".into(), value: Some("json".into()), ..Default::default() },
    ];
    // Secrets by reference: each token or key reaches the build as one environment variable.
    let secret_env = |name: String, secret: &SecretKeyRef| EnvVar {
        name,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    for source in &dataset.spec.sources {
        if let Some(secret) = source.git.as_ref().and_then(|g| g.token_secret_ref.as_ref()) {
            env.push(secret_env(token_env(&source.name), secret));
        }
    }
    if let Some(secret) = dataset
        .spec
        .instruct
        .as_ref()
        .and_then(|i| i.generator.as_ref())
        .and_then(|g| g.api_key_secret_ref.as_ref())
    {
        env.push(secret_env(GENERATOR_API_KEY_ENV.into(), secret));
    }
    let env_from = dataset.spec.output.credentials_secret_ref.as_ref().map(|secret| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource { name: secret.name.clone(), optional: Some(false) }),
            ..Default::default()
        }]
    });
    let resources = overrides.resources.clone().unwrap_or_else(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity("1".into())),
            ("memory".into(), Quantity("1Gi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity("2Gi".into()))])),
        ..Default::default()
    });
    let container = Container {
        name: "build".into(),
        image: Some(overrides.image.clone().unwrap_or_else(|| settings.twin_image.clone())),
        args: Some(vec![
            "dataset".into(),
            "build".into(),
            "-f".into(),
            format!("{SPEC_MOUNT}/{SPEC_KEY}"),
            "--termination-message-path".into(),
            "/dev/termination-log".into(),
        ]),
        env: Some(env),
        env_from,
        resources: Some(resources),
        volume_mounts: Some(mounts),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(child_labels("twin-dataset", &dataset.name_any(), COMPONENT)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: overrides.service_account_name.clone(),
            node_selector: Some(overrides.node_selector.clone()).filter(|n| !n.is_empty()),
            tolerations: Some(overrides.tolerations.clone()).filter(|t| !t.is_empty()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65532),
                run_as_group: Some(65532),
                fs_group: Some(65532),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![container],
            volumes: Some(volumes),
            ..Default::default()
        }),
    }
}

fn job_spec(dataset: &TwinDataset, settings: &OperatorSettings) -> JobSpec {
    JobSpec {
        backoff_limit: Some(2),
        active_deadline_seconds: Some(6 * 3600),
        ttl_seconds_after_finished: Some(7 * 24 * 3600),
        template: pod_template(dataset, settings),
        ..Default::default()
    }
}

/// Pure: the desired children of a dataset.
pub fn build(dataset: &TwinDataset, settings: &OperatorSettings) -> DatasetChildren {
    let spec_document = json!({
        "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
        "metadata": {"name": dataset.name_any(), "namespace": dataset.namespace(), "generation": dataset.metadata.generation},
        "spec": dataset.spec,
    });
    let spec_config_map = ConfigMap {
        metadata: meta(dataset, spec_config_map_name(dataset)),
        data: Some(BTreeMap::from([(
            SPEC_KEY.to_string(),
            serde_json::to_string_pretty(&spec_document).expect("the spec serialises"),
        )])),
        ..Default::default()
    };
    let mut job_meta = meta(dataset, job_name(dataset));
    job_meta.annotations = Some(BTreeMap::from([(
        GENERATION_ANNOTATION.into(),
        dataset.metadata.generation.unwrap_or(1).to_string(),
    )]));
    let job = Job { metadata: job_meta, spec: Some(job_spec(dataset, settings)), ..Default::default() };
    let cron_job = dataset.spec.schedule.as_ref().map(|schedule| CronJob {
        metadata: meta(dataset, cron_job_name(dataset)),
        spec: Some(CronJobSpec {
            schedule: schedule.clone(),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(child_labels("twin-dataset", &dataset.name_any(), COMPONENT)),
                    ..Default::default()
                }),
                spec: Some(job_spec(dataset, settings)),
            },
            ..Default::default()
        }),
        ..Default::default()
    });
    DatasetChildren { spec_config_map, job, cron_job }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(name: &str, extra: serde_json::Value) -> TwinDataset {
        let mut value = json!({
            "apiVersion": "llmtwin.dev/v1alpha1", "kind": "TwinDataset",
            "metadata": {"name": name, "namespace": "twins", "uid": "u-1", "generation": 3},
            "spec": {"author": {"name": "Ada"}, "sources": [
                {"name": "drafts", "files": {"uri": "pvc://drafts/posts"}},
                {"name": "notes", "configMap": {"name": "notes"}}],
                "output": {"uri": "pvc://twins-data/out"}}
        });
        for (key, val) in extra.as_object().unwrap() {
            value["spec"][key] = val.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn names_stay_within_kubernetes_limits() {
        let long = "a".repeat(70);
        let children =
            build(&dataset(&long, json!({"schedule": "@daily"})), &OperatorSettings::for_tests("t"));
        assert!(children.job.metadata.name.as_ref().unwrap().len() <= 63);
        assert!(children.job.metadata.name.as_ref().unwrap().ends_with("-build-3"));
        assert!(children.spec_config_map.metadata.name.as_ref().unwrap().len() <= 63);
        assert!(children.cron_job.unwrap().metadata.name.unwrap().len() <= 52);
        assert_eq!(job_name(&dataset("paul", json!({}))), "paul-build-3");
    }

    #[test]
    fn claims_are_mounted_read_only_except_the_output() {
        let children = build(&dataset("paul", json!({})), &OperatorSettings::for_tests("t"));
        let pod = children.job.spec.unwrap().template.spec.unwrap();
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        let mount = |path: &str| {
            mounts
                .iter()
                .find(|m| m.mount_path == path)
                .unwrap_or_else(|| panic!("no mount at {path}"))
                .clone()
        };
        assert_eq!(mount("/mnt/twin/pvc/drafts").read_only, Some(true));
        assert_eq!(mount("/mnt/twin/pvc/twins-data").read_only, Some(false));
        assert_eq!(mount("/etc/twin/configmaps/notes").read_only, Some(true));
        assert!(children.cron_job.is_none());
        assert_eq!(children.job.metadata.owner_references.unwrap()[0].uid, "u-1");
    }

    #[test]
    fn tokens_and_api_keys_reach_the_build_as_secret_references_only() {
        let mut spec = dataset(
            "paul",
            json!({"instruct": {"preference": true, "generator": {
            "url": "https://api.example.com/v1", "model": "m", "apiKeySecretRef": {"name": "openai", "key": "api-key"}}}}),
        );
        spec.spec.sources.push(
            serde_json::from_value(
                json!({"name": "my-talks", "git": {"url": "https://git.example.com/t.git",
                "tokenSecretRef": {"name": "git", "key": "token"}}}),
            )
            .unwrap(),
        );
        let children = build(&spec, &OperatorSettings::for_tests("t"));
        let env = children.job.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
        let secret = |name: &str| {
            let var = env.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name}"));
            assert!(var.value.is_none(), "{name} must not carry the secret's value");
            let selector = var.value_from.clone().unwrap().secret_key_ref.unwrap();
            (selector.name, selector.key)
        };
        assert_eq!(secret("TWIN_GIT_TOKEN_MY_TALKS"), ("git".to_string(), "token".to_string()));
        assert_eq!(secret(GENERATOR_API_KEY_ENV), ("openai".to_string(), "api-key".to_string()));
    }
}
