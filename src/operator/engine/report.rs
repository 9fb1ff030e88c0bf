//! A TwinEngine's status: its Deployment's health (as an endpoint's engine part's), and each
//! wanted adapter's state from the agents of its ready pods (loaded on every ready replica,
//! loading, or failed with the engine's words).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::build::WantedBy;
use crate::api::TwinEngine;
use crate::api::endpoint::EndpointPhase;
use crate::api::engine::{AdapterState, EngineAdapter, EnginePhase, TwinEngineStatus};
use crate::contract::adapters::{AGENT_PORT, AgentReport, Loading};
use crate::operator::conditions::Assessment;
use crate::operator::driver::Verdict;
use crate::operator::endpoint::plan::shared_engine_url;
use crate::operator::endpoint::status::{part_health, scaled_to_zero};

/// How often an engine whose adapters are settled is looked at again (an agent's report changes
/// without a watch event: a restarted vLLM, an adapter the engine dropped).
pub const SETTLED_RECHECK: Duration = Duration::from_secs(30);
/// How often while adapters load or pods roll.
pub const LOADING_RECHECK: Duration = Duration::from_secs(3);

/// Whether a pod is Ready (its agent has tried its adapters).
fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The agents' reports of the ready pods: `(pod, report or why none)`.
pub async fn read_agents(
    client: &reqwest::Client,
    pods: &[Pod],
    agent_url: Option<&str>,
) -> Vec<(String, Result<AgentReport, String>)> {
    let mut reports = Vec::new();
    for pod in pods.iter().filter(|p| ready(p)) {
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let base = agent_url.map_or_else(|| format!("http://{ip}:{AGENT_PORT}"), str::to_string);
        let url = format!("{}/adapters", base.trim_end_matches('/'));
        let report = async {
            let response =
                client.get(&url).timeout(Duration::from_secs(3)).send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("{url} answered {}", response.status()));
            }
            response.json::<AgentReport>().await.map_err(|e| format!("{url}: {e}"))
        };
        reports.push((
            pod.name_any(),
            report.await.map_err(|e| format!("cannot read the agent of pod {}: {e}", pod.name_any())),
        ));
    }
    reports
}

/// Each wanted adapter's state across the ready replicas' reports.
pub fn adapter_states(
    wanted: &[WantedBy],
    reports: &[(String, Result<AgentReport, String>)],
) -> Vec<EngineAdapter> {
    wanted
        .iter()
        .map(|w| {
            let (name, uri) = (&w.adapter.name, &w.adapter.uri);
            let of = |report: &AgentReport| {
                report.adapters.iter().find(|a| &a.name == name && &a.uri == uri).cloned()
            };
            let states: Vec<_> = reports.iter().map(|(pod, r)| (pod, r.as_ref().ok().and_then(of))).collect();
            let loaded =
                states.iter().filter(|(_, s)| s.as_ref().is_some_and(|s| s.state == Loading::Loaded)).count();
            let failed = states.iter().find_map(|(pod, s)| {
                s.as_ref()
                    .filter(|s| s.state == Loading::Failed)
                    .map(|s| format!("pod {pod}: {}", s.message.as_deref().unwrap_or("no reason given")))
            });
            let unread = reports.iter().find_map(|(_, r)| r.as_ref().err().cloned());
            let replicas = format!("{loaded}/{}", reports.len());
            let (state, message) = match (failed, unread) {
                (Some(message), _) => (AdapterState::Failed, Some(message)),
                _ if !reports.is_empty() && loaded == reports.len() => (AdapterState::Loaded, None),
                (None, Some(unread)) => (AdapterState::Loading, Some(unread)),
                (None, None) if reports.is_empty() => {
                    (AdapterState::Loading, Some("no engine replica is ready yet".into()))
                }
                (None, None) => {
                    (AdapterState::Loading, Some("the agents are fetching and loading it".into()))
                }
            };
            EngineAdapter { endpoint: name.clone(), uri: uri.clone(), state, replicas, message }
        })
        .collect()
}

fn engine_phase(phase: EndpointPhase) -> EnginePhase {
    match phase {
        EndpointPhase::Pending => EnginePhase::Pending,
        EndpointPhase::Deploying => EnginePhase::Deploying,
        EndpointPhase::Ready | EndpointPhase::Idle => EnginePhase::Ready,
        EndpointPhase::Degraded => EnginePhase::Degraded,
        EndpointPhase::Failed => EnginePhase::Failed,
    }
}

/// The verdict and status of an engine with `users` endpoints (`active` when any of them has a
/// model for it to serve), from what runs.
pub fn from_observed(
    engine: &TwinEngine,
    users: usize,
    active: bool,
    deployment: Option<&Deployment>,
    pods: &[Pod],
    adapters: Vec<EngineAdapter>,
    mut status: TwinEngineStatus,
) -> (Verdict<EnginePhase>, TwinEngineStatus) {
    let name = engine.name_any();
    if !active {
        status.url = None;
        status.replicas = None;
        status.adapter_summary = None;
        status.adapters = Vec::new();
        let assessment = match users {
            0 => Assessment::not_ready(
                EnginePhase::Unused,
                "NoEndpoints",
                format!(
                    "no TwinEndpoint names TwinEngine {name:?} (engine.kind shared, engine.engineRef.name {name}): nothing runs until one does"
                ),
            ),
            _ => Assessment::not_ready(
                EnginePhase::Unused,
                "NoModelYet",
                format!(
                    "{users} TwinEndpoints name TwinEngine {name:?}, and none has a model for it yet (a training job that has not promoted a run, or another base model): nothing runs until one does"
                ),
            ),
        };
        return (Verdict { assessment, recheck: None }, status);
    }
    status.url = Some(shared_engine_url(&name, &engine.namespace().unwrap_or_default()));
    if scaled_to_zero(engine.spec.autoscaling.as_ref(), deployment) {
        status.replicas = Some("0/0".into());
        status.adapter_summary = Some(format!("0/{}", adapters.len()));
        status.adapters = adapters
            .into_iter()
            .map(|a| EngineAdapter {
                state: AdapterState::Loading,
                message: Some("the engine is scaled to zero: loaded when it wakes".into()),
                ..a
            })
            .collect();
        let assessment = Assessment::ready(
            EnginePhase::Idle,
            "ScaledToZero",
            format!(
                "scaled to zero while none of its {users} endpoints is asked: the first request to any of them wakes it"
            ),
        );
        return (Verdict { assessment, recheck: Some(SETTLED_RECHECK) }, status);
    }
    let pods: Vec<&Pod> = pods.iter().collect();
    let part = part_health("engine", deployment, &pods);
    let loaded = adapters.iter().filter(|a| a.state == AdapterState::Loaded).count();
    let failed: Vec<String> =
        adapters.iter().filter(|a| a.state == AdapterState::Failed).map(|a| a.endpoint.clone()).collect();
    status.replicas = Some(part.replicas.clone());
    status.adapter_summary = Some(format!("{loaded}/{}", adapters.len()));
    let settled = loaded + failed.len() == adapters.len();
    status.adapters = adapters;
    let served = format!("{loaded} of {} adapters loaded for {users} endpoints", status.adapters.len());
    let assessment = if !part.assessment.ready {
        let Assessment { phase, reason, message, .. } = part.assessment;
        Assessment::not_ready(engine_phase(phase), &reason, message)
    } else if failed.is_empty() {
        Assessment::ready(EnginePhase::Ready, "Serving", format!("{}; {served}", part.assessment.message))
    } else {
        // The engine serves the others: its failed adapters are their endpoints' to report.
        Assessment::ready(
            EnginePhase::Ready,
            "AdaptersFailed",
            format!(
                "{}; {served}; could not load the adapters of {}",
                part.assessment.message,
                failed.join(", ")
            ),
        )
    };
    let recheck = if assessment.ready && settled { SETTLED_RECHECK } else { LOADING_RECHECK };
    (Verdict { assessment, recheck: Some(recheck) }, status)
}
