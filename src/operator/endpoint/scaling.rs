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

use super::parts::{ENGINE_COMPONENT, GATEWAY_COMPONENT, Parent, engine_name, gateway_name, meta, selector};
use crate::api::TwinEndpoint;
use crate::api::endpoint::{Autoscaling, EngineKind};

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
pub fn gateway_in_flight_query(namespace: &str, gateways: &[String]) -> String {
    format!(
        r#"sum(twin_gateway_in_flight{{namespace="{namespace}",pod=~"({})-[a-z0-9]+-[a-z0-9]+"}}) or vector(0)"#,
        gateways.join("|")
    )
}

/// The PromQL KEDA scales the engine on: requests running and waiting in its pods.
pub fn engine_queue_query(namespace: &str, engine: &str) -> String {
    format!(
        r#"sum({{__name__=~"vllm:num_requests_(running|waiting)",namespace="{namespace}",pod=~"{engine}-[a-z0-9]+-[a-z0-9]+"}})"#
    )
}

/// The autoscaler of a vLLM engine Deployment `engine` of `owner`: a KEDA ScaledObject on its
/// queue (or, with `minReplicas: 0`, on the in-flight requests of the gateways in front of it,
/// which are there while the engine is not), else a HorizontalPodAutoscaler on its running
/// requests.
pub fn engine_autoscaler<P: Parent>(
    owner: &P,
    engine: &str,
    scaling: &Autoscaling,
    gateways: &[String],
) -> (Option<HorizontalPodAutoscaler>, Option<DynamicObject>) {
    let namespace = owner.namespace().unwrap_or_default();
    match &scaling.keda {
        Some(keda) => {
            let resource = scaled_object_resource();
            let mut scaled = DynamicObject::new(engine, &resource);
            scaled.metadata = meta(owner, engine.to_string(), ENGINE_COMPONENT);
            let query = match scaling.min_replicas {
                0 => gateway_in_flight_query(&namespace, gateways),
                _ => engine_queue_query(&namespace, engine),
            };
            scaled.data = json!({"spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": engine},
                "minReplicaCount": scaling.min_replicas,
                "maxReplicaCount": scaling.max_replicas,
                // A GPU replica takes minutes to start: scale down only after a quiet while.
                "cooldownPeriod": 600,
                // At zero there is no engine to read: the gateways' requests wake it (any above
                // the activation threshold of 0).
                "triggers": [{"type": "prometheus", "metadata": {
                    "serverAddress": keda.server_address,
                    "query": query,
                    "threshold": scaling.target_requests_per_replica.to_string(),
                    "activationThreshold": "0",
                }}],
            }});
            (None, Some(scaled))
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
            (Some(autoscaler(owner, engine.to_string(), ENGINE_COMPONENT, range, running)), None)
        }
    }
}

fn autoscaler<P: Parent>(
    endpoint: &P,
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

/// A budget that lets a drain take one of a part's pods at a time.
pub fn budget<P: Parent>(endpoint: &P, name: String, component: &str) -> PodDisruptionBudget {
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

/// A Prometheus Operator ServiceMonitor of a part's `/metrics`.
pub fn monitor<P: Parent>(endpoint: &P, name: String, component: &str) -> DynamicObject {
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
        let (hpa, scaled) = engine_autoscaler(endpoint, &engine, scaling, std::slice::from_ref(&gateway));
        children.autoscalers.extend(hpa);
        children.scaled_objects.extend(scaled);
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
