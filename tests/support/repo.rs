//! Paths inside the repository and the external tools (helm) the packaging tests run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path relative to the repository root.
pub fn path(relative: &str) -> PathBuf {
    root().join(relative)
}

/// Reads a repository file, with a clear panic when it is missing.
pub fn read(relative: &str) -> String {
    let path = path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under a repository folder with the given extension, sorted.
pub fn files_with_extension(relative_dir: &str, extension: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, extension, out);
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&path(relative_dir), extension, &mut out);
    out.sort();
    out
}

/// The `helm` binary: `$HELM`, then `.cache/tools/bin/helm` (installed by
/// `scripts/install-tools`), then `helm` on the PATH. Panics with the fix when none is found,
/// so the packaging tests never pass without running.
pub fn helm() -> PathBuf {
    if let Some(explicit) = std::env::var_os("HELM") {
        return PathBuf::from(explicit);
    }
    let cached = path(".cache/tools/bin/helm");
    if cached.is_file() {
        return cached;
    }
    if Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success()) {
        return PathBuf::from("helm");
    }
    panic!("helm not found: run scripts/install-tools (or set HELM=/path/to/helm)");
}

/// The `kubectl` binary: `$KUBECTL`, then `.cache/tools/bin/kubectl` (from
/// `scripts/install-tools`). Panics with the fix when it is missing.
pub fn kubectl() -> PathBuf {
    if let Some(explicit) = std::env::var_os("KUBECTL") {
        return PathBuf::from(explicit);
    }
    let cached = path(".cache/tools/bin/kubectl");
    assert!(
        cached.is_file(),
        "kubectl not found: run scripts/install-tools (or set KUBECTL=/path/to/kubectl)"
    );
    cached
}

/// A linter `scripts/install-tools` puts in `.cache/tools/bin` (actionlint, hadolint). Panics
/// with the fix when it is missing, so a lint test never passes without running.
pub fn installed_tool(name: &str) -> PathBuf {
    let cached = path(&format!(".cache/tools/bin/{name}"));
    assert!(cached.is_file(), "{name} not found: run scripts/install-tools");
    cached
}

/// Runs helm with the arguments in the repository root; returns stdout, panics with stderr.
pub fn run_helm(args: &[&str]) -> String {
    let output = Command::new(helm()).args(args).current_dir(root()).output().expect("failed to start helm");
    assert!(
        output.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm printed UTF-8")
}
