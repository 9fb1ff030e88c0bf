//! Label and annotation keys of the operator's children, and the values that select them.

/// `app.kubernetes.io/name`: what the child is part of (`twin-dataset`, ...).
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the owning twin's name (hashed when longer than 63).
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: the child's role (`dataset-build`, ...).
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of`.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// The value of `managed-by` and `part-of`.
pub const OPERATOR: &str = "twin-operator";
/// The label the Job controller puts on a Job's pods.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// The generation of the spec a build Job runs.
pub const GENERATION_ANNOTATION: &str = "llmtwin.dev/generation";
/// The full name of the TwinDataset a build Job builds: exact where the instance label may be
/// hashed, and on the Jobs of scheduled refreshes too, whose owner is the CronJob.
pub const DATASET_ANNOTATION: &str = "llmtwin.dev/dataset";

/// `app.kubernetes.io/name` of a dataset's children.
pub const DATASET_NAME: &str = "twin-dataset";
/// The component of a dataset's build Jobs, their CronJob and their spec ConfigMap.
pub const DATASET_BUILD_COMPONENT: &str = "dataset-build";

/// `app.kubernetes.io/name` of a shared engine's (TwinEngine's) children.
pub const ENGINE_NAME: &str = "twin-engine";

/// `app.kubernetes.io/name` of a training job's children.
pub const TRAINING_NAME: &str = "twin-training";
/// The component of a training job's trainer Jobs and their configuration ConfigMaps.
pub const TRAINER_COMPONENT: &str = "trainer";
/// The run a trainer Job executes.
pub const RUN_ANNOTATION: &str = "llmtwin.dev/run";
