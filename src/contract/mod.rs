//! What crosses a process boundary between the operator and the workloads it runs: the build
//! Job's result report, the paths the operator mounts and the workloads read, the environment
//! variables it sets, and the labels and annotations on its children. One definition each,
//! used by both sides and by the tests, so the two ends cannot drift apart.

pub mod adapters;
pub mod build_report;
pub mod env;
pub mod gateway;
pub mod labels;
pub mod paths;
pub mod trainer;

pub use build_report::{BuildReport, FailedBuild, PublishedBuild};
pub use trainer::{TrainerConfig, TrainerResult};
