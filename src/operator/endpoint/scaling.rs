//! Scaling and monitoring of a TwinEndpoint (pure): HorizontalPodAutoscalers (the gateway on
//! CPU, the engine on vLLM's running requests), or a KEDA ScaledObject for the engine on
//! vLLM's queue in Prometheus; PodDisruptionBudgets of the parts that can run more than one
//! replica; ServiceMonitors when monitoring is on.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::parts::{ENGINE_COMPONENT, GATEWAY_COMPONENT, engine_name, gateway_name, meta, selector};
use crate::api::TwinEndpoint;
use crate::api::endpoint::EngineKind;

/// CPU utilisation (of the request) the gateway's autoscaler aims for.
pub const GATEWAY_CPU_TARGET: i32 = 70;
/// The per-pod metric the engine's HorizontalPodAutoscaler reads (through a custom-metrics
/// adapter such as prometheus-adapter).
pub const ENGINE_HPA_METRIC: &str = "vllm:num_requests_running";

/// KEDA's ScaledObject.
pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"))
}

/// The Prometheus Operator's ServiceMonitor.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"))
}

/// The gateway's in-flight requests (held while the engine wakes, or answered by it), as
/// Prometheus has them from the gateway's ServiceMonitor: what wakes an engine scaled to zero,
/// which has no queue of its own to read while it is down.
pub fn gateway_in_flight_query(endpoint: &TwinEndpoint) -> String {
    format!(
        r#"sum(twin_gateway_in_flight{{namespace="{}",pod=~"{}-[a-z0-9]+-[a-z0-9]+"}}) or vector(0)"#,
        endpoint.namespace().unwrap_or_default(),
        gateway_name(endpoint)
    )
}

/// The PromQL KEDA scales the engine on: requests running and waiting in its pods.
pub fn engine_queue_query(endpoint: &TwinEndpoint) -> String {
    format!(
        r#"sum({{__name__=~"vllm:num_requests_(running|waiting)",namespace="{}",pod=~"{}-[a-z0-9]+-[a-z0-9]+"}})"#,
        endpoint.namespace().unwrap_or_default(),
        engine_name(endpoint)
    )
}

fn autoscaler(
    endpoint: &TwinEndpoint,
    name: String,
    component: &str,
    (min, max): (i32, i32),
    metric: MetricSpec,
) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: meta(endpoint, name.clone(), component),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name,
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(vec![metric]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn budget(endpoint: &TwinEndpoint, name: String, component: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(endpoint, name, component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(endpoint, component)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn monitor(endpoint: &TwinEndpoint, name: String, component: &str) -> DynamicObject {
    let resource = service_monitor_resource();
    let mut object = DynamicObject::new(&name, &resource);
    object.metadata = meta(endpoint, name, component);
    object.data = json!({"spec": {
        "selector": {"matchLabels": selector(endpoint, component)},
        "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
    }});
    object
}

/// An endpoint's autoscalers, disruption budgets and monitors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scaling {
    /// HorizontalPodAutoscalers (the gateway's on CPU, the engine's on running requests).
    pub autoscalers: Vec<HorizontalPodAutoscaler>,
    /// KEDA ScaledObjects (the engine's, when `autoscaling.keda` is set).
    pub scaled_objects: Vec<DynamicObject>,
    /// PodDisruptionBudgets of the parts that run more than one replica.
    pub budgets: Vec<PodDisruptionBudget>,
    /// ServiceMonitors, when monitoring is on.
    pub monitors: Vec<DynamicObject>,
}

/// The autoscalers, budgets and monitors the spec asks for.
pub fn build(endpoint: &TwinEndpoint) -> Scaling {
    let mut children = Scaling::default();
    let spec = &endpoint.spec;
    let gateway = gateway_name(endpoint);
    let engine = engine_name(endpoint);
    let gateway_max = spec.gateway.max_replicas.unwrap_or(spec.gateway.replicas).max(spec.gateway.replicas);
    if gateway_max > spec.gateway.replicas {
        let cpu = MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(GATEWAY_CPU_TARGET),
                    ..Default::default()
                },
            }),
            ..Default::default()
        };
        let range = (spec.gateway.replicas, gateway_max);
        children.autoscalers.push(autoscaler(endpoint, gateway.clone(), GATEWAY_COMPONENT, range, cpu));
    }
    let vllm = spec.engine.kind == EngineKind::Vllm;
    let mut engine_max = 1;
    if let Some(scaling) = spec.autoscaling.as_ref().filter(|_| vllm) {
        engine_max = scaling.max_replicas;
        match &scaling.keda {
            Some(keda) => {
                let resource = scaled_object_resource();
                let mut scaled = DynamicObject::new(&engine, &resource);
                scaled.metadata = meta(endpoint, engine.clone(), ENGINE_COMPONENT);
                scaled.data = json!({"spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": engine},
                    "minReplicaCount": scaling.min_replicas,
                    "maxReplicaCount": scaling.max_replicas,
                    // A GPU replica takes minutes to start: scale down only after a quiet while.
                    "cooldownPeriod": 600,
                    // At zero there is no engine to read: the gateway's requests wake it (any above
                    // the activation threshold of 0).
                    "triggers": [{"type": "prometheus", "metadata": {
                        "serverAddress": keda.server_address,
                        "query": if scaling.min_replicas == 0 { gateway_in_flight_query(endpoint) } else { engine_queue_query(endpoint) },
                        "threshold": scaling.target_requests_per_replica.to_string(),
                        "activationThreshold": "0",
                    }}],
                }});
                children.scaled_objects.push(scaled);
            }
            None => {
                let running = MetricSpec {
                    type_: "Pods".into(),
                    pods: Some(PodsMetricSource {
                        metric: MetricIdentifier { name: ENGINE_HPA_METRIC.into(), selector: None },
                        target: MetricTarget {
                            type_: "AverageValue".into(),
                            average_value: Some(Quantity(scaling.target_requests_per_replica.to_string())),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                };
                let range = (scaling.min_replicas, scaling.max_replicas);
                children.autoscalers.push(autoscaler(
                    endpoint,
                    engine.clone(),
                    ENGINE_COMPONENT,
                    range,
                    running,
                ));
            }
        }
    }
    // A budget lets a drain take one pod at a time; with one replica it would block drains.
    if vllm && engine_max > 1 {
        children.budgets.push(budget(endpoint, engine.clone(), ENGINE_COMPONENT));
    }
    if gateway_max > 1 {
        children.budgets.push(budget(endpoint, gateway.clone(), GATEWAY_COMPONENT));
    }
    if spec.monitoring.service_monitor {
        if vllm {
            children.monitors.push(monitor(endpoint, engine, ENGINE_COMPONENT));
        }
        children.monitors.push(monitor(endpoint, gateway, GATEWAY_COMPONENT));
    }
    children
}
