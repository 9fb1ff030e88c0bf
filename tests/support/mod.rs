//! Test harnesses shared by the integration tests: the CRD schema checker (OpenAPI + CEL, as
//! the API server applies them) and helpers to find repository files and tools.

#![allow(dead_code)]

pub mod crd_schema;
pub mod fake_apiserver;
pub mod gateway;
pub mod git_http;
pub mod moto;
pub mod repo;
pub mod sagemaker;
pub mod serve;
pub mod twins;
pub mod wait;
