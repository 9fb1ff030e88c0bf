//! Where the operator mounts what a build reads and writes, and where `twin dataset build`
//! looks for it by default.

/// The folder of the spec ConfigMap in the build pod.
pub const SPEC_DIR: &str = "/etc/twin/spec";
/// The spec's key in its ConfigMap (and so its file name in [`SPEC_DIR`]).
pub const SPEC_FILE: &str = "twindataset.json";
/// ConfigMap sources are mounted at `<CONFIGMAP_ROOT>/<name>/<key>`.
pub const CONFIGMAP_ROOT: &str = "/etc/twin/configmaps";
/// `pvc://claim/path` is mounted at `<PVC_ROOT>/<claim>/path`.
pub const PVC_ROOT: &str = "/mnt/twin/pvc";
/// The build's writable cache (an emptyDir).
pub const CACHE_DIR: &str = "/var/cache/twin";
/// Where the build keeps downloaded models, inside [`CACHE_DIR`].
pub const MODELS_DIR: &str = "/var/cache/twin/models";
/// The container's termination-message path: the build's report, read by the operator.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Kubernetes keeps at most this many bytes of a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// The folder of the trainer's configuration ConfigMap in the trainer pod.
pub const TRAINER_CONFIG_DIR: &str = "/etc/twin/trainer";
/// The configuration's key in its ConfigMap (and so its file name in [`TRAINER_CONFIG_DIR`]).
pub const TRAINER_CONFIG_FILE: &str = "config.json";

/// The spec file's full path in the build pod.
pub fn spec_path() -> String {
    format!("{SPEC_DIR}/{SPEC_FILE}")
}
