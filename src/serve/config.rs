//! `twin serve`'s settings: each a flag, each also an environment variable, and all of them
//! from one config file (`--config`, YAML or JSON, keyed by the flags' long names). A flag
//! beats its variable, which beats the file, which beats the default.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

pub use crate::contract::gateway::{EngineKind, GatewaySettings};
use crate::contract::{env, paths};

/// Flags of `twin serve`.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "twin serve", about = "Run the RAG gateway (OpenAI-compatible API)")]
pub struct ServeArgs {
    /// A YAML or JSON file of settings, keyed by these flags' long names (`upstream-model: x`).
    #[arg(long, env = "TWIN_SERVE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What the gateway serves and how it is reached (the settings a TwinEndpoint gives it).
    #[command(flatten)]
    pub gateway: GatewaySettings,
    /// Serve several twins of one base model from this process and this port, each
    /// `name=NAME[,adapter=GGUF][,dataset=URI]` (repeat the flag): one copy of --model answers
    /// them all, each with its own adapter and dataset, and a request picks its twin by
    /// `model`. Unset: one twin, --name.
    #[arg(long = "twin", env = "TWIN_SERVE_TWINS", value_delimiter = ';', value_parser = super::twins::parse_twin, value_name = "SPEC")]
    pub twins: Vec<super::twins::TwinSpec>,
    /// A file holding the upstream's API key (sent as a bearer token).
    #[arg(long, env = "TWIN_SERVE_UPSTREAM_API_KEY_FILE", value_name = "FILE")]
    pub upstream_api_key_file: Option<PathBuf>,
    /// The upstream model's tokenizer.json, to count prompt tokens exactly (else estimated at 3
    /// bytes a token, which over-counts and so errs on the side of fitting).
    #[arg(long, env = "TWIN_SERVE_UPSTREAM_TOKENIZER", value_name = "FILE")]
    pub upstream_tokenizer: Option<PathBuf>,
    /// Tokens kept for the answer when a request sets no max_tokens.
    #[arg(long, env = "TWIN_SERVE_ANSWER_TOKENS", default_value_t = 512)]
    pub answer_tokens: u32,
    /// The API key itself, when a caller in this process has it (`twin up` reads TWIN_API_KEY);
    /// never a flag, so that it stays out of process listings.
    #[arg(skip)]
    pub api_key: Option<ApiKey>,
    /// An engine a caller in this process has loaded already (`twin eval` runs the twin and its
    /// baseline on one copy of the weights); never a flag.
    #[arg(skip)]
    pub loaded_engine: Option<LoadedEngine>,
    /// Where `pvc://claim/...` volumes are mounted.
    #[arg(long, env = env::PVC_ROOT, default_value = paths::PVC_ROOT)]
    pub pvc_root: PathBuf,
    /// Requests served at once; more are refused with 429.
    #[arg(long, env = "TWIN_SERVE_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// Largest request body in bytes; larger get 413.
    #[arg(long, env = "TWIN_SERVE_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Time to connect to the upstream.
    #[arg(long, env = "TWIN_SERVE_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Time until an answer's first token, streamed or not (else 504). The embedded engine's
    /// queue counts: a request still waiting for a place then gets 429.
    #[arg(long, env = "TWIN_SERVE_FIRST_TOKEN_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub first_token_timeout: Duration,
    /// Longest silence between two tokens of a streamed answer.
    #[arg(long, env = "TWIN_SERVE_BETWEEN_TOKENS_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub between_tokens_timeout: Duration,
    /// Time for a whole answer that is not streamed (else 504).
    #[arg(long, env = "TWIN_SERVE_REQUEST_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How often a streamed answer sends a keep-alive comment while no token comes, so that
    /// proxies and load balancers do not close a slow answer's idle connection.
    #[arg(long, env = "TWIN_SERVE_KEEP_ALIVE", default_value = "15s", value_parser = parse_duration)]
    pub keep_alive: Duration,
    /// Tries of an upstream request that failed before its answer began (connection refused,
    /// 429, 502, 503).
    #[arg(long, env = "TWIN_SERVE_UPSTREAM_ATTEMPTS", default_value_t = 2)]
    pub upstream_attempts: u32,
    /// How often to look for a new dataset revision (also on SIGHUP).
    #[arg(long, env = "TWIN_SERVE_RELOAD_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// Prompt-log lines held for writing; beyond, lines are dropped and counted.
    #[arg(long, env = "TWIN_SERVE_PROMPT_LOG_BUFFER", default_value_t = 10_000)]
    pub prompt_log_buffer: usize,
    /// Longest a prompt-log line waits before it is written.
    #[arg(long, env = "TWIN_SERVE_PROMPT_LOG_FLUSH", default_value = "5s", value_parser = parse_duration)]
    pub prompt_log_flush: Duration,
    /// Embedded engine: answers decoded together in one batch; more wait in a queue.
    #[arg(long, env = "TWIN_SERVE_PARALLEL", default_value_t = 8)]
    pub parallel: usize,
    /// Embedded engine: requests waiting for a place in the batch; beyond, 429 (and 429 for
    /// one still waiting at the first-token timeout).
    #[arg(long, env = "TWIN_SERVE_QUEUE", default_value_t = 64)]
    pub queue: usize,
    /// Embedded engine: CPU threads. Default: every core.
    #[arg(long, env = "TWIN_SERVE_THREADS")]
    pub threads: Option<usize>,
}

/// An API key held in memory, shown as `***` by `{:?}` so that it never reaches a log.
#[derive(Clone, Default)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// An engine loaded (or loading) by the caller, which the gateway uses as it is: `twin up`
/// loads one model for several twins, `twin eval` the twin and its baseline on one copy.
#[derive(Clone)]
pub struct LoadedEngine(pub EngineLoading);

/// An engine a caller loads, awaited by every gateway that shares it.
pub type EngineLoading = futures::future::Shared<
    futures::future::BoxFuture<'static, Result<std::sync::Arc<dyn crate::serve::engine::Engine>, String>>,
>;

impl LoadedEngine {
    /// An engine already loaded.
    pub fn ready(engine: std::sync::Arc<dyn crate::serve::engine::Engine>) -> Self {
        use futures::FutureExt;
        Self(std::future::ready(Ok(engine)).boxed().shared())
    }
}

impl std::fmt::Debug for LoadedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadedEngine")
    }
}

/// A duration: `250ms`, `30s`, `5m`, `1h`, or plain seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 =
        number.trim().parse().map_err(|_| format!("{text:?} is not a duration (250ms, 30s, 5m, 1h)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a duration (250ms, 30s, 5m, 1h)"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

impl ServeArgs {
    /// Parses `twin serve`'s arguments (after the subcommand), then fills every setting given
    /// neither as a flag nor in the environment from the config file, if one is named.
    pub fn parse_with_config(args: Vec<OsString>) -> Result<Self, clap::Error> {
        let mut argv: Vec<OsString> = vec!["twin serve".into()];
        argv.extend(args);
        let command = Self::command();
        let matches = command.clone().try_get_matches_from(&argv)?;
        let parsed = Self::from_arg_matches(&matches)?;
        let Some(file) = &parsed.config else { return Ok(parsed) };
        let settings = read_config(file).map_err(|e| command.clone().error(clap::error::ErrorKind::Io, e))?;
        for (key, value) in settings {
            let argument = command.get_arguments().find(|a| a.get_long() == Some(key.as_str()));
            let Some(argument) = argument.filter(|a| a.get_id() != "config") else {
                return Err(command.clone().error(
                    clap::error::ErrorKind::UnknownArgument,
                    format!(
                        "{}: unknown setting {key:?} (settings are the long names of twin serve's flags)",
                        file.display()
                    ),
                ));
            };
            let source = matches.value_source(argument.get_id().as_str());
            if matches!(source, None | Some(ValueSource::DefaultValue)) {
                argv.push(format!("--{key}={value}").into());
            }
        }
        let matches = command.clone().try_get_matches_from(&argv)?;
        Self::from_arg_matches(&matches)
    }
}

/// The file's settings as `(long name, value)` pairs; camelCase keys are read as kebab-case.
fn read_config(file: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the config file {}: {e}", file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .or_else(|_| serde_saphyr::from_str(&text))
        .map_err(|e| format!("{} is neither JSON nor YAML: {e}", file.display()))?;
    let Some(map) = value.as_object() else {
        return Err(format!("{} must hold a map of settings", file.display()));
    };
    map.iter()
        .map(|(key, value)| {
            let key = kebab(key);
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "{}: {key} must be a string, number or boolean, not {other}",
                        file.display()
                    ));
                }
            };
            Ok((key, value))
        })
        .collect()
}

fn kebab(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else if c == '_' {
            out.push('-');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn flags_beat_the_config_file_which_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("twin-serve-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("serve.yaml");
        std::fs::write(
            &file,
            "engine: openai\nupstream: http://127.0.0.1:9/v1\ntopK: 7\nlisten: 127.0.0.1:1\n",
        )
        .unwrap();
        let args = ServeArgs::parse_with_config(vec![
            "--config".into(),
            file.clone().into(),
            "--listen".into(),
            "127.0.0.1:2".into(),
        ])
        .unwrap();
        assert_eq!(args.gateway.engine, EngineKind::Openai);
        assert_eq!(args.gateway.top_k, 7);
        assert_eq!(args.gateway.upstream.as_deref(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(args.gateway.listen, "127.0.0.1:2");
        std::fs::write(&file, "no-such-flag: 1\n").unwrap();
        let error = ServeArgs::parse_with_config(vec!["--config".into(), file.into()]).unwrap_err();
        assert!(error.to_string().contains("unknown setting \"no-such-flag\""), "{error}");
    }
}
