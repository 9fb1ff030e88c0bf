//! Test harnesses shared by the integration tests: the CRD schema checker (OpenAPI + CEL, as
//! the API server applies them) and helpers to find repository files and tools.

#![allow(dead_code)]

/// The API server's checks of custom resources, which `twin up` shares.
#[allow(unused_imports)]
pub use twin_operator::local::schema as crd_schema;
pub mod browser;
pub mod control_plane;
pub mod fault_proxy;
pub mod gateway;
pub mod git_http;
pub mod logs;
pub mod moto;
pub mod repo;
pub mod sagemaker;
pub mod scene;
pub mod serve;
pub mod sites;
pub mod twins;
pub mod vllm;
pub mod wait;
