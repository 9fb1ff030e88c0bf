//! The settings of a TwinEndpoint's gateway (`twin serve`): one struct, each field a flag and
//! an environment variable of `twin serve`, named once here. The operator turns a gateway's
//! settings into its container's environment ([`GatewaySettings::environment`]), `twin up`
//! hands them to the gateway in this process, and both start from what the endpoint's spec
//! says ([`GatewaySettings::of_endpoint`]), so neither path forgets one.

use std::path::PathBuf;

use clap::{Args, CommandFactory};
use kube::ResourceExt;
use serde::Serialize;

use super::env;
use crate::api::TwinEndpoint;
use crate::api::endpoint::ServedModel;

/// Which engine answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// A GGUF model run in this process by llama.cpp, on the CPU.
    #[default]
    Embedded,
    /// An OpenAI-compatible upstream (vLLM, TGI, Ollama, llama.cpp's server, hosted APIs).
    Openai,
}

/// What a gateway serves and how it is reached.
#[derive(Args, Debug, Clone, PartialEq, Serialize)]
pub struct GatewaySettings {
    /// The dataset: a revision's folder, or a dataset's folder (its newest revision, followed as
    /// new ones are published), at file://, pvc:// or s3://. Unset: answers without retrieval.
    #[arg(long, env = "TWIN_SERVE_DATASET", value_name = "URI")]
    pub dataset: Option<String>,
    /// The model name clients ask for. Default: the dataset's name, else `twin`.
    #[arg(long, env = "TWIN_SERVE_NAME")]
    pub name: Option<String>,
    /// What answers: a GGUF model in this process, or an OpenAI-compatible upstream.
    #[arg(long, env = "TWIN_SERVE_ENGINE", value_enum, default_value = "embedded")]
    pub engine: EngineKind,
    /// The embedded engine's GGUF model: a path, file:// or hf://org/repo/file.gguf. Default:
    /// SmolLM2-135M-Instruct (Q4_1) as `scripts/fetch-models` lays it out in --models-dir.
    #[arg(long, env = "TWIN_SERVE_MODEL", value_name = "PATH_OR_URI")]
    pub model: Option<String>,
    /// A GGUF LoRA adapter for the embedded engine (the trainer's `adapter.gguf`).
    #[arg(long, env = "TWIN_SERVE_ADAPTER", value_name = "GGUF")]
    pub adapter: Option<String>,
    /// The upstream's base URL, e.g. http://vllm:8000/v1 (engine openai).
    #[arg(long, env = "TWIN_SERVE_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// The model to ask the upstream for. Default: the first its /v1/models lists.
    #[arg(long, env = "TWIN_SERVE_UPSTREAM_MODEL", value_name = "NAME")]
    pub upstream_model: Option<String>,
    /// The base model the upstream runs, named in every answer's lineage (a TwinEndpoint's
    /// gateway is told it). Default: the upstream model's name, else its URL.
    #[arg(long, env = "TWIN_SERVE_UPSTREAM_BASE_MODEL", value_name = "URI")]
    pub upstream_base_model: Option<String>,
    /// The LoRA adapter the upstream serves on its base model, named in the lineage.
    #[arg(long, env = "TWIN_SERVE_UPSTREAM_ADAPTER", value_name = "URI")]
    pub upstream_adapter: Option<String>,
    /// The dataset revision the adapter was trained on, named in every answer's lineage next to
    /// the revision retrieval uses (`--dataset`), which may be newer.
    #[arg(long, env = "TWIN_SERVE_ADAPTER_REVISION", value_name = "REVISION")]
    pub adapter_revision: Option<String>,
    /// A JSON file naming what this gateway serves, re-read every second while it serves (a
    /// TwinEndpoint's `status.model`: baseModel, adapterUri, adapterRevision, datasetRevision):
    /// answers name its base model, adapter and adapter revision, and retrieval reads its
    /// datasetRevision of --dataset (a dataset's folder). A gateway on a shared engine is given
    /// it from a ConfigMap, so that a new adapter or revision moves no pod.
    #[arg(long, env = "TWIN_SERVE_LINEAGE_FILE", value_name = "FILE", conflicts_with_all = ["upstream_base_model", "upstream_adapter", "adapter_revision"])]
    pub lineage_file: Option<PathBuf>,
    /// Seconds a request waits for an upstream that is not up (an engine scaled to zero, waking
    /// on this request), tried again every second meanwhile; then 503 with Retry-After. Unset:
    /// an upstream that is down is a 502 at once.
    #[arg(long, env = "TWIN_SERVE_UPSTREAM_WAIT_SECONDS", value_name = "SECONDS")]
    pub upstream_wait_seconds: Option<u64>,
    /// Tokens of context of the model (prompt and answer). Default: the GGUF's training
    /// context capped at 8192 (embedded), 8192 (openai).
    #[arg(long, env = "TWIN_SERVE_CONTEXT_TOKENS")]
    pub context_tokens: Option<usize>,
    /// Address to listen on.
    #[arg(long, env = "TWIN_SERVE_LISTEN", default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub listen: String,
    /// A file holding the API key clients must send (`Authorization: Bearer <key>`). Unset: no
    /// authentication.
    #[arg(long, env = "TWIN_SERVE_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// The system prompt. Default: one asking the model to answer as the dataset's author,
    /// grounded in the passages.
    #[arg(long, env = "TWIN_SERVE_SYSTEM_PROMPT")]
    pub system_prompt: Option<String>,
    /// Passages retrieved per request (a request's `rag.topK` overrides; 0 turns retrieval off).
    #[arg(long, env = "TWIN_SERVE_TOP_K", default_value_t = 4)]
    pub top_k: u32,
    /// Where models are kept and `hf://` ones downloaded to.
    #[arg(long, env = env::MODELS_DIR, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// S3-compatible endpoint for s3:// URIs (MinIO, Ceph); unset: AWS.
    #[arg(long, env = "TWIN_SERVE_S3_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint_url: Option<String>,
    /// The bucket's region for s3:// URIs.
    #[arg(long, env = "TWIN_SERVE_S3_REGION")]
    pub s3_region: Option<String>,
    /// Where to write the prompt log (file://, pvc:// or s3://). Unset: no prompt log.
    #[arg(long, env = "TWIN_SERVE_PROMPT_LOG", value_name = "URI")]
    pub prompt_log: Option<String>,
    /// This replica's name in the prompt log's file names. Default: $HOSTNAME (the pod's name).
    #[arg(long, env = "TWIN_SERVE_REPLICA")]
    pub replica: Option<String>,
    /// `json` or `text` log lines (default: JSON unless stderr is a terminal).
    #[arg(long, env = env::LOG_FORMAT)]
    pub log_format: Option<String>,
}

/// The dataset revision a served adapter was trained on: every engine's answers name it, next
/// to the one retrieval uses.
fn adapter_revision(served: &ServedModel) -> Option<String> {
    served.adapter_uri.as_ref().and(served.adapter_revision.clone())
}

/// Each setting's field and environment variable, in the order of the fields, read once from
/// `twin serve`'s flags.
fn variables() -> &'static [(String, String)] {
    static VARIABLES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    VARIABLES.get_or_init(|| {
        Flags::command()
            .get_arguments()
            .filter_map(|argument| {
                let variable = argument.get_env()?.to_string_lossy().into_owned();
                Some((argument.get_id().to_string(), variable))
            })
            .collect()
    })
}

/// The settings as `twin serve`'s flags and environment read them.
#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    settings: GatewaySettings,
}

impl Default for GatewaySettings {
    /// The defaults of `twin serve`'s flags, read once from their declarations above (with the
    /// environment ignored: a default is not what this process happens to be given).
    fn default() -> Self {
        static DEFAULTS: std::sync::OnceLock<GatewaySettings> = std::sync::OnceLock::new();
        DEFAULTS
            .get_or_init(|| {
                use clap::FromArgMatches;
                let command = Flags::command().no_binary_name(true).mut_args(|argument| argument.env(None));
                let matches = command.get_matches_from(Vec::<String>::new());
                Flags::from_arg_matches(&matches).expect("twin serve's flags have defaults").settings
            })
            .clone()
    }
}

impl GatewaySettings {
    /// What the endpoint's spec says of its gateway, whichever runs it: the model name clients
    /// ask for, how many passages it retrieves, its system prompt.
    pub fn of_endpoint(endpoint: &TwinEndpoint) -> Self {
        let gateway = &endpoint.spec.gateway;
        Self {
            name: Some(endpoint.name_any()),
            top_k: gateway.rag.top_k,
            system_prompt: gateway.system_prompt.clone(),
            ..Self::default()
        }
    }

    /// The settings answered by an OpenAI-compatible server at `url` (asked for `model`, or the
    /// first it lists) that serves `served`: its base model and adapter are named in every
    /// answer's lineage (unknown: the gateway names the upstream's model).
    pub fn upstream(self, url: String, model: Option<String>, served: Option<&ServedModel>) -> Self {
        Self {
            engine: EngineKind::Openai,
            upstream: Some(url),
            upstream_model: model,
            upstream_base_model: served.map(|s| s.base_model.clone()),
            upstream_adapter: served.and_then(|s| s.adapter_uri.clone()),
            adapter_revision: served.and_then(adapter_revision),
            ..self
        }
    }

    /// The settings answered by the embedded engine running the GGUF `model` with the GGUF
    /// `adapter` of `served`.
    pub fn embedded(self, model: String, adapter: Option<String>, served: &ServedModel) -> Self {
        Self {
            engine: EngineKind::Embedded,
            model: Some(model),
            adapter,
            adapter_revision: adapter_revision(served),
            ..self
        }
    }

    /// The environment variable `twin serve` reads a setting from, by the field's name.
    pub fn variable(field: &str) -> &'static str {
        variables()
            .iter()
            .find(|(id, _)| id == field)
            .map(|(_, variable)| variable.as_str())
            .unwrap_or_else(|| panic!("the gateway setting {field} has an environment variable"))
    }

    /// Every setting that is set, as `(variable, value)` in the order of the fields: what a
    /// container running `twin serve` is given.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let values = serde_json::to_value(self).expect("gateway settings serialise");
        variables()
            .iter()
            .filter_map(|(field, variable)| {
                let text = match values.get(field)? {
                    serde_json::Value::Null => return None,
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                Some((variable.as_str(), text))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;

    #[test]
    fn the_defaults_are_twin_serves() {
        // Variables of the test's own environment would count as given: none are set here.
        let command = Flags::command().no_binary_name(true);
        let parsed = Flags::from_arg_matches(&command.get_matches_from(Vec::<String>::new())).unwrap();
        assert_eq!(parsed.settings, GatewaySettings::default());
    }

    #[test]
    fn every_setting_set_is_one_variable_and_unset_ones_none() {
        let served = ServedModel {
            base_model: "hf://org/base".into(),
            adapter_uri: Some("s3://out/adapter".into()),
            adapter_revision: Some("r1".into()),
            ..Default::default()
        };
        let settings = GatewaySettings { name: Some("paul".into()), ..Default::default() }.upstream(
            "http://vllm:8000/v1".into(),
            None,
            Some(&served),
        );
        let environment = settings.environment();
        let names: Vec<&str> = environment.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "TWIN_SERVE_NAME",
                "TWIN_SERVE_ENGINE",
                "TWIN_SERVE_UPSTREAM",
                "TWIN_SERVE_UPSTREAM_BASE_MODEL",
                "TWIN_SERVE_UPSTREAM_ADAPTER",
                "TWIN_SERVE_ADAPTER_REVISION",
                "TWIN_SERVE_LISTEN",
                "TWIN_SERVE_TOP_K",
            ]
        );
        let value = |name: &str| environment.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(
            (value("TWIN_SERVE_ENGINE"), value("TWIN_SERVE_TOP_K"), value("TWIN_SERVE_ADAPTER_REVISION")),
            (Some("openai"), Some("4"), Some("r1"))
        );
    }
}
