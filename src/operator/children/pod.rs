//! The pod every workload of the operator runs in: restricted (non-root, no privilege
//! escalation, no capabilities, read-only root filesystem, the runtime's seccomp profile), one
//! container, the pod-level overrides of its twin, PersistentVolumeClaims mounted where
//! `pvc://` URIs expect them, and Secrets by reference; and the literals every builder writes
//! (environment variables, emptyDir volumes, mounts, HTTP probes and ports).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource,
    EnvVar, EnvVarSource, HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretEnvSource, SecretKeySelector,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

use crate::api::common::{PodOverrides, SecretKeyRef, StorageLocation};
use crate::contract::paths;
use crate::storage::StorageUri;

/// The security context of a workload container.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        ..Default::default()
    }
}

/// The pod security context of every workload: non-root as `uid`, the runtime's seccomp
/// profile, volumes writable by the workload's group.
pub fn restricted_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// A restricted pod spec running `containers` as `uid`, with the twin's pod-level overrides.
pub fn workload_pod_spec(
    overrides: &PodOverrides,
    uid: i64,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
) -> PodSpec {
    PodSpec {
        service_account_name: overrides.service_account_name.clone(),
        node_selector: Some(overrides.node_selector.clone()).filter(|n| !n.is_empty()),
        tolerations: Some(overrides.tolerations.clone()).filter(|t| !t.is_empty()),
        security_context: Some(restricted_pod(uid)),
        containers,
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// The pod template of a Job running `container` as `uid`. The container is restricted, and
/// reports its result at the termination-message path (or, when it crashes before it could,
/// the tail of its log), which its controller reads back.
pub fn job_pod(
    labels: BTreeMap<String, String>,
    overrides: &PodOverrides,
    uid: i64,
    container: Container,
    volumes: Vec<Volume>,
) -> PodTemplateSpec {
    let container = Container {
        termination_message_path: Some(paths::TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(restricted_container()),
        ..container
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            ..workload_pod_spec(overrides, uid, vec![container], volumes)
        }),
    }
}

/// A URI as a pod reaches it: `pvc://` as the path where its claim is mounted, the rest as
/// they are.
pub fn in_pod(uri: &str) -> String {
    match uri.parse::<StorageUri>() {
        Ok(StorageUri::Pvc { claim, path }) => {
            format!("{}/{claim}/{path}", paths::PVC_ROOT).trim_end_matches('/').to_string()
        }
        _ => uri.to_string(),
    }
}

/// The claims of `pvc://` URIs a pod reads or writes, each once: (claim, written).
pub fn claims(uris: &[(&str, bool)]) -> Vec<(String, bool)> {
    let mut claims: Vec<(String, bool)> = Vec::new();
    for (uri, writes) in uris {
        if let Ok(StorageUri::Pvc { claim, .. }) = uri.parse::<StorageUri>() {
            match claims.iter_mut().find(|(c, _)| *c == claim) {
                Some(entry) => entry.1 |= writes,
                None => claims.push((claim, *writes)),
            }
        }
    }
    claims
}

/// S3 settings of a storage location as the AWS SDK reads them.
pub fn s3_env(location: &StorageLocation) -> Vec<EnvVar> {
    let var = |name: &str, value: &String| EnvVar {
        name: name.into(),
        value: Some(value.clone()),
        ..Default::default()
    };
    let mut env = Vec::new();
    if let Some(endpoint) = &location.endpoint_url {
        env.push(var("AWS_ENDPOINT_URL_S3", endpoint));
    }
    if let Some(region) = &location.region {
        env.push(var("AWS_REGION", region));
    }
    env
}

/// The Secret of a storage location's S3 credentials, as the container's environment.
pub fn s3_credentials(location: &StorageLocation) -> Option<Vec<EnvFromSource>> {
    location.credentials_secret_ref.as_ref().map(|secret| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource { name: secret.name.clone(), optional: Some(false) }),
            ..Default::default()
        }]
    })
}

/// Requests of `cpu` and `memory`, with memory limited to `memory_limit`: a workload's
/// default when its twin sets no resources.
pub fn default_resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity(memory_limit.into()))])),
        ..Default::default()
    }
}

/// Mounts each claim at `<PVC_ROOT>/<claim>`, writable where the workload writes to it.
pub fn mount_claims<'a>(
    claims: impl IntoIterator<Item = (&'a str, bool)>,
    volumes: &mut Vec<Volume>,
    mounts: &mut Vec<VolumeMount>,
) {
    for (index, (claim, writes)) in claims.into_iter().enumerate() {
        volumes.push(Volume {
            name: format!("pvc-{index}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_string(),
                read_only: Some(!writes),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: format!("pvc-{index}"),
            mount_path: format!("{}/{claim}", paths::PVC_ROOT),
            read_only: Some(!writes),
            ..Default::default()
        });
    }
}

/// An environment variable holding one key of a Secret (never the value itself).
pub fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An environment variable with a value.
pub fn env_var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

/// An emptyDir volume, in memory or on the node's disk, of at most `size`.
pub fn empty_dir(name: &str, medium: Option<&str>, size: Option<Quantity>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { medium: medium.map(Into::into), size_limit: size }),
        ..Default::default()
    }
}

/// A volume of a ConfigMap's keys.
pub fn config_map_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource { name: config_map.into(), ..Default::default() }),
        ..Default::default()
    }
}

/// A volume mounted at `path`.
pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only).filter(|r| *r),
        ..Default::default()
    }
}

/// An HTTP probe of `path` on the `http` port.
pub fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

/// The `http` port of a serving container.
pub fn http_port(port: i32) -> Vec<ContainerPort> {
    vec![ContainerPort {
        name: Some("http".into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }]
}

/// The restricted pod of a part: its serving container (restricted) after the init containers
/// that fetch what it loads, given `grace` seconds to finish the requests under way when it
/// goes.
pub fn serving_pod(
    overrides: &PodOverrides,
    uid: i64,
    container: Container,
    init: Vec<Container>,
    grace: i64,
    volumes: Vec<Volume>,
) -> PodTemplateSpec {
    let container = Container { security_context: Some(restricted_container()), ..container };
    let spec = PodSpec {
        init_containers: Some(init).filter(|i| !i.is_empty()),
        termination_grace_period_seconds: Some(grace),
        ..workload_pod_spec(overrides, uid, vec![container], volumes)
    };
    PodTemplateSpec { metadata: None, spec: Some(spec) }
}
