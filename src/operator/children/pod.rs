//! The pod every workload Job of the operator runs in: restricted (non-root, no privilege
//! escalation, no capabilities, read-only root filesystem, the runtime's seccomp profile), one
//! container, the pod-level overrides of its twin, PersistentVolumeClaims mounted where
//! `pvc://` URIs expect them, and Secrets by reference.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use kube::api::ObjectMeta;

use crate::api::common::{PodOverrides, SecretKeyRef};
use crate::contract::paths;

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

/// The pod template of a Job running `container` as `uid`.
pub fn job_pod(
    labels: BTreeMap<String, String>,
    overrides: &PodOverrides,
    uid: i64,
    container: Container,
    volumes: Vec<Volume>,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: overrides.service_account_name.clone(),
            node_selector: Some(overrides.node_selector.clone()).filter(|n| !n.is_empty()),
            tolerations: Some(overrides.tolerations.clone()).filter(|t| !t.is_empty()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(uid),
                run_as_group: Some(uid),
                fs_group: Some(uid),
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
