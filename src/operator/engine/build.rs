//! Building a TwinEngine's children (pure): the adapters its endpoints want (each endpoint's
//! model resolved as the endpoint resolves it), the ConfigMap that lists them for the agent,
//! and the vLLM Deployment (runtime LoRA on, sized for its adapters, the agent beside it) and
//! its Service. The pod template depends on the engine's spec and the largest adapter rank
//! only: a new, retrained or removed twin changes the ConfigMap, never the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Container, ContainerPort, HTTPGetAction, Probe, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::DynamicObject;

use crate::api::endpoint::EngineKind;
use crate::api::{TwinEndpoint, TwinEngine, TwinTrainingJob};
use crate::contract::adapters::{AGENT_PORT, WANTED_DIR, WANTED_FILE, Wanted, WantedAdapter};
use crate::operator::children::naming::{NAME_LIMIT, child_name};
use crate::operator::children::pod::{
    config_map_volume, default_resources, env_var, mount, s3_credentials, s3_env,
};
use crate::operator::children::{ApplyPolicy, ChildSet};
use crate::operator::driver::Validation;
use crate::operator::endpoint::engine::{DEFAULT_MAX_LORA_RANK, PORT, VllmPod, given, vllm_template};
use crate::operator::endpoint::parts::{ENGINE_COMPONENT, meta, rolling_deployment, service};
use crate::operator::endpoint::plan::{BaseArgs, MODELS, shared_adapter, shared_engine_name};
use crate::operator::endpoint::scaling::{
    budget, engine_autoscaler, monitor, scaled_object_resource, service_monitor_resource,
};
use crate::operator::endpoint::validate::{adapter_rank, resolve_model};
use crate::operator::error::Result;
use crate::operator::settings::OperatorSettings;

/// The agent's container name.
pub const AGENT_CONTAINER: &str = "adapter-agent";

/// An adapter an endpoint wants from the engine, with its rank when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedBy {
    /// The adapter under the endpoint's name.
    pub adapter: WantedAdapter,
    /// Its LoRA rank, when its training reported it.
    pub rank: Option<u32>,
}

/// The TwinEndpoints that name `engine`, not being deleted.
pub fn users<'a>(engine: &TwinEngine, endpoints: &'a [TwinEndpoint]) -> Vec<&'a TwinEndpoint> {
    let name = engine.name_any();
    endpoints
        .iter()
        .filter(|e| e.metadata.deletion_timestamp.is_none())
        .filter(|e| e.spec.engine.kind == EngineKind::Shared)
        .filter(|e| e.spec.engine.engine_ref.as_ref().is_some_and(|r| r.name == name))
        .collect()
}

/// The adapters the engine's users want, by endpoint name: each endpoint's model as it resolves
/// it (its training job's promoted adapter, or its own), when the engine can serve it (its
/// base model, a source the agent reads); the endpoint says why otherwise.
pub fn wanted(engine: &TwinEngine, users: &[(&TwinEndpoint, Option<&TwinTrainingJob>)]) -> Vec<WantedBy> {
    let mut wanted: Vec<WantedBy> = users
        .iter()
        .filter_map(|(endpoint, job)| {
            let Validation::Proceed(model) = resolve_model(endpoint, *job) else { return None };
            let rank = adapter_rank(&model, *job);
            let uri = model.adapter_uri.filter(|_| model.base_model == engine.spec.base_model.uri)?;
            shared_adapter(&uri).ok()?;
            let fits = engine.spec.adapters.max_rank.is_none_or(|most| rank.is_none_or(|r| r <= most));
            fits.then(|| WantedBy { adapter: WantedAdapter { name: endpoint.name_any(), uri }, rank })
        })
        .collect();
    wanted.sort_by(|a, b| a.adapter.name.cmp(&b.adapter.name));
    wanted
}

/// Whether an engine has anything to serve: an adapter wanted, or an endpoint of its base model
/// without one (which asks for the base model by the engine's name). Until then it runs
/// nothing, and holds no GPU for endpoints still waiting for their model.
pub fn has_work(
    engine: &TwinEngine,
    users: &[(&TwinEndpoint, Option<&TwinTrainingJob>)],
    wanted: &[WantedBy],
) -> bool {
    !wanted.is_empty()
        || users.iter().any(|(endpoint, job)| {
            matches!(resolve_model(endpoint, *job), Validation::Proceed(model)
                if model.adapter_uri.is_none() && model.base_model == engine.spec.base_model.uri)
        })
}

/// The names of an engine's children: the Deployment and Service, and the ConfigMap.
pub fn names(engine: &TwinEngine) -> (String, String) {
    let name = engine.name_any();
    (shared_engine_name(&name), child_name(&name, "-engine-adapters", NAME_LIMIT))
}

/// The desired children of an engine.
#[derive(Debug, Clone, Default)]
pub struct EngineChildren {
    /// The adapters wanted, for the agent.
    pub wanted: Option<ConfigMap>,
    /// vLLM and its agent.
    pub deployment: Option<Deployment>,
    /// vLLM's Service.
    pub service: Option<Service>,
    /// Its HorizontalPodAutoscaler (`autoscaling` without `keda`).
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// Its KEDA ScaledObject (`autoscaling.keda`).
    pub scaled_object: Option<DynamicObject>,
    /// Its PodDisruptionBudget, when it may run more than one replica.
    pub budget: Option<PodDisruptionBudget>,
    /// Its ServiceMonitor, when monitoring is on.
    pub monitor: Option<DynamicObject>,
}

impl EngineChildren {
    /// In apply order: the ConfigMap (which the pods mount), the Service, the Deployment. All
    /// three kinds are managed, so an unused engine's children go.
    pub fn child_set(&self) -> Result<ChildSet> {
        let mut set = ChildSet::new();
        if let Some(config_map) = &self.wanted {
            set.add(config_map, ApplyPolicy::Apply)?;
        }
        if let Some(service) = &self.service {
            set.add(service, ApplyPolicy::Apply)?;
        }
        if let Some(deployment) = &self.deployment {
            set.add(deployment, ApplyPolicy::Apply)?;
        }
        if let Some(autoscaler) = &self.autoscaler {
            set.add(autoscaler, ApplyPolicy::Apply)?;
        }
        if let Some(scaled) = &self.scaled_object {
            set.add_dynamic(scaled, &scaled_object_resource(), ApplyPolicy::Apply)?;
        }
        if let Some(budget) = &self.budget {
            set.add(budget, ApplyPolicy::Apply)?;
        }
        if let Some(monitor) = &self.monitor {
            set.add_dynamic(monitor, &service_monitor_resource(), ApplyPolicy::Apply)?;
        }
        set.manage::<ConfigMap>();
        set.manage::<Service>();
        set.manage::<Deployment>();
        set.manage::<HorizontalPodAutoscaler>();
        set.manage::<PodDisruptionBudget>();
        set.manage_dynamic(&scaled_object_resource());
        set.manage_dynamic(&service_monitor_resource());
        Ok(set)
    }
}

/// The largest LoRA rank the engine accepts: the spec's, else the largest of its adapters'.
pub fn max_rank(engine: &TwinEngine, wanted: &[WantedBy]) -> u32 {
    engine
        .spec
        .adapters
        .max_rank
        .unwrap_or_else(|| wanted.iter().filter_map(|w| w.rank).max().unwrap_or(DEFAULT_MAX_LORA_RANK))
}

/// The children of an engine with users, running `base`; `gateways` are the users' gateways,
/// whose requests wake an engine scaled to zero.
pub fn build(
    engine: &TwinEngine,
    base: &BaseArgs,
    wanted: &[WantedBy],
    gateways: &[String],
    settings: &OperatorSettings,
) -> EngineChildren {
    let (name, config_map_name) = names(engine);
    let list = Wanted { adapters: wanted.iter().map(|w| w.adapter.clone()).collect() };
    let config_map = ConfigMap {
        metadata: meta(engine, config_map_name.clone(), ENGINE_COMPONENT),
        data: Some(BTreeMap::from([(
            WANTED_FILE.to_string(),
            serde_json::to_string_pretty(&list).expect("a list of adapters serialises"),
        )])),
        ..Default::default()
    };
    let spec = &engine.spec;
    let vllm = &spec.vllm;
    let slots = &spec.adapters;
    let mut lora_args = vec!["--enable-lora".to_string()];
    for (flag, value) in [
        ("--max-loras", slots.max_loaded),
        ("--max-cpu-loras", slots.max_cpu),
        ("--max-lora-rank", max_rank(engine, wanted)),
    ] {
        if !given(vllm, flag) {
            lora_args.extend([flag.to_string(), value.to_string()]);
        }
    }
    let store = slots.store.as_ref().filter(|s| s.uri.starts_with("s3://"));
    let agent = Container {
        name: AGENT_CONTAINER.into(),
        image: Some(settings.twin_image.clone()),
        args: Some(vec!["engine-agent".into()]),
        env: Some(
            [
                env_var("TWIN_AGENT_VLLM", format!("http://127.0.0.1:{PORT}")),
                env_var("TWIN_AGENT_CACHE", format!("{MODELS}/adapters")),
                env_var("HOME", "/tmp"),
            ]
            .into_iter()
            .chain(store.map(s3_env).unwrap_or_default())
            .collect(),
        ),
        env_from: store.and_then(s3_credentials),
        ports: Some(vec![ContainerPort {
            name: Some("agent".into()),
            container_port: AGENT_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(default_resources("50m", "64Mi", "512Mi")),
        volume_mounts: Some(vec![
            mount("models", MODELS, false),
            mount("wanted", WANTED_DIR, true),
            mount("tmp", "/tmp", false),
        ]),
        // Ready once its adapters have been tried: a new replica takes requests with them.
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::String("agent".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = VllmPod {
        engine: vllm,
        base,
        served_name: engine.name_any(),
        lora_args,
        reads: vec![spec.base_model.uri.as_str()],
        fetch_adapter: None,
        adapter_location: None,
        hub_token: spec.base_model.token_secret_ref.as_ref(),
        // vLLM's runtime LoRA API (load_lora_adapter, unload_lora_adapter) is off without it.
        env: vec![env_var("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")],
        sidecars: vec![agent],
        sidecar_volumes: vec![config_map_volume("wanted", &config_map_name)],
    };
    let template = vllm_template(&pod, settings);
    // Replicas are the autoscaler's to set when one manages the engine.
    let replicas = if spec.autoscaling.is_some() { None } else { Some(1) };
    let deployment =
        rolling_deployment(engine, name.clone(), ENGINE_COMPONENT, replicas, BTreeMap::new(), template);
    let (autoscaler, scaled_object) = match &spec.autoscaling {
        Some(scaling) => engine_autoscaler(engine, &name, scaling, gateways),
        None => (None, None),
    };
    let most = spec.autoscaling.as_ref().map_or(1, |s| s.max_replicas);
    let budget = (most > 1).then(|| budget(engine, name.clone(), ENGINE_COMPONENT));
    let monitor = spec.monitoring.service_monitor.then(|| monitor(engine, name.clone(), ENGINE_COMPONENT));
    let service = service(engine, name, ENGINE_COMPONENT, PORT);
    EngineChildren {
        wanted: Some(config_map),
        deployment: Some(deployment),
        service: Some(service),
        autoscaler,
        scaled_object,
        budget,
        monitor,
    }
}
