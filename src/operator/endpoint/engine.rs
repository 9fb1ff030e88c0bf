//! The vLLM engine of a TwinEndpoint (pure): a Deployment of vLLM's OpenAI server with the
//! base model, the twin's adapter as a named LoRA module (fetched by an init container running
//! `twin fetch`), GPUs, shared memory, a model cache, and probes patient with slow loads.
//!
//! The LoRA module carries the endpoint's name, so the gateway always asks for the same model
//! while the adapter behind the name changes with each rollout.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaimVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::build::{
    ADAPTER_ANNOTATION, ENGINE_COMPONENT, Inputs, empty_dir, engine_name, env_var, http_port, mount, probe,
    rolling_deployment, serving_pod,
};
use crate::api::TwinTrainingJob;
use crate::api::common::StorageLocation;
use crate::api::endpoint::ServedModel;
use crate::api::training::TrainedModel;
use crate::hashing::sha256_hex;
use crate::operator::children::pod::{
    claims, default_resources, in_pod, mount_claims, restricted_container, s3_credentials, s3_env, secret_env,
};
use crate::operator::settings::OperatorSettings;
use crate::storage::hub::HubModel;

/// The port vLLM listens on.
pub const PORT: i32 = 8000;
/// The user vLLM runs as (the image would run as root).
const ENGINE_UID: i64 = 1000;
/// Where the model cache is mounted.
const MODELS: &str = "/models";
/// Where the adapter is fetched to.
const ADAPTERS: &str = "/adapters";
/// GPUs of an engine replica when the spec leaves it unset.
const DEFAULT_GPUS: u32 = 1;
/// vLLM's own default `--max-lora-rank`, used when the adapter's rank is unknown.
const DEFAULT_MAX_LORA_RANK: u32 = 16;
/// The accelerator resource the engine requests.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// The base model as vLLM is given it: its `model` argument, extra flags, and what an init
/// container fetches first (source URI, folder).
#[derive(Debug)]
struct BaseArgs {
    model: String,
    flags: Vec<String>,
    fetch: Option<(String, String)>,
}

fn base_args(uri: &str) -> Result<BaseArgs, String> {
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

/// The adapter as vLLM loads it (`--lora-modules NAME=PATH`), and what an init container
/// fetches first.
fn adapter_args(name: &str, uri: &str) -> Result<(String, Option<(String, String)>), String> {
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

/// What the served adapter's training reported of it (the LoRA rank vLLM needs, its chat
/// template): from the training job while its promoted model is the one served; else (a job
/// whose status lost its model) from the engine that serves the adapter now, so that nothing
/// changes the engine's arguments under it.
pub fn trained_model(
    served: &ServedModel,
    job: Option<&TwinTrainingJob>,
    engine: Option<&Deployment>,
) -> Option<TrainedModel> {
    let adapter = served.adapter_uri.as_ref()?;
    if let Some(trained) = job.and_then(|j| j.status.as_ref()?.model.as_ref()) {
        return (&trained.adapter_uri == adapter).then(|| trained.clone());
    }
    let engine = engine.filter(|e| e.annotations().get(ADAPTER_ANNOTATION) == Some(adapter))?;
    let args = engine.spec.as_ref()?.template.spec.as_ref()?.containers.first()?.args.as_ref()?;
    let after = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    Some(TrainedModel {
        run: None,
        dataset_revision: served.dataset_revision.clone(),
        base_model: served.base_model.clone(),
        adapter_uri: adapter.clone(),
        max_lora_rank: after("--max-lora-rank").and_then(|rank| rank.parse().ok()),
        chat_template: after("--chat-template").and_then(|path| path.rsplit('/').next()).map(str::to_string),
    })
}

/// An init container running `twin fetch SOURCE FOLDER`.
pub fn fetch_container(
    name: &str,
    (source, folder): &(String, String),
    location: Option<&StorageLocation>,
    mounts: Vec<VolumeMount>,
    settings: &OperatorSettings,
) -> Container {
    let s3 = location.filter(|l| l.uri.starts_with("s3://") && source.starts_with("s3://"));
    Container {
        name: name.into(),
        image: Some(settings.twin_image.clone()),
        args: Some(vec!["fetch".into(), source.clone(), folder.clone()]),
        env: Some(s3.map(s3_env).unwrap_or_default()).filter(|e| !e.is_empty()),
        env_from: s3.and_then(s3_credentials),
        resources: Some(default_resources("100m", "128Mi", "512Mi")),
        volume_mounts: Some(mounts),
        security_context: Some(restricted_container()),
        ..Default::default()
    }
}

/// The vLLM command line; `adapter_folder` is where an init container fetched the adapter.
fn vllm_args(
    inputs: &Inputs,
    base: &BaseArgs,
    lora_module: Option<&str>,
    adapter_folder: Option<&str>,
) -> Vec<String> {
    let endpoint = inputs.endpoint;
    let engine = &endpoint.spec.engine;
    let name = endpoint.name_any();
    let mut args =
        vec![base.model.clone(), "--host".into(), "0.0.0.0".into(), "--port".into(), PORT.to_string()];
    args.extend(base.flags.iter().cloned());
    let extra = engine.extra_args.clone().unwrap_or_default();
    let given = |flag: &str| extra.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    match lora_module {
        // The base answers as `<name>-base`; the twin is the LoRA module named after the endpoint.
        Some(module) => {
            args.extend(["--served-model-name".into(), format!("{name}-base")]);
            args.extend(["--enable-lora".into(), "--max-loras".into(), "1".into()]);
            args.extend(["--lora-modules".into(), module.into()]);
            if !given("--max-lora-rank") {
                let rank = inputs.trained.and_then(|t| t.max_lora_rank).unwrap_or(DEFAULT_MAX_LORA_RANK);
                args.extend(["--max-lora-rank".into(), rank.to_string()]);
            }
            // The template the adapter was trained with, from the folder it was fetched to (a
            // base model without one would otherwise be served with vLLM's guess).
            if let (Some(folder), Some(file), false) = (
                adapter_folder,
                inputs.trained.and_then(|t| t.chat_template.as_deref()),
                given("--chat-template"),
            ) {
                args.extend(["--chat-template".into(), format!("{folder}/{file}")]);
            }
        }
        None => args.extend(["--served-model-name".into(), name]),
    }
    if let Some(length) = engine.max_model_len {
        args.extend(["--max-model-len".into(), length.to_string()]);
    }
    let gpus = engine.gpus.unwrap_or(DEFAULT_GPUS);
    if gpus > 1 && !given("--tensor-parallel-size") {
        args.extend(["--tensor-parallel-size".into(), gpus.to_string()]);
    }
    args.extend(extra);
    args
}

/// The engine's Deployment.
pub fn deployment(inputs: &Inputs, settings: &OperatorSettings) -> Result<Deployment, String> {
    let endpoint = inputs.endpoint;
    let engine = &endpoint.spec.engine;
    let overrides = engine.pod.clone().unwrap_or_default();
    let base = base_args(&inputs.model.base_model)?;
    let adapter = match &inputs.model.adapter_uri {
        Some(uri) => Some(adapter_args(&endpoint.name_any(), uri)?),
        None => None,
    };
    let cache = engine.model_cache.clone().unwrap_or_default();
    let models = match &cache.claim_name {
        Some(claim) => Volume {
            name: "models".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(false),
            }),
            ..Default::default()
        },
        None => empty_dir("models", None, cache.size_limit.clone()),
    };
    let shared_memory = engine.shared_memory.clone().unwrap_or_else(|| Quantity("2Gi".into()));
    let mut volumes = vec![
        models,
        empty_dir("adapters", None, None),
        empty_dir("shm", Some("Memory"), Some(shared_memory)),
        empty_dir("tmp", None, None),
    ];
    let mut claim_mounts = Vec::new();
    let read = [Some(inputs.model.base_model.as_str()), inputs.model.adapter_uri.as_deref()];
    let read: Vec<(&str, bool)> = read.into_iter().flatten().map(|uri| (uri, false)).collect();
    let claims = claims(&read);
    mount_claims(
        claims.iter().map(|(claim, writes)| (claim.as_str(), *writes)),
        &mut volumes,
        &mut claim_mounts,
    );

    let mut init = Vec::new();
    if let Some(fetch) = &base.fetch {
        let mounts = [mount("models", MODELS, false), mount("tmp", "/tmp", false)]
            .into_iter()
            .chain(claim_mounts.clone());
        init.push(fetch_container("fetch-model", fetch, None, mounts.collect(), settings));
    }
    if let Some((_, Some(fetch))) = &adapter {
        let mounts = [mount("adapters", ADAPTERS, false), mount("tmp", "/tmp", false)]
            .into_iter()
            .chain(claim_mounts.clone());
        init.push(fetch_container(
            "fetch-adapter",
            fetch,
            inputs.adapter_location,
            mounts.collect(),
            settings,
        ));
    }

    // The root filesystem is read-only: caches go to /tmp, downloads and compiled kernels to
    // the model cache, so that a restarted pod finds them.
    let mut env = vec![
        env_var("HOME", "/tmp"),
        // No passwd entry exists for the user: PyTorch's caches name themselves after $USER.
        env_var("USER", "vllm"),
        env_var("HF_HOME", format!("{MODELS}/huggingface")),
        env_var("VLLM_CACHE_ROOT", format!("{MODELS}/vllm")),
        env_var("VLLM_NO_USAGE_STATS", "1"),
        env_var("DO_NOT_TRACK", "1"),
    ];
    if let Some(secret) = inputs.hub_token {
        env.push(secret_env("HF_TOKEN", secret));
    }
    let gpus = engine.gpus.unwrap_or(DEFAULT_GPUS);
    let mut resources = overrides.resources.clone().unwrap_or_else(|| default_resources("2", "16Gi", "32Gi"));
    if gpus > 0 {
        let count = Quantity(gpus.to_string());
        resources.limits.get_or_insert_default().insert(GPU_RESOURCE.into(), count.clone());
        resources.requests.get_or_insert_default().insert(GPU_RESOURCE.into(), count);
    }
    let mut mounts = vec![
        mount("models", MODELS, false),
        mount("adapters", ADAPTERS, true),
        mount("shm", "/dev/shm", false),
        mount("tmp", "/tmp", false),
    ];
    mounts.extend(claim_mounts);
    let lora_module = adapter.as_ref().map(|(module, _)| module.as_str());
    let adapter_folder =
        adapter.as_ref().and_then(|(_, fetch)| fetch.as_ref()).map(|(_, folder)| folder.as_str());
    let container = Container {
        name: "vllm".into(),
        image: Some(
            engine
                .image
                .clone()
                .or_else(|| overrides.image.clone())
                .unwrap_or_else(|| settings.vllm_image.clone()),
        ),
        command: Some(vec!["vllm".into(), "serve".into()]),
        args: Some(vllm_args(inputs, &base, lora_module, adapter_folder)),
        ports: Some(http_port(PORT)),
        env: Some(env),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        // Downloading and loading a model takes minutes: up to an hour before liveness counts.
        startup_probe: Some(probe("/health", 10, 360)),
        readiness_probe: Some(probe("/health", 5, 3)),
        liveness_probe: Some(probe("/health", 15, 4)),
        security_context: Some(restricted_container()),
        ..Default::default()
    };
    // Requests under way finish before the pod goes.
    let template = serving_pod(&overrides, ENGINE_UID, container, init, 120, volumes);
    let annotations = inputs
        .model
        .adapter_uri
        .iter()
        .map(|adapter| (ADAPTER_ANNOTATION.to_string(), adapter.clone()))
        .collect();
    let replicas = match &endpoint.spec.autoscaling {
        Some(_) => None,
        None => Some(1),
    };
    Ok(rolling_deployment(endpoint, engine_name(endpoint), ENGINE_COMPONENT, replicas, annotations, template))
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
}
