//! The vLLM engine of a TwinEndpoint (pure): a Deployment of vLLM's OpenAI server with the
//! base model, the twin's adapter as a named LoRA module (fetched by an init container running
//! `twin fetch`), GPUs, shared memory, a model cache, and probes patient with slow loads.
//!
//! The LoRA module carries the endpoint's name, so the gateway always asks for the same model
//! while the adapter behind the name changes with each rollout.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, PodTemplateSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::parts::{ADAPTER_ANNOTATION, ENGINE_COMPONENT, Inputs, engine_name, rolling_deployment};
use super::plan::{ADAPTERS, AdapterArgs, BaseArgs, MODELS};
use crate::api::TwinTrainingJob;
use crate::api::common::{SecretKeyRef, StorageLocation};
use crate::api::endpoint::{Engine, ServedModel};
use crate::api::training::TrainedModel;
use crate::operator::children::pod::{
    claims, default_resources, empty_dir, env_var, http_port, mount, mount_claims, probe,
    restricted_container, s3_credentials, s3_env, secret_env, serving_pod,
};
use crate::operator::settings::OperatorSettings;

/// The port vLLM listens on.
pub const PORT: i32 = 8000;
/// The user vLLM runs as (the image would run as root).
const ENGINE_UID: i64 = 1000;
/// GPUs of an engine replica when the spec leaves it unset.
const DEFAULT_GPUS: u32 = 1;
/// vLLM's own default `--max-lora-rank`, used when the adapter's rank is unknown.
pub const DEFAULT_MAX_LORA_RANK: u32 = 16;
/// The accelerator resource the engine requests.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

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

/// What a vLLM pod runs, whoever owns it: an endpoint's own engine or a shared TwinEngine.
pub struct VllmPod<'a> {
    /// The engine's settings (image, GPUs, pod overrides, context, extra arguments, cache).
    pub engine: &'a Engine,
    /// The base model as vLLM is given it.
    pub base: &'a BaseArgs,
    /// The name the base model is served under.
    pub served_name: String,
    /// LoRA flags (`--enable-lora`, the modules, the slots and rank).
    pub lora_args: Vec<String>,
    /// Every `pvc://` place the pod reads, for the claims to mount.
    pub reads: Vec<&'a str>,
    /// The init container fetching the adapter, when there is one.
    pub fetch_adapter: Option<(String, String)>,
    /// Where the adapter was written (its S3 settings), for that init container.
    pub adapter_location: Option<&'a StorageLocation>,
    /// The Hugging Face token of a gated base model.
    pub hub_token: Option<&'a SecretKeyRef>,
    /// More environment for vLLM (the runtime LoRA API's switch).
    pub env: Vec<EnvVar>,
    /// Containers beside vLLM (a shared engine's adapter agent), with the volumes they need.
    pub sidecars: Vec<Container>,
    /// Volumes of the sidecars.
    pub sidecar_volumes: Vec<Volume>,
}

/// The vLLM command line: the base model, its served name, LoRA flags, context, tensor
/// parallelism, then the user's extra arguments.
fn vllm_args(pod: &VllmPod) -> Vec<String> {
    let engine = pod.engine;
    let base = pod.base;
    let mut args =
        vec![base.model.clone(), "--host".into(), "0.0.0.0".into(), "--port".into(), PORT.to_string()];
    args.extend(base.flags.iter().cloned());
    args.extend(["--served-model-name".into(), pod.served_name.clone()]);
    args.extend(pod.lora_args.iter().cloned());
    if let Some(length) = engine.max_model_len {
        args.extend(["--max-model-len".into(), length.to_string()]);
    }
    let gpus = engine.gpus.unwrap_or(DEFAULT_GPUS);
    if gpus > 1 && !given(engine, "--tensor-parallel-size") {
        args.extend(["--tensor-parallel-size".into(), gpus.to_string()]);
    }
    args.extend(engine.extra_args.clone().unwrap_or_default());
    args
}

/// Whether the user's extra arguments set `flag`.
pub fn given(engine: &Engine, flag: &str) -> bool {
    let extra = engine.extra_args.as_deref().unwrap_or_default();
    extra.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// An endpoint's LoRA flags for its one adapter `module` (`NAME=PATH`), fetched to
/// `adapter_folder`: the twin is the module named after the endpoint.
fn endpoint_lora_args(inputs: &Inputs, module: &str, adapter_folder: Option<&str>) -> Vec<String> {
    let engine = &inputs.endpoint.spec.engine;
    let mut args = vec![
        "--enable-lora".into(),
        "--max-loras".into(),
        "1".into(),
        "--lora-modules".into(),
        module.into(),
    ];
    if !given(engine, "--max-lora-rank") {
        let rank = inputs.trained.and_then(|t| t.max_lora_rank).unwrap_or(DEFAULT_MAX_LORA_RANK);
        args.extend(["--max-lora-rank".into(), rank.to_string()]);
    }
    // The template the adapter was trained with, from the folder it was fetched to (a base
    // model without one would otherwise be served with vLLM's guess).
    if let (Some(folder), Some(file), false) = (
        adapter_folder,
        inputs.trained.and_then(|t| t.chat_template.as_deref()),
        given(engine, "--chat-template"),
    ) {
        args.extend(["--chat-template".into(), format!("{folder}/{file}")]);
    }
    args
}

/// The engine's Deployment, loading `base` and `adapter` as validation planned them.
pub fn deployment(
    inputs: &Inputs,
    base: &BaseArgs,
    adapter: Option<&AdapterArgs>,
    settings: &OperatorSettings,
) -> Deployment {
    let endpoint = inputs.endpoint;
    let name = endpoint.name_any();
    let adapter_folder = adapter.and_then(|(_, fetch)| fetch.as_ref()).map(|(_, folder)| folder.as_str());
    let (served_name, lora_args) = match adapter {
        // The base answers as `<name>-base`; the twin is the LoRA module named after the endpoint.
        Some((module, _)) => (format!("{name}-base"), endpoint_lora_args(inputs, module, adapter_folder)),
        None => (name, Vec::new()),
    };
    let reads = [Some(inputs.model.base_model.as_str()), inputs.model.adapter_uri.as_deref()];
    let pod = VllmPod {
        engine: &endpoint.spec.engine,
        base,
        served_name,
        lora_args,
        reads: reads.into_iter().flatten().collect(),
        fetch_adapter: adapter.and_then(|(_, fetch)| fetch.clone()),
        adapter_location: inputs.adapter_location,
        hub_token: inputs.hub_token,
        env: Vec::new(),
        sidecars: Vec::new(),
        sidecar_volumes: Vec::new(),
    };
    let template = vllm_template(&pod, settings);
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
    rolling_deployment(endpoint, engine_name(endpoint), ENGINE_COMPONENT, replicas, annotations, template)
}

/// The pod template of a vLLM engine.
pub fn vllm_template(pod: &VllmPod, settings: &OperatorSettings) -> PodTemplateSpec {
    let engine = pod.engine;
    let overrides = engine.pod.clone().unwrap_or_default();
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
    volumes.extend(pod.sidecar_volumes.iter().cloned());
    let mut claim_mounts = Vec::new();
    let read: Vec<(&str, bool)> = pod.reads.iter().map(|uri| (*uri, false)).collect();
    let claims = claims(&read);
    mount_claims(
        claims.iter().map(|(claim, writes)| (claim.as_str(), *writes)),
        &mut volumes,
        &mut claim_mounts,
    );

    let mut init = Vec::new();
    if let Some(fetch) = &pod.base.fetch {
        let mounts = [mount("models", MODELS, false), mount("tmp", "/tmp", false)]
            .into_iter()
            .chain(claim_mounts.clone());
        init.push(fetch_container("fetch-model", fetch, None, mounts.collect(), settings));
    }
    if let Some(fetch) = &pod.fetch_adapter {
        let mounts = [mount("adapters", ADAPTERS, false), mount("tmp", "/tmp", false)]
            .into_iter()
            .chain(claim_mounts.clone());
        init.push(fetch_container("fetch-adapter", fetch, pod.adapter_location, mounts.collect(), settings));
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
    if let Some(secret) = pod.hub_token {
        env.push(secret_env("HF_TOKEN", secret));
    }
    env.extend(pod.env.iter().cloned());
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
        args: Some(vllm_args(pod)),
        ports: Some(http_port(PORT)),
        env: Some(env),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        // Downloading and loading a model takes minutes: up to an hour before liveness counts.
        startup_probe: Some(probe("/health", 10, 360)),
        readiness_probe: Some(probe("/health", 5, 3)),
        liveness_probe: Some(probe("/health", 15, 4)),
        ..Default::default()
    };
    // Requests under way finish before the pod goes.
    let mut template = serving_pod(&overrides, ENGINE_UID, container, init, 120, volumes);
    if let Some(spec) = template.spec.as_mut() {
        spec.containers.extend(
            pod.sidecars
                .iter()
                .cloned()
                .map(|sidecar| Container { security_context: Some(restricted_container()), ..sidecar }),
        );
    }
    template
}
