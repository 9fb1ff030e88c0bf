//! What a shared engine's adapter agent and the operator exchange: the adapters wanted (the
//! operator writes them into the engine's ConfigMap, which the agent reads from its mount),
//! and the agent's report of what its vLLM has loaded (`GET /adapters` on the agent's port).

use serde::{Deserialize, Serialize};

/// The key of the engine's ConfigMap, and the file in the agent's mount, holding [`Wanted`].
pub const WANTED_FILE: &str = "adapters.json";
/// Where the agent's container mounts the ConfigMap.
pub const WANTED_DIR: &str = "/etc/twin/adapters";
/// The port the agent serves its report on.
pub const AGENT_PORT: i32 = 8001;

/// The adapters an engine should serve.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// One per endpoint, by name.
    pub adapters: Vec<WantedAdapter>,
}

/// An adapter to serve under a name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WantedAdapter {
    /// The name requests ask for (the TwinEndpoint's).
    pub name: String,
    /// Where it is: `s3://` (fetched into the engine's cache first) or `hf://` (loaded by vLLM).
    pub uri: String,
}

/// The state of one adapter on one engine replica.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Loading {
    /// Fetching or loading.
    Loading,
    /// Loaded: requests for the name are answered with it.
    Loaded,
    /// It could not be fetched or vLLM refused it.
    Failed,
}

/// What the agent reports of one adapter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AdapterReport {
    /// The name it is served under.
    pub name: String,
    /// The adapter this state is of.
    pub uri: String,
    /// Its state.
    pub state: Loading,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The agent's report: whether vLLM is up, and each wanted adapter's state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentReport {
    /// Whether vLLM answers its health check.
    pub engine_up: bool,
    /// The adapters, by name.
    pub adapters: Vec<AdapterReport>,
}
