//! What every builder of a TwinEndpoint's children reads and names (pure): its inputs, the
//! engine's and the gateway's names, labels and selectors, the annotations that carry what a part serves, the metadata
//! of a child, a part's Service, and the Deployment that rolls by surge.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::plan::EnginePlan;
use super::validate::{Retrieval, ValidEndpoint};
use crate::api::TwinEndpoint;
use crate::api::common::{SecretKeyRef, StorageLocation};
use crate::api::endpoint::ServedModel;
use crate::api::training::TrainedModel;
use crate::contract::labels;
use crate::operator::children::naming::{NAME_LIMIT, child_labels, child_name, owner_reference};

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

/// The key of the lineage ConfigMap holding the gateway's served model (a `ServedModel` as JSON).
pub const LINEAGE_KEY: &str = "model.json";

/// The name of the ConfigMap that tells a gateway on a shared engine what it serves (its
/// `--lineage-file`), so that a new adapter or dataset revision changes no pod template.
pub fn lineage_name(endpoint: &TwinEndpoint) -> String {
    child_name(&endpoint.name_any(), "-lineage", NAME_LIMIT)
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

/// A twin that runs serving parts (an endpoint, a shared engine), with the `app.kubernetes.io/name`
/// of its children.
pub trait Parent: Resource<DynamicType = ()> {
    /// The `app.kubernetes.io/name` of its children.
    const APP: &'static str;
}

impl Parent for TwinEndpoint {
    const APP: &'static str = ENDPOINT_NAME;
}

impl Parent for crate::api::TwinEngine {
    const APP: &'static str = labels::ENGINE_NAME;
}

/// The labels of a part's children and pods.
pub fn part_labels<P: Parent>(endpoint: &P, component: &str) -> BTreeMap<String, String> {
    child_labels(P::APP, &endpoint.name_any(), component)
}

/// The labels a part's Service, budget and monitor select its pods by.
pub fn selector<P: Parent>(endpoint: &P, component: &str) -> BTreeMap<String, String> {
    let all = part_labels(endpoint, component);
    [labels::NAME, labels::INSTANCE, labels::COMPONENT]
        .into_iter()
        .filter_map(|key| all.get(key).map(|value| (key.to_string(), value.clone())))
        .collect()
}

/// The metadata of a child of `endpoint` in `component`.
pub fn meta<P: Parent>(endpoint: &P, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: endpoint.namespace(),
        labels: Some(part_labels(endpoint, component)),
        owner_references: owner_reference(endpoint).map(|r| vec![r]),
        ..Default::default()
    }
}

/// A ClusterIP Service in front of a part's `http` port.
pub fn service<P: Parent>(endpoint: &P, name: String, component: &str, port: i32) -> Service {
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
pub fn rolling_deployment<P: Parent>(
    endpoint: &P,
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

/// What the builders read: the endpoint as validated, and what its running parts decide.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Inputs<'a> {
    pub endpoint: &'a TwinEndpoint,
    /// The model wanted now: base model, adapter and the dataset revision it was trained on.
    pub model: &'a ServedModel,
    /// The Hugging Face token of a gated base model.
    pub hub_token: Option<&'a SecretKeyRef>,
    /// Where the adapter was written (its S3 endpoint, region and credentials).
    pub adapter_location: Option<&'a StorageLocation>,
    /// The dataset retrieval reads.
    pub retrieval: Option<&'a Retrieval<'a>>,
    /// How the engine loads the model.
    pub engine: &'a EnginePlan,
    /// What the adapter's training reported of it: the LoRA rank vLLM needs, the chat template
    /// it was trained with.
    pub trained: Option<&'a TrainedModel>,
    /// The model the gateway names and whose dataset revision it pins (the wanted one once the
    /// engine serves its adapter).
    pub gateway_model: &'a ServedModel,
    /// The TwinEngine of a shared engine (its context length, whether it scales to zero).
    pub shared_engine: Option<&'a crate::api::TwinEngine>,
}

impl<'a> Inputs<'a> {
    /// The inputs of a valid endpoint, with what its running parts decide.
    pub fn new(
        endpoint: &'a TwinEndpoint,
        valid: &'a ValidEndpoint<'a>,
        trained: Option<&'a TrainedModel>,
        gateway_model: &'a ServedModel,
    ) -> Self {
        Self {
            endpoint,
            model: &valid.model,
            hub_token: valid.hub_token,
            adapter_location: valid.adapter_location,
            retrieval: valid.retrieval.as_ref(),
            engine: &valid.engine,
            trained,
            gateway_model,
            shared_engine: valid.shared_engine,
        }
    }
}
