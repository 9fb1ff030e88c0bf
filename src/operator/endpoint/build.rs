//! Building the children of a TwinEndpoint (pure): the engine (vLLM) Deployment and Service,
//! the gateway (`twin serve`) Deployment and Service (with its lineage ConfigMap on a shared
//! engine), and their autoscalers, disruption budgets and ServiceMonitors. What the engine and
//! gateway run is in [`super::engine`] and [`super::gateway`]; scaling and monitoring in
//! [`super::scaling`].

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;

use super::parts::{ENGINE_COMPONENT, GATEWAY_COMPONENT, Inputs, engine_name, gateway_name, service};
use super::plan::EnginePlan;
use super::{engine, gateway, scaling};
use crate::operator::children::{ApplyPolicy, ChildSet};
use crate::operator::error::Result;
use crate::operator::settings::OperatorSettings;

/// The desired children of an endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointChildren {
    /// The vLLM Deployment (engine `vllm`).
    pub engine: Option<Deployment>,
    /// Its Service.
    pub engine_service: Option<Service>,
    /// The gateway's lineage ConfigMap (engine `shared`): what it serves, read at run time.
    pub lineage: Option<ConfigMap>,
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
        if let Some(lineage) = &self.lineage {
            set.add(lineage, ApplyPolicy::Apply)?;
        }
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
        set.manage::<ConfigMap>();
        set.manage::<Service>();
        set.manage::<Deployment>();
        set.manage::<HorizontalPodAutoscaler>();
        set.manage::<PodDisruptionBudget>();
        set.manage_dynamic(&scaling::scaled_object_resource());
        set.manage_dynamic(&scaling::service_monitor_resource());
        Ok(set)
    }
}

/// The desired children of a valid endpoint.
pub fn build(inputs: &Inputs, settings: &OperatorSettings) -> EndpointChildren {
    let endpoint = inputs.endpoint;
    let (engine, engine_service) = match inputs.engine {
        EnginePlan::Vllm { base, adapter } => {
            let deployment = engine::deployment(inputs, base, adapter.as_ref(), settings);
            let service = service(endpoint, engine_name(endpoint), ENGINE_COMPONENT, engine::PORT);
            (Some(deployment), Some(service))
        }
        EnginePlan::Shared { .. } | EnginePlan::External { .. } | EnginePlan::Embedded { .. } => (None, None),
    };
    let lineage = gateway::lineage(inputs);
    let gateway = gateway::deployment(inputs, settings);
    let gateway_service = service(endpoint, gateway_name(endpoint), GATEWAY_COMPONENT, gateway::PORT);
    let scaling::Scaling { autoscalers, scaled_objects, budgets, monitors } = scaling::build(endpoint);
    EndpointChildren {
        engine,
        engine_service,
        lineage,
        gateway,
        gateway_service,
        autoscalers,
        scaled_objects,
        budgets,
        monitors,
    }
}
