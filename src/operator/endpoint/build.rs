//! Building the children of a TwinEndpoint (pure): the engine (vLLM) Deployment and Service,
//! the gateway (`twin serve`) Deployment and Service, and their autoscalers, disruption
//! budgets and ServiceMonitors. What the engine and gateway run is in [`super::engine`] and
//! [`super::gateway`]; scaling and monitoring in [`super::scaling`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{DynamicObject, ObjectMeta};

use super::{engine, gateway, scaling};
use crate::api::common::{PodOverrides, SecretKeyRef, StorageLocation};
use crate::api::endpoint::{EngineKind, ServedModel};
use crate::api::training::TrainedModel;
use crate::api::{TwinDataset, TwinEndpoint};
use crate::contract::labels;
use crate::operator::children::naming::{NAME_LIMIT, child_labels, child_name, owner_reference};
use crate::operator::children::pod::workload_pod_spec;
use crate::operator::children::{ApplyPolicy, ChildSet};
use crate::operator::error::Result;
use crate::operator::settings::OperatorSettings;

/// The `app.kubernetes.io/name` of an endpoint's children.
pub const ENDPOINT_NAME: &str = "twin-endpoint";
/// The component label of the engine's children.
pub const ENGINE_COMPONENT: &str = "engine";
/// The component label of the gateway's children.
pub const GATEWAY_COMPONENT: &str = "gateway";
/// The annotation of the engine's Deployment and pods naming the adapter they serve: a new
/// adapter changes the pod template, which rolls the engine.
pub const ADAPTER_ANNOTATION: &str = "llmtwin.dev/adapter";
/// The annotation of the gateway's Deployment and pods naming the dataset revision it pins.
pub const REVISION_ANNOTATION: &str = "llmtwin.dev/dataset-revision";
/// The annotation of the gateway's Deployment and pods holding the model it names in its
/// answers' lineage and whose revision it pins (a `ServedModel` as JSON).
pub const MODEL_ANNOTATION: &str = "llmtwin.dev/served-model";

/// What an endpoint serves, resolved by validation.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The endpoint.
    pub endpoint: &'a TwinEndpoint,
    /// The model wanted now: base model, adapter and the dataset revision it was trained on.
    pub model: &'a ServedModel,
    /// The Hugging Face token of a gated base model.
    pub hub_token: Option<&'a SecretKeyRef>,
    /// Where the adapter was written (its S3 endpoint, region and credentials).
    pub adapter_location: Option<&'a StorageLocation>,
    /// What the adapter's training reported of it: the LoRA rank vLLM needs, the chat template
    /// it was trained with.
    pub trained: Option<&'a TrainedModel>,
    /// The dataset retrieval reads.
    pub dataset: Option<&'a TwinDataset>,
    /// The model the gateway names and whose dataset revision it pins (the wanted one once the
    /// engine serves its adapter).
    pub gateway_model: &'a ServedModel,
}

/// The desired children of an endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointChildren {
    /// The vLLM Deployment (engine `vllm`).
    pub engine: Option<Deployment>,
    /// Its Service.
    pub engine_service: Option<Service>,
    /// The gateway Deployment.
    pub gateway: Deployment,
    /// Its Service, the endpoint's address.
    pub gateway_service: Service,
    /// HorizontalPodAutoscalers (the gateway's on CPU, the engine's on running requests).
    pub autoscalers: Vec<HorizontalPodAutoscaler>,
    /// KEDA ScaledObjects (the engine's, when `autoscaling.keda` is set).
    pub scaled_objects: Vec<DynamicObject>,
    /// PodDisruptionBudgets of the parts that run more than one replica.
    pub budgets: Vec<PodDisruptionBudget>,
    /// ServiceMonitors, when monitoring is on.
    pub monitors: Vec<DynamicObject>,
}

impl EndpointChildren {
    /// In apply order: Services, the engine, the gateway (so a new gateway finds its upstream),
    /// then autoscalers, budgets and monitors. Every kind is managed, so a child the spec no
    /// longer wants (an autoscaler, a budget, the engine of an endpoint turned `external`) goes.
    pub fn child_set(&self) -> Result<ChildSet> {
        let mut set = ChildSet::new();
        for service in self.engine_service.iter().chain([&self.gateway_service]) {
            set.add(service, ApplyPolicy::Apply)?;
        }
        for deployment in self.engine.iter().chain([&self.gateway]) {
            set.add(deployment, ApplyPolicy::Apply)?;
        }
        for autoscaler in &self.autoscalers {
            set.add(autoscaler, ApplyPolicy::Apply)?;
        }
        for scaled in &self.scaled_objects {
            set.add_dynamic(scaled, &scaling::scaled_object_resource(), ApplyPolicy::Apply)?;
        }
        for budget in &self.budgets {
            set.add(budget, ApplyPolicy::Apply)?;
        }
        for monitor in &self.monitors {
            set.add_dynamic(monitor, &scaling::service_monitor_resource(), ApplyPolicy::Apply)?;
        }
        set.manage::<Service>();
        set.manage::<Deployment>();
        set.manage::<HorizontalPodAutoscaler>();
        set.manage::<PodDisruptionBudget>();
        set.manage_dynamic(&scaling::scaled_object_resource());
        set.manage_dynamic(&scaling::service_monitor_resource());
        Ok(set)
    }
}

/// The name of the engine's Deployment, Service, autoscaler and budget.
pub fn engine_name(endpoint: &TwinEndpoint) -> String {
    child_name(&endpoint.name_any(), "-engine", NAME_LIMIT)
}

/// The name of the gateway's Deployment and Service: the endpoint's own, so that its address
/// is `http://<endpoint>.<namespace>.svc:8080/v1`.
pub fn gateway_name(endpoint: &TwinEndpoint) -> String {
    child_name(&endpoint.name_any(), "", NAME_LIMIT)
}

/// The OpenAI-compatible base URL of an endpoint inside the cluster.
pub fn endpoint_url(endpoint: &TwinEndpoint) -> String {
    let namespace = endpoint.namespace().unwrap_or_default();
    format!("http://{}.{namespace}.svc:{}/v1", gateway_name(endpoint), gateway::PORT)
}

/// The labels of a part's children and pods.
pub fn part_labels(endpoint: &TwinEndpoint, component: &str) -> BTreeMap<String, String> {
    child_labels(ENDPOINT_NAME, &endpoint.name_any(), component)
}

/// The labels a part's Service, budget and monitor select its pods by.
pub fn selector(endpoint: &TwinEndpoint, component: &str) -> BTreeMap<String, String> {
    let all = part_labels(endpoint, component);
    [labels::NAME, labels::INSTANCE, labels::COMPONENT]
        .into_iter()
        .filter_map(|key| all.get(key).map(|value| (key.to_string(), value.clone())))
        .collect()
}

/// The metadata of a child of `endpoint` in `component`.
pub fn meta(endpoint: &TwinEndpoint, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: endpoint.namespace(),
        labels: Some(part_labels(endpoint, component)),
        owner_references: owner_reference(endpoint).map(|r| vec![r]),
        ..Default::default()
    }
}

/// A ClusterIP Service in front of a part's `http` port.
pub fn service(endpoint: &TwinEndpoint, name: String, component: &str, port: i32) -> Service {
    Service {
        metadata: meta(endpoint, name, component),
        spec: Some(ServiceSpec {
            selector: Some(selector(endpoint, component)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Deployment of a part's pods that rolls by surge: a new pod is ready before an old one
/// goes, so a new adapter or revision never takes the endpoint down. `replicas` is left to the
/// autoscaler (unset) when one manages the part.
pub fn rolling_deployment(
    endpoint: &TwinEndpoint,
    name: String,
    component: &str,
    replicas: Option<i32>,
    annotations: BTreeMap<String, String>,
    mut template: PodTemplateSpec,
) -> Deployment {
    let template_meta = template.metadata.get_or_insert_default();
    template_meta.labels = Some(part_labels(endpoint, component));
    template_meta.annotations = Some(annotations.clone()).filter(|a| !a.is_empty());
    let mut metadata = meta(endpoint, name, component);
    metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(selector(endpoint, component)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(3),
            template,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An environment variable with a value.
pub fn env_var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

/// An emptyDir volume, in memory or on the node's disk, of at most `size`.
pub fn empty_dir(name: &str, medium: Option<&str>, size: Option<Quantity>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { medium: medium.map(Into::into), size_limit: size }),
        ..Default::default()
    }
}

/// A volume mounted at `path`.
pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only).filter(|r| *r),
        ..Default::default()
    }
}

/// An HTTP probe of `path` on the `http` port.
pub fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

/// The `http` port of a serving container.
pub fn http_port(port: i32) -> Vec<ContainerPort> {
    vec![ContainerPort {
        name: Some("http".into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }]
}

/// The restricted pod of a part: its serving container after the init containers that fetch
/// what it loads, given `grace` seconds to finish the requests under way when it goes.
pub fn serving_pod(
    overrides: &PodOverrides,
    uid: i64,
    container: Container,
    init: Vec<Container>,
    grace: i64,
    volumes: Vec<Volume>,
) -> PodTemplateSpec {
    let spec = PodSpec {
        init_containers: Some(init).filter(|i| !i.is_empty()),
        termination_grace_period_seconds: Some(grace),
        ..workload_pod_spec(overrides, uid, vec![container], volumes)
    };
    PodTemplateSpec { metadata: None, spec: Some(spec) }
}

/// The desired children of an endpoint; `Err` says what in the spec cannot be served.
pub fn build(inputs: &Inputs, settings: &OperatorSettings) -> Result<EndpointChildren, String> {
    let endpoint = inputs.endpoint;
    let spec = &endpoint.spec;
    let (engine, engine_service) = match spec.engine.kind {
        EngineKind::Vllm => {
            let deployment = engine::deployment(inputs, settings)?;
            let service = service(endpoint, engine_name(endpoint), ENGINE_COMPONENT, engine::PORT);
            (Some(deployment), Some(service))
        }
        EngineKind::External | EngineKind::Embedded => (None, None),
    };
    let gateway = gateway::deployment(inputs, settings)?;
    let gateway_service = service(endpoint, gateway_name(endpoint), GATEWAY_COMPONENT, gateway::PORT);
    let mut children =
        EndpointChildren { engine, engine_service, gateway, gateway_service, ..Default::default() };
    scaling::add(endpoint, &mut children);
    Ok(children)
}
