//! twin-operator: a Kubernetes operator that builds, trains and serves LLM Twins.
//!
//! The library behind the `twin` binary: the API types of the three resources, CRD
//! generation, and (in later modules) the operator, the dataset pipeline and the gateway.
// Unsafe code is refused everywhere but in the embedding kernels (`pipeline::bert`), which
// call the matrix-product kernels through raw pointers and pick CPU features at run time.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod apidoc;
pub mod crdgen;
pub mod net;
pub mod operator;
pub mod pipeline;
pub mod storage;
