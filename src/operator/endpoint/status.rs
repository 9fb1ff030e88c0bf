//! A TwinEndpoint's status from what runs (pure): each part (engine, gateway) from its
//! Deployment and pods, so that a pod that crash-loops, is OOM-killed, cannot pull its image
//! or cannot be scheduled shows at once with that reason, never as Ready; and which model is
//! served while a new adapter rolls out.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;

use super::gateway::endpoint_url;
use super::parts::{ADAPTER_ANNOTATION, ENGINE_COMPONENT, GATEWAY_COMPONENT, LINEAGE_KEY, MODEL_ANNOTATION};
use super::validate::RESOLVED_RECHECK;
use crate::api::endpoint::{
    Autoscaling, EndpointPhase, EngineKind, ReplicaStatus, ServedModel, TwinEndpointStatus,
};
use crate::api::engine::{AdapterState, EngineAdapter, EnginePhase};
use crate::api::{TwinEndpoint, TwinEngine, TwinTrainingJob};
use crate::contract::labels;
use crate::operator::conditions::{Assessment, condition};
use crate::operator::driver::Verdict;

/// How often an endpoint that is not Ready is looked at again without a watch event (its
/// Deployments and pods wake it first; this is the backstop).
pub const UNSETTLED_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);
/// The condition of the engine.
pub const ENGINE_READY: &str = "EngineReady";
/// The condition of the gateway.
pub const GATEWAY_READY: &str = "GatewayReady";
/// True while the training job's latest run failed its gate and the endpoint serves an
/// earlier one.
pub const PROMOTION_HELD: &str = "PromotionHeld";

/// What a pod can be stuck on, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    Unschedulable,
    ContainerConfigError,
    ImagePullFailed,
    CrashLoopBackOff,
    OomKilled,
}

impl Problem {
    fn reason(self) -> &'static str {
        match self {
            Problem::Unschedulable => "Unschedulable",
            Problem::ContainerConfigError => "ContainerConfigError",
            Problem::ImagePullFailed => "ImagePullFailed",
            Problem::CrashLoopBackOff => "CrashLoopBackOff",
            Problem::OomKilled => "OOMKilled",
        }
    }
}

fn container_problem(status: &ContainerStatus) -> Option<(Problem, String)> {
    if status.ready {
        return None;
    }
    let name = &status.name;
    let last = status.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let now = status.state.as_ref();
    let oom =
        |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| t.reason.as_deref() == Some("OOMKilled");
    if now.and_then(|s| s.terminated.as_ref()).is_some_and(oom) || last.is_some_and(oom) {
        return Some((
            Problem::OomKilled,
            format!(
                "container {name} was OOM-killed (restarted {} times): raise its memory limit",
                status.restart_count
            ),
        ));
    }
    let waiting = now.and_then(|s| s.waiting.as_ref())?;
    let said = waiting.message.clone().unwrap_or_default();
    match waiting.reason.as_deref()? {
        "CrashLoopBackOff" => {
            let exit = last
                .map(|t| {
                    let detail = t.message.as_deref().or(t.reason.as_deref()).unwrap_or_default();
                    format!(", last exit code {} {}", t.exit_code, detail.trim()).trim_end().to_string()
                })
                .unwrap_or_default();
            Some((
                Problem::CrashLoopBackOff,
                format!("container {name} is crash-looping (restarted {} times{exit})", status.restart_count),
            ))
        }
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => {
            Some((Problem::ImagePullFailed, format!("container {name} cannot pull {}: {said}", status.image)))
        }
        "CreateContainerConfigError" | "CreateContainerError" => {
            Some((Problem::ContainerConfigError, format!("container {name} cannot start: {said}")))
        }
        _ => None,
    }
}

/// The worst problem of a pod, with what it says.
fn pod_problem(pod: &Pod) -> Option<(Problem, String)> {
    let status = pod.status.as_ref()?;
    let containers = status.init_container_statuses.iter().chain(status.container_statuses.iter()).flatten();
    let mut worst = containers.filter_map(container_problem).max_by_key(|(problem, _)| *problem);
    if worst.is_none()
        && let Some(condition) = status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
        })
    {
        worst = Some((Problem::Unschedulable, condition.message.clone().unwrap_or_default()));
    }
    worst.map(|(problem, message)| (problem, format!("pod {}: {message}", pod.name_any())))
}

/// The health of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHealth {
    /// `ready/desired`.
    pub replicas: String,
    /// The part's phase, reason and message.
    pub assessment: Assessment<EndpointPhase>,
}

/// How bad a part's phase is, for the endpoint's: the worst part speaks.
fn severity(phase: EndpointPhase) -> u8 {
    match phase {
        EndpointPhase::Ready | EndpointPhase::Idle => 0,
        EndpointPhase::Deploying => 1,
        EndpointPhase::Pending => 2,
        EndpointPhase::Degraded => 3,
        EndpointPhase::Failed => 4,
    }
}

/// Whether a Deployment has rolled out its current spec to every replica, with no old pod left.
pub fn rolled_out(deployment: &Deployment) -> bool {
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else { return false };
    status.observed_generation >= deployment.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= desired
        && status.ready_replicas.unwrap_or(0) >= desired
        && status.available_replicas.unwrap_or(0) >= desired
        && status.replicas.unwrap_or(0) <= desired
}

/// A part's health from its Deployment and pods; `part` is `engine` or `gateway`.
pub fn part_health(part: &str, deployment: Option<&Deployment>, pods: &[&Pod]) -> PartHealth {
    let title = format!("{}{}", part[..1].to_uppercase(), &part[1..]);
    let Some(deployment) = deployment else {
        let assessment = Assessment::not_ready(
            EndpointPhase::Deploying,
            &format!("{title}Creating"),
            format!("creating the {part}"),
        );
        return PartHealth { replicas: "0/0".into(), assessment };
    };
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let replicas = format!("{ready}/{desired}");
    let counts = format!("{part} {ready}/{desired} ready");
    let live = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none());
    if let Some((problem, message)) = live.filter_map(|p| pod_problem(p)).max_by_key(|(problem, _)| *problem)
    {
        let phase =
            if problem == Problem::Unschedulable { EndpointPhase::Pending } else { EndpointPhase::Degraded };
        let reason = format!("{title}{}", problem.reason());
        let assessment = Assessment::not_ready(phase, &reason, format!("{counts}; {message}"));
        return PartHealth { replicas, assessment };
    }
    let stalled = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(stalled) = stalled {
        let message =
            format!("{counts}; the rollout stalled: {}", stalled.message.clone().unwrap_or_default());
        let assessment =
            Assessment::not_ready(EndpointPhase::Degraded, &format!("{title}RolloutStalled"), message);
        return PartHealth { replicas, assessment };
    }
    if rolled_out(deployment) {
        return PartHealth {
            replicas,
            assessment: Assessment::ready(EndpointPhase::Ready, "Available", counts),
        };
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let message = format!("{counts}, {updated} of {desired} updated to the current spec");
    let assessment = Assessment::not_ready(EndpointPhase::Deploying, &format!("{title}RollingOut"), message);
    PartHealth { replicas, assessment }
}

/// Whether an engine Deployment that `scaling` may take to zero is at zero: no replica wanted and
/// none left.
pub fn scaled_to_zero(scaling: Option<&Autoscaling>, engine: Option<&Deployment>) -> bool {
    scaling.and_then(Autoscaling::wake_seconds).is_some()
        && engine.is_some_and(|d| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(0)
                && d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0
        })
}

/// The engine's part while it is scaled to zero by its autoscaler (`minReplicas: 0`): Idle,
/// ready to wake on the first request.
fn idle_engine(endpoint: &TwinEndpoint, engine: Option<&Deployment>) -> Option<PartHealth> {
    let scaling = endpoint.spec.autoscaling.as_ref();
    let wait = scaling.and_then(Autoscaling::wake_seconds)?;
    scaled_to_zero(scaling, engine).then(|| PartHealth {
        replicas: "0/0".into(),
        assessment: Assessment::ready(
            EndpointPhase::Idle,
            "ScaledToZero",
            format!(
                "the engine is scaled to zero while no request comes; the first request wakes it (KEDA sees it in the gateway's requests) and waits up to {wait} s for it to start, then gets 503 with Retry-After"
            ),
        ),
    })
}

/// Whether the engine serves `model`'s adapter on every replica (always, for engines the
/// endpoint does not run or share).
pub fn engine_serves(
    endpoint: &TwinEndpoint,
    model: &ServedModel,
    engine: Option<&Deployment>,
    shared: Option<&TwinEngine>,
) -> bool {
    match endpoint.spec.engine.kind {
        EngineKind::Vllm => {
            let Some(engine) = engine else { return false };
            let serving = engine.annotations().get(ADAPTER_ANNOTATION);
            serving == model.adapter_uri.as_ref() && rolled_out(engine)
        }
        EngineKind::Shared => match &model.adapter_uri {
            Some(adapter) => shared_adapter(endpoint, shared)
                .is_some_and(|loaded| &loaded.uri == adapter && loaded.state == AdapterState::Loaded),
            None => shared.is_some(),
        },
        EngineKind::External | EngineKind::Embedded => true,
    }
}

/// What a shared engine reports of the endpoint's adapter.
fn shared_adapter<'a>(endpoint: &TwinEndpoint, shared: Option<&'a TwinEngine>) -> Option<&'a EngineAdapter> {
    let name = endpoint.name_any();
    shared?.status.as_ref()?.adapters.iter().find(|a| a.endpoint == name)
}

/// The shared engine's part of an endpoint: its adapter's state in the TwinEngine (loaded,
/// loading, failed), or the engine's own trouble while it has none.
pub fn shared_part_health(
    endpoint: &TwinEndpoint,
    model: &ServedModel,
    shared: Option<&TwinEngine>,
) -> PartHealth {
    let name = endpoint.spec.engine.engine_ref.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    let status = shared.and_then(|e| e.status.clone()).unwrap_or_default();
    let replicas = status.replicas.clone().unwrap_or_else(|| "0/0".into());
    let not_ready = |phase, reason: &str, message: String| PartHealth {
        replicas: replicas.clone(),
        assessment: Assessment::not_ready(phase, reason, message),
    };
    let engine_trouble =
        status.conditions.iter().find(|c| c.type_ == crate::api::CONDITION_READY && c.status != "True");
    if status.phase == Some(EnginePhase::Idle) {
        let wait = shared.and_then(|e| e.spec.autoscaling.as_ref()?.wake_seconds()).unwrap_or_default();
        return PartHealth {
            replicas: "0/0".into(),
            assessment: Assessment::ready(
                EndpointPhase::Idle,
                "ScaledToZero",
                format!(
                    "TwinEngine {name:?} is scaled to zero while none of its twins is asked; the first request wakes it and waits up to {wait} s, then gets 503 with Retry-After"
                ),
            ),
        };
    }
    let Some(adapter) = &model.adapter_uri else {
        return match (status.phase, engine_trouble) {
            (Some(EnginePhase::Ready), _) => PartHealth {
                replicas,
                assessment: Assessment::ready(
                    EndpointPhase::Ready,
                    "Available",
                    format!("TwinEngine {name:?} serves the base model"),
                ),
            },
            (_, Some(trouble)) => not_ready(
                EndpointPhase::Deploying,
                "EngineNotReady",
                format!("TwinEngine {name:?}: {}", trouble.message),
            ),
            _ => not_ready(
                EndpointPhase::Deploying,
                "EngineNotReady",
                format!("TwinEngine {name:?} is starting"),
            ),
        };
    };
    match shared_adapter(endpoint, shared).filter(|a| &a.uri == adapter) {
        Some(loaded) if loaded.state == AdapterState::Loaded => PartHealth {
            replicas,
            assessment: Assessment::ready(
                EndpointPhase::Ready,
                "AdapterLoaded",
                format!("TwinEngine {name:?} serves the adapter on {} replicas", loaded.replicas),
            ),
        },
        Some(failed) if failed.state == AdapterState::Failed => not_ready(
            EndpointPhase::Failed,
            "AdapterLoadFailed",
            format!(
                "TwinEngine {name:?} could not load the adapter {adapter}: {}",
                failed.message.as_deref().unwrap_or("no reason given")
            ),
        ),
        _ => {
            let why = match (status.phase, engine_trouble) {
                (Some(EnginePhase::Pending), Some(trouble)) => {
                    return not_ready(
                        EndpointPhase::Pending,
                        "EnginePending",
                        format!("TwinEngine {name:?}: {}", trouble.message),
                    );
                }
                (Some(EnginePhase::Ready), _) => "loading it".to_string(),
                (_, Some(trouble)) => format!("loading it once the engine serves ({})", trouble.message),
                _ => "loading it once the engine serves".to_string(),
            };
            not_ready(
                EndpointPhase::Deploying,
                "AdapterLoading",
                format!("TwinEngine {name:?} is {why}: {adapter}"),
            )
        }
    }
}

/// The model the gateway is told to name in its answers' lineage and whose dataset revision it
/// retrieves from: its lineage ConfigMap's (a gateway on a shared engine, which reads it as it
/// runs), else its Deployment's annotation.
pub fn pinned_model(observed: &Observed) -> Option<ServedModel> {
    let json = match &observed.lineage {
        Some(lineage) => lineage.data.as_ref()?.get(LINEAGE_KEY)?,
        None => observed.gateway.as_ref()?.annotations().get(MODEL_ANNOTATION)?,
    };
    serde_json::from_str(json).ok()
}

/// The model the gateway names in its answers' lineage and whose dataset revision it pins:
/// the one wanted once the engine serves its adapter (retrieval, adapter and lineage then move
/// together); until then, the one the gateway has now.
pub fn gateway_model(endpoint: &TwinEndpoint, model: &ServedModel, observed: &Observed) -> ServedModel {
    let serves = engine_serves(endpoint, model, observed.engine.as_ref(), observed.shared.as_ref());
    match pinned_model(observed) {
        Some(pinned) if !serves => pinned,
        _ => model.clone(),
    }
}

/// What runs now.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The engine's Deployment, if the endpoint runs one and it exists.
    pub engine: Option<Deployment>,
    /// The gateway's Deployment.
    pub gateway: Option<Deployment>,
    /// The endpoint's pods.
    pub pods: Vec<Pod>,
    /// The TwinEngine it shares, for `engine.kind: shared`.
    pub shared: Option<TwinEngine>,
    /// The gateway's lineage ConfigMap, for `engine.kind: shared`.
    pub lineage: Option<ConfigMap>,
}

/// The verdict and status from what runs: the worst part speaks for the endpoint.
pub fn from_observed(
    endpoint: &TwinEndpoint,
    model: &ServedModel,
    observed: &Observed,
    mut status: TwinEndpointStatus,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> (Verdict<EndpointPhase>, TwinEndpointStatus) {
    let of = |component: &str| -> Vec<&Pod> {
        let label = |p: &&Pod| p.labels().get(labels::COMPONENT).map(String::as_str) == Some(component);
        observed.pods.iter().filter(label).collect()
    };
    let gateway = part_health("gateway", observed.gateway.as_ref(), &of(GATEWAY_COMPONENT));
    let engine = match endpoint.spec.engine.kind {
        EngineKind::Vllm => Some(
            idle_engine(endpoint, observed.engine.as_ref())
                .unwrap_or_else(|| part_health("engine", observed.engine.as_ref(), &of(ENGINE_COMPONENT))),
        ),
        EngineKind::Shared => Some(shared_part_health(endpoint, model, observed.shared.as_ref())),
        EngineKind::External | EngineKind::Embedded => None,
    };
    // The new model serves once the engine answers with its adapter and the gateway, rolled
    // out, retrieves from its dataset revision and names it in its answers.
    let serves = engine_serves(endpoint, model, observed.engine.as_ref(), observed.shared.as_ref())
        && pinned_model(observed).as_ref() == Some(model)
        && observed.gateway.as_ref().is_some_and(rolled_out);
    // A new adapter (or base model) rolls out while the previous one still answers; a new
    // dataset revision alone is the gateway's rollout.
    let replacing = !serves
        && status.model.as_ref().is_some_and(|shown| {
            (&shown.base_model, &shown.adapter_uri) != (&model.base_model, &model.adapter_uri)
        });
    // The model shown is the one served: the new one once engine and gateway serve it.
    if serves || status.model.is_none() {
        status.model = Some(model.clone());
    }
    status.url = Some(endpoint_url(endpoint));
    status.replicas = Some(ReplicaStatus {
        engine: engine.as_ref().map_or_else(|| "-".into(), |e| e.replicas.clone()),
        gateway: gateway.replicas.clone(),
    });
    let generation = endpoint.metadata.generation;
    let mut conditions: Vec<Condition> = status
        .conditions
        .iter()
        .filter(|c| c.type_ != ENGINE_READY && c.type_ != GATEWAY_READY)
        .cloned()
        .collect();
    for (kind, part) in [(ENGINE_READY, engine.as_ref()), (GATEWAY_READY, Some(&gateway))] {
        if let Some(part) = part {
            conditions.push(condition(kind, &part.assessment, generation, &status.conditions, now.clone()));
        }
    }
    status.conditions = conditions;
    // On a tie the engine speaks (the last of the worst), as the gateway waits on it.
    let worst = [&gateway]
        .into_iter()
        .chain(engine.iter())
        .max_by_key(|p| severity(p.assessment.phase))
        .map(|p| p.assessment.clone())
        .unwrap_or_else(|| gateway.assessment.clone());
    // Both parts rolled out but the gateway not yet moved to the new adapter is still the
    // adapter's rollout: the gateway moves next.
    let idle = engine.as_ref().filter(|e| e.assessment.phase == EndpointPhase::Idle);
    let assessment = if let (Some(idle), true, false) = (idle, gateway.assessment.ready, replacing) {
        idle.assessment.clone()
    } else if worst.ready && !replacing {
        let shown = status.model.as_ref().unwrap_or(model);
        let adapter = shown.adapter_uri.as_deref().map(|a| format!(" with adapter {a}")).unwrap_or_default();
        Assessment::ready(
            EndpointPhase::Ready,
            "Serving",
            format!("serving {}{adapter} at {}", shown.base_model, endpoint_url(endpoint)),
        )
    } else if replacing && (worst.ready || worst.phase == EndpointPhase::Deploying) {
        let adapter = model.adapter_uri.as_deref().unwrap_or("the base model");
        let progress =
            if worst.ready { "the engine serves it; the gateway moves next" } else { &worst.message };
        Assessment::not_ready(
            EndpointPhase::Deploying,
            "RollingOutAdapter",
            format!("rolling out {adapter}; the previous model serves meanwhile ({progress})"),
        )
    } else {
        worst
    };
    let recheck = if assessment.ready { RESOLVED_RECHECK } else { UNSETTLED_RECHECK };
    (Verdict { assessment, recheck: Some(recheck) }, status)
}

/// The `PromotionHeld` condition's assessment (`ready` standing for True) from the training job
/// the endpoint serves: held while the job's latest run failed its gate and an earlier run's
/// adapter is served; absent for a job without a gate.
pub fn promotion_held(job: Option<&TwinTrainingJob>) -> Option<Assessment<EndpointPhase>> {
    let job = job?;
    job.spec.evaluation.gate.as_ref()?;
    let status = job.status.clone().unwrap_or_default();
    let name = job.name_any();
    let served = status.model.as_ref();
    let held = status
        .evaluation
        .as_ref()
        .filter(|e| !e.passed && served.is_some_and(|m| m.run.as_deref() != Some(e.run.as_str())));
    Some(match (held, status.evaluation.as_ref()) {
        (Some(held), _) => {
            let served = served.expect("a held run has a served one");
            Assessment::ready(
                EndpointPhase::Ready,
                "GateFailed",
                format!(
                    "run {} of TwinTrainingJob {name:?} failed its evaluation gate ({}; measured {}), so this endpoint keeps serving run {} (adapter {})",
                    held.run,
                    held.shortfalls.join("; "),
                    crate::eval::promotion::figures(held),
                    served.run.as_deref().unwrap_or("-"),
                    served.adapter_uri
                ),
            )
        }
        (None, Some(latest)) if latest.passed => Assessment::not_ready(
            EndpointPhase::Ready,
            "LatestRunPromoted",
            format!("run {} of TwinTrainingJob {name:?} passed its gate and is promoted", latest.run),
        ),
        _ => Assessment::not_ready(
            EndpointPhase::Ready,
            "NoRunHeld",
            format!("no run of TwinTrainingJob {name:?} is held back by its gate"),
        ),
    })
}

/// The status with its `PromotionHeld` condition set from `held` (or removed), and whether it
/// turned True with a new message now (which deserves an Event).
pub fn with_promotion_held(
    status: &mut TwinEndpointStatus,
    held: Option<&Assessment<EndpointPhase>>,
    generation: Option<i64>,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> bool {
    let before = status.conditions.iter().find(|c| c.type_ == PROMOTION_HELD).cloned();
    status.conditions.retain(|c| c.type_ != PROMOTION_HELD);
    let Some(held) = held else { return false };
    let condition = condition(PROMOTION_HELD, held, generation, before.as_slice(), now);
    let news =
        held.ready && before.as_ref().is_none_or(|b| b.status != "True" || b.message != condition.message);
    status.conditions.push(condition);
    news
}
