//! The twin resources (group `llmtwin.dev`, version `v1alpha1`) and their CRDs.

// `#[kube(printcolumn(..))]` repeats keys such as `type_` by design; clippy reads them as
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod common;
pub mod dataset;
pub mod endpoint;
pub mod engine;
pub mod evaluation;
pub mod readiness;
pub mod training;

pub use common::*;
pub use dataset::{TwinDataset, TwinDatasetSpec, TwinDatasetStatus};
pub use endpoint::{TwinEndpoint, TwinEndpointSpec, TwinEndpointStatus};
pub use engine::{TwinEngine, TwinEngineSpec, TwinEngineStatus};
pub use training::{TwinTrainingJob, TwinTrainingJobSpec, TwinTrainingJobStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRDs, in the order they are printed and installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![TwinDataset::crd(), TwinTrainingJob::crd(), TwinEngine::crd(), TwinEndpoint::crd()]
}
