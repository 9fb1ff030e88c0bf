//! How a TwinEndpoint's engine loads the model it serves (pure): vLLM's base model argument
//! and flags and the adapter's LoRA module, the external server's URL, or the GGUF model and
//! adapter the embedded engine runs; each with what an init container fetches first. Worked
//! out once, by validation, which refuses what an engine cannot load; the builders read it.

use kube::ResourceExt;

use crate::api::TwinEndpoint;
use crate::api::endpoint::{EngineKind, ServedModel};
use crate::hashing::sha256_hex;
use crate::operator::children::naming::{NAME_LIMIT, child_name};
use crate::operator::children::pod::in_pod;
use crate::storage::hub::HubModel;

/// Where the engine's model cache is mounted.
pub const MODELS: &str = "/models";
/// Where an adapter is fetched to, in the engine's pod or the embedded engine's gateway.
pub const ADAPTERS: &str = "/adapters";

/// How the engine loads the served model, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum EnginePlan {
    /// vLLM: the base model's argument and flags, and the adapter's LoRA module.
    Vllm {
        /// The base model as vLLM is given it.
        base: BaseArgs,
        /// The adapter as vLLM loads it.
        adapter: Option<AdapterArgs>,
    },
    /// A TwinEngine shared with other twins of the base model, which loads the adapter at run
    /// time under the endpoint's name.
    Shared {
        /// The TwinEngine's name.
        engine: String,
        /// Its OpenAI-compatible base URL.
        url: String,
        /// The model the gateway asks for: the endpoint's name (its adapter), or the engine's
        /// (the base model, for an endpoint without an adapter).
        model: String,
    },
    /// An OpenAI-compatible server of the user's.
    External {
        /// Its base URL.
        url: String,
    },
    /// llama.cpp in the gateway.
    Embedded {
        /// The GGUF it loads, as the gateway's pod reaches it.
        model: String,
        /// The trainer's GGUF adapter, fetched before the gateway starts.
        adapter: Option<String>,
    },
}

/// The base model as vLLM is given it: its `model` argument, extra flags, and what an init
/// container fetches first (source URI, folder).
#[derive(Debug, Clone, PartialEq)]
pub struct BaseArgs {
    /// vLLM's `model` argument.
    pub model: String,
    /// Flags that go with it (`--revision`).
    pub flags: Vec<String>,
    /// What an init container fetches first: (source URI, folder).
    pub fetch: Option<(String, String)>,
}

/// The adapter as vLLM loads it: its `--lora-modules NAME=PATH`, and what an init container
/// fetches first (source URI, folder).
pub type AdapterArgs = (String, Option<(String, String)>);

/// The base model at `uri` as vLLM is given it, or why vLLM cannot load it in a cluster.
pub fn base_args(uri: &str) -> Result<BaseArgs, String> {
    let field = "the base model";
    if uri.ends_with(".gguf") {
        return Err(format!(
            "{field} {uri} is a GGUF file: vLLM serves LoRA adapters on safetensors weights; use the model's Hub or S3 folder, or engine.kind embedded for GGUF"
        ));
    }
    if uri.starts_with("hf://") {
        let model = HubModel::parse(uri)?;
        let flags = if model.revision == "main" {
            Vec::new()
        } else {
            vec!["--revision".into(), model.revision.clone()]
        };
        return Ok(BaseArgs { model: model.repo, flags, fetch: None });
    }
    if uri.starts_with("s3://") {
        let folder = format!("{MODELS}/s3/{}", &sha256_hex(uri.as_bytes())[..16]);
        return Ok(BaseArgs { model: folder.clone(), flags: Vec::new(), fetch: Some((uri.into(), folder)) });
    }
    if uri.starts_with("pvc://") {
        return Ok(BaseArgs { model: in_pod(uri), flags: Vec::new(), fetch: None });
    }
    Err(format!("{field} {uri} cannot be loaded in a cluster: use hf://, s3:// or pvc://"))
}

/// The adapter at `uri` as vLLM loads it under `name`, or why it cannot in a cluster.
pub fn adapter_args(name: &str, uri: &str) -> Result<AdapterArgs, String> {
    if uri.starts_with("hf://") {
        let model = HubModel::parse(uri)?;
        if model.revision != "main" {
            return Err(format!(
                "the adapter {uri}: vLLM loads Hub adapters at their main revision only; copy this revision to s3:// or pvc://"
            ));
        }
        return Ok((format!("{name}={}", model.repo), None));
    }
    if uri.starts_with("s3://") || uri.starts_with("pvc://") {
        let folder = format!("{ADAPTERS}/{name}");
        return Ok((format!("{name}={folder}"), Some((uri.into(), folder))));
    }
    Err(format!("the adapter {uri} cannot be loaded in a cluster: use s3://, pvc:// or hf://"))
}

/// The GGUF the embedded engine loads for a base model: an `hf://…/file.gguf` URI as is, a
/// `pvc://` file where its claim is mounted.
pub fn embedded_model(uri: &str) -> Result<String, String> {
    if !uri.ends_with(".gguf") {
        return Err(format!(
            "the base model {uri} is not a .gguf file: the embedded engine runs GGUF models (hf://org/name@revision/file.gguf or pvc://claim/file.gguf); serve other models with engine.kind vllm"
        ));
    }
    match uri.split_once("://").map(|(scheme, _)| scheme) {
        Some("hf") | Some("pvc") => Ok(in_pod(uri)),
        _ => Err(format!(
            "the base model {uri}: the embedded engine loads hf:// or pvc:// GGUF files in a cluster"
        )),
    }
}

/// The trainer's GGUF adapter beside a PEFT adapter folder (`<run>/adapter` → `<run>/adapter.gguf`).
fn gguf_adapter(uri: &str) -> String {
    if uri.ends_with(".gguf") { uri.to_string() } else { format!("{}.gguf", uri.trim_end_matches('/')) }
}

/// The trainer's GGUF adapter the embedded engine fetches for `adapter` (a PEFT folder or a
/// `.gguf` file), or why it cannot.
pub fn embedded_adapter(adapter: &str) -> Result<String, String> {
    let source = gguf_adapter(adapter);
    if source.starts_with("s3://") || source.starts_with("pvc://") {
        Ok(source)
    } else {
        Err(format!(
            "the adapter {adapter}: the embedded engine loads the trainer's adapter.gguf from s3:// or pvc://"
        ))
    }
}

/// Whether a shared engine's agent can fetch the adapter at `uri`: from S3 into the engine's
/// cache, or from the Hub by vLLM itself; a `pvc://` adapter would need its claim in the
/// engine's pod, which a new twin must not change.
pub fn shared_adapter(uri: &str) -> Result<(), String> {
    if uri.starts_with("s3://") {
        return Ok(());
    }
    if uri.starts_with("hf://") {
        let model = HubModel::parse(uri)?;
        return match model.revision.as_str() {
            "main" => Ok(()),
            _ => Err(format!(
                "the adapter {uri}: vLLM loads Hub adapters at their main revision only; copy this revision to s3://"
            )),
        };
    }
    Err(format!(
        "the adapter {uri}: a shared engine loads adapters from s3:// or hf:// (a pvc:// adapter would need its claim mounted in the engine, restarting it); copy it to S3, or use engine.kind vllm"
    ))
}

/// The base URL of a TwinEngine's vLLM in `namespace`.
pub fn shared_engine_url(engine: &str, namespace: &str) -> String {
    format!("http://{}.{namespace}.svc:{}/v1", shared_engine_name(engine), super::engine::PORT)
}

/// The name of a TwinEngine's Deployment, Service and ConfigMap.
pub fn shared_engine_name(engine: &str) -> String {
    child_name(engine, "-engine", NAME_LIMIT)
}

/// What the endpoint's engine is given to load `model`, or why it cannot.
pub fn plan_engine(endpoint: &TwinEndpoint, model: &ServedModel) -> Result<EnginePlan, String> {
    Ok(match endpoint.spec.engine.kind {
        EngineKind::Shared => {
            let engine = endpoint
                .spec
                .engine
                .engine_ref
                .as_ref()
                .ok_or("spec.engine.engineRef is required for the shared engine")?
                .name
                .clone();
            let asked = match &model.adapter_uri {
                Some(adapter) => {
                    shared_adapter(adapter)?;
                    endpoint.name_any()
                }
                None => engine.clone(),
            };
            let url = shared_engine_url(&engine, &endpoint.namespace().unwrap_or_default());
            EnginePlan::Shared { engine, url, model: asked }
        }
        EngineKind::Vllm => EnginePlan::Vllm {
            base: base_args(&model.base_model)?,
            adapter: match &model.adapter_uri {
                Some(uri) => Some(adapter_args(&endpoint.name_any(), uri)?),
                None => None,
            },
        },
        EngineKind::External => EnginePlan::External {
            url: endpoint
                .spec
                .engine
                .url
                .clone()
                .ok_or("spec.engine.url is required for the external engine")?,
        },
        EngineKind::Embedded => EnginePlan::Embedded {
            model: embedded_model(&model.base_model)?,
            adapter: match &model.adapter_uri {
                Some(adapter) => Some(embedded_adapter(adapter)?),
                None => None,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_models_and_adapters_become_vllm_arguments_or_a_reason() {
        let hub = base_args("hf://meta-llama/Llama-3.1-8B@v1").unwrap();
        assert_eq!(
            (hub.model.as_str(), hub.flags.as_slice()),
            ("meta-llama/Llama-3.1-8B", &["--revision".to_string(), "v1".into()][..])
        );
        let s3 = base_args("s3://models/llama").unwrap();
        assert!(s3.model.starts_with("/models/s3/") && s3.fetch.is_some());
        assert_eq!(base_args("pvc://weights/llama").unwrap().model, "/mnt/twin/pvc/weights/llama");
        assert!(base_args("hf://org/m@main/m.gguf").unwrap_err().contains("GGUF"));
        assert!(base_args("file:///m").unwrap_err().contains("cannot be loaded in a cluster"));
        let (module, fetch) = adapter_args("paul", "s3://out/models/paul-v1/g1-r/adapter").unwrap();
        assert_eq!(module, "paul=/adapters/paul");
        assert_eq!(fetch.unwrap(), ("s3://out/models/paul-v1/g1-r/adapter".into(), "/adapters/paul".into()));
        assert_eq!(adapter_args("paul", "hf://org/lora").unwrap(), ("paul=org/lora".into(), None));
        assert!(adapter_args("paul", "hf://org/lora@v2").unwrap_err().contains("main revision"));
    }

    #[test]
    fn the_embedded_engine_loads_gguf_models_and_the_trainers_gguf_adapter() {
        assert_eq!(embedded_model("pvc://models/smollm2.gguf").unwrap(), "/mnt/twin/pvc/models/smollm2.gguf");
        assert_eq!(embedded_model("hf://org/m@v1/m.gguf").unwrap(), "hf://org/m@v1/m.gguf");
        assert!(embedded_model("hf://org/m").unwrap_err().contains("not a .gguf file"));
        assert!(embedded_model("s3://b/m.gguf").unwrap_err().contains("hf:// or pvc://"));
        assert_eq!(gguf_adapter("s3://out/models/p/g1-r/adapter/"), "s3://out/models/p/g1-r/adapter.gguf");
        assert_eq!(gguf_adapter("pvc://out/a.gguf"), "pvc://out/a.gguf");
    }
}
