//! Types shared by the three twin resources: references, storage locations, pod overrides,
//! conditions, and the CEL rules that validate them in the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every twin resource.
pub const API_GROUP: &str = "llmtwin.dev";
/// The API version of every twin resource.
pub const API_VERSION: &str = "v1alpha1";
/// The condition every twin resource carries; `True` once the resource does its job.
pub const CONDITION_READY: &str = "Ready";

/// CEL: a storage URI the operator can read and write (`s3://`, `pvc://`, `file://`).
pub const STORAGE_URI_RULE: &str = r"self.matches('^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file:///.*)$')";
/// The message shown when [`STORAGE_URI_RULE`] fails.
pub const STORAGE_URI_MESSAGE: &str =
    "must be s3://bucket/prefix, pvc://claim/sub/path or file:///absolute/path";
/// CEL: a model URI (`hf://org/name` besides the storage schemes).
pub const MODEL_URI_RULE: &str = r"self.matches('^(hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|file:///.*)$')";
/// The message shown when [`MODEL_URI_RULE`] fails.
pub const MODEL_URI_MESSAGE: &str =
    "must be hf://org/name[@revision], s3://bucket/prefix, pvc://claim/sub/path or file:///absolute/path";
/// An HTTP(S) URL, as an OpenAPI `pattern`: for strings inside lists, where a CEL rule's cost
/// is multiplied by every enclosing list's `maxItems` and would blow the API server's budget.
pub const HTTP_URL_PATTERN: &str = r"^https?://[^\s/$.?#][^\s]*$";
/// CEL: an HTTP(S) URL (the same check as [`HTTP_URL_PATTERN`], with a message of its own).
pub const HTTP_URL_RULE: &str = r"self.matches('^https?://[^\\s/$.?#][^\\s]*$')";
/// The message shown when [`HTTP_URL_RULE`] fails.
pub const HTTP_URL_MESSAGE: &str = "must be an http:// or https:// URL";

/// A reference to another twin resource in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the referenced object, in the same namespace as this one.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the same namespace. Secrets are always referenced, never inlined.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret whose value is used.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A whole Secret in the same namespace, whose well-known keys are read (for AWS:
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where artifacts are written: object storage, a PersistentVolumeClaim, or a local folder.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.uri.startsWith('s3://') || !(has(self.endpointUrl) || has(self.region) || has(self.credentialsSecretRef))").message("endpointUrl, region and credentialsSecretRef apply only to s3:// URIs"))]
pub struct StorageLocation {
    /// Root URI of the artifacts: `s3://bucket/prefix`, `pvc://claim/sub/path` (in cluster) or
    /// `file:///absolute/path` (local mode only).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(STORAGE_URI_RULE).message(STORAGE_URI_MESSAGE))]
    pub uri: String,
    /// S3 only: endpoint of an S3-compatible store (MinIO, Ceph, ...). Unset means AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(HTTP_URL_RULE).message(HTTP_URL_MESSAGE))]
    pub endpoint_url: Option<String>,
    /// S3 only: the bucket's region. Unset means the region of the usual AWS configuration chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// S3 only: a Secret holding `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Unset means the
    /// usual AWS credential chain (IRSA, EKS Pod Identity, instance profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// An open base model, by URI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseModel {
    /// The model: `hf://org/name[@revision]` from the Hugging Face Hub, or a folder of
    /// weights at `s3://`, `pvc://` or `file://`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(MODEL_URI_RULE).message(MODEL_URI_MESSAGE))]
    pub uri: String,
    /// A Secret key holding a Hugging Face token, for gated models such as Llama. The sagemaker
    /// training backend refuses it (SageMaker would show the token): copy the model to S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
}

/// Pod-level settings for the Jobs and Deployments the operator creates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Container image. Unset means the operator's default for this workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// CPU, memory and accelerator requests and limits of the main container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Labels a node must have to run the pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// ServiceAccount the pod runs as (for IRSA or Workload Identity). Unset means the
    /// namespace's `default` ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
}

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// What a reference to a missing twin says: which, where, the field to correct, and any other
/// way out (`remove datasetRef to serve without retrieval`). The operator and `twin up` say it
/// alike.
pub fn missing_reference(
    kind: &str,
    name: &str,
    namespace: &str,
    field: &str,
    or_else: Option<&str>,
) -> String {
    let fixes = match or_else {
        Some(other) => format!("create it, correct {field}, or {other}"),
        None => format!("create it or correct {field}"),
    };
    format!("{kind} {name:?} not found in namespace {namespace:?}: {fixes}")
}
