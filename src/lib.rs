//! twin-operator: a Kubernetes operator that builds, trains and serves LLM Twins.
//!
//! The library behind the `twin` binary. Modules depend one way: `api` and `contract` at the
//! bottom; `storage`, `net`, `embedding` and the crate-root helpers (hashing, logging,
//! backoff, parallel work) above them; the dataset `pipeline` on those; the `operator` on
//! `api` and `contract` only for what it tells its workloads. The pipeline never imports the
//! operator.
// Unsafe code is refused here; the embedding kernels, which need it, are the crate twin-bert.
// The gateway (`serve`) answers the OpenAI API over a dataset revision, never importing the
// operator.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod api;
pub mod apidoc;
pub mod aws;
pub mod backoff;
pub mod contract;
pub mod crdgen;
pub mod embedding;
pub mod eval;
pub mod hashing;
pub mod local;
pub mod net;
pub mod operator;
pub mod parallel;
pub mod pipeline;
pub mod serve;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
