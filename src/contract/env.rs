//! Environment variables the operator sets on the workloads it runs (and, for the crawler and
//! log settings, reads itself from the Helm chart).

/// Comma-separated CIDRs crawlers may reach although private.
pub const CRAWLER_ALLOW_NETWORKS: &str = "TWIN_CRAWLER_ALLOW_NETWORKS";
/// The crawlers' User-Agent.
pub const CRAWLER_USER_AGENT: &str = "TWIN_CRAWLER_USER_AGENT";
/// Where `hf://` models are kept and downloaded to.
pub const MODELS_DIR: &str = "TWIN_MODELS_DIR";
/// `json` or `text` log lines.
pub const LOG_FORMAT: &str = "TWIN_LOG_FORMAT";
/// Where `pvc://claim/...` volumes are mounted.
pub const PVC_ROOT: &str = "TWIN_PVC_ROOT";
/// Where ConfigMap sources are mounted.
pub const CONFIGMAP_ROOT: &str = "TWIN_CONFIGMAP_ROOT";
/// Where a build also writes its report (the container's termination-message path).
pub const TERMINATION_MESSAGE_PATH: &str = "TWIN_TERMINATION_MESSAGE_PATH";
/// The instruction generator's API key, from `instruct.generator.apiKeySecretRef`.
pub const GENERATOR_API_KEY: &str = "TWIN_GENERATOR_API_KEY";

/// The variable holding a git source's token (from its `tokenSecretRef`): the source's name
/// upper-cased, with every other character than a letter or digit as `_`.
pub fn git_token(source: &str) -> String {
    let name: String = source
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect();
    format!("TWIN_GIT_TOKEN_{name}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn git_token_variables_are_valid_names() {
        assert_eq!(super::git_token("my-talks.v2"), "TWIN_GIT_TOKEN_MY_TALKS_V2");
    }
}
