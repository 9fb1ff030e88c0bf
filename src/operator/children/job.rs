//! A twin's Job as observed, shared by the dataset and training controllers: how it stands
//! ([`JobOutcome`]: running, succeeded with the workload's report, or failed), and what its pods
//! say that the Job does not: how the newest finished container ended (its exit code, reason
//! and termination message: the workload's result, or the log tail that
//! `FallbackToLogsOnError` leaves when it crashed), and why a pod waits unscheduled (the
//! scheduler's message). And the mapper that lets a controller watch what it does not own
//! (the pods of its children, a CronJob's Jobs).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::ListParams;
use kube::runtime::reflector::{ObjectRef, Store};

use super::naming::instance_label;
use crate::contract::labels;
use crate::operator::context::Context;
use crate::operator::error::{Error, Result};

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnd {
    /// Its exit code (137: killed, as by the kernel's OOM killer).
    pub exit_code: i32,
    /// The kubelet's reason: `Completed`, `Error`, `OOMKilled`, ...
    pub reason: Option<String>,
    /// What it wrote to its termination-message path, or its log tail.
    pub message: Option<String>,
}

impl ContainerEnd {
    /// Whether it ran out of memory: killed by the kernel (`OOMKilled`), or a log tail that
    /// names an out-of-memory error (CUDA's, PyTorch's, Python's `MemoryError`).
    pub fn out_of_memory(&self) -> bool {
        // "MemoryError" also matches torch.OutOfMemoryError; "out of memory" CUDA's and the kernel's.
        const SIGNS: [&str; 3] = ["MemoryError", "out of memory", "Out of memory"];
        self.reason.as_deref() == Some("OOMKilled")
            || self.message.as_deref().is_some_and(|m| SIGNS.iter().any(|sign| m.contains(sign)))
    }

    /// The last `lines` non-empty lines of its message, for a status a person reads.
    pub fn message_tail(&self, lines: usize) -> Option<String> {
        let message = self.message.as_deref()?;
        let kept: Vec<&str> = message.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
        (!kept.is_empty()).then(|| kept[kept.len().saturating_sub(lines)..].join("\n"))
    }
}

/// A Job's pods as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobPods {
    /// The first terminated container of the newest pod that has one.
    pub ended: Option<ContainerEnd>,
    /// The scheduler's message, while the newest pod cannot be scheduled.
    pub unschedulable: Option<String>,
}

impl JobPods {
    /// The termination message of the newest finished container: the workload's result line.
    pub fn termination_message(&self) -> Option<&str> {
        self.ended.as_ref()?.message.as_deref()
    }

    /// Reads what the pods say (pure).
    pub fn from_pods(mut pods: Vec<Pod>) -> Self {
        pods.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        let ended = pods.iter().rev().find_map(|pod| {
            let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
            statuses.iter().find_map(|c| {
                let terminated = c.state.as_ref()?.terminated.as_ref()?;
                Some(ContainerEnd {
                    exit_code: terminated.exit_code,
                    reason: terminated.reason.clone(),
                    message: terminated.message.clone(),
                })
            })
        });
        let unschedulable = pods.last().and_then(|pod| {
            let conditions = pod.status.as_ref()?.conditions.as_ref()?;
            let condition = conditions.iter().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })?;
            Some(condition.message.clone().unwrap_or_else(|| "no node fits the pod".into()))
        });
        Self { ended, unschedulable }
    }
}

/// A Job as observed: absent until it is created, with what its pods say.
#[derive(Debug, Clone, Default)]
#[allow(missing_docs)]
pub struct ObservedJob {
    /// The Job, once it exists.
    pub job: Option<Job>,
    pub pods: JobPods,
}

/// The result line a workload writes to its termination-message path, as its controller reads
/// it.
pub trait JobReport: Sized {
    /// The report a line holds; `None` when it holds none that can be read.
    fn read(line: &str) -> Option<Self>;
}

/// How a Job stands, with the report its workload left, if a readable one.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome<R> {
    /// Neither complete nor failed: its pod waits or runs.
    Running,
    /// Complete.
    Succeeded {
        /// The workload's report.
        report: Option<R>,
        /// When the Job completed.
        at: Option<Time>,
    },
    /// Failed.
    Failed {
        /// The workload's report.
        report: Option<R>,
        /// The reason of the Job's `Failed` condition (`BackoffLimitExceeded`,
        /// `DeadlineExceeded`, ...), when it gives one.
        reason: Option<String>,
        /// When the Job failed.
        at: Option<Time>,
    },
}

impl ObservedJob {
    /// How the Job stands; `None` while it does not exist.
    pub fn outcome<R: JobReport>(&self) -> Option<JobOutcome<R>> {
        let job = self.job.as_ref()?;
        let report = || self.pods.termination_message().and_then(R::read);
        Some(match finished_condition(job) {
            Some(condition) if condition.type_ == "Complete" => JobOutcome::Succeeded {
                report: report(),
                at: job.status.as_ref().and_then(|s| s.completion_time.clone()),
            },
            Some(condition) => JobOutcome::Failed {
                report: report(),
                reason: condition.reason.clone().filter(|r| !r.is_empty()),
                at: condition.last_transition_time.clone(),
            },
            None => JobOutcome::Running,
        })
    }
}

/// The Job's true `Complete` or `Failed` condition, once it has finished.
fn finished_condition(job: &Job) -> Option<&k8s_openapi::api::batch::v1::JobCondition> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Whether a Job has finished, well or not.
pub fn job_finished(job: &Job) -> bool {
    finished_condition(job).is_some()
}

/// A Job and, while it exists, its pods.
pub async fn observe_job(ctx: &Context, namespace: &str, job: Option<Job>) -> Result<ObservedJob> {
    let Some(job) = job else { return Ok(ObservedJob::default()) };
    let pods = observe_job_pods(ctx, namespace, &job.name_any()).await?;
    Ok(ObservedJob { job: Some(job), pods })
}

/// The pods of a Job, as [`JobPods`].
async fn observe_job_pods(ctx: &Context, namespace: &str, job: &str) -> Result<JobPods> {
    let pods = ctx
        .namespaced_api::<Pod>(namespace)
        .list(&ListParams::default().labels(&format!("{}={job}", labels::JOB_NAME)))
        .await
        .map_err(|source| Error::ListChildren { kind: "Pod".into(), source })?;
    Ok(JobPods::from_pods(pods.items))
}

/// The pods labelled as the children of the twin `owner` of kind `app` (an endpoint's, a shared
/// engine's), as they are now.
pub async fn labelled_pods(ctx: &Context, namespace: &str, app: &str, owner: &str) -> Result<Vec<Pod>> {
    let selector = format!("{}={app},{}={}", labels::NAME, labels::INSTANCE, instance_label(owner));
    ctx.namespaced_api::<Pod>(namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|list| list.items)
        .map_err(|source| Error::ListChildren { kind: "Pod".into(), source })
}

/// A mapper for `.watches()`: a changed object wakes the twin whose instance label it carries.
/// Children a twin owns wake it through their owner reference (`.owns`); this is for the two
/// kinds it does not own: pods, which belong to ReplicaSets or Jobs, and the Jobs of a
/// dataset's scheduled refreshes, which belong to its CronJob. The label selects, and the twin
/// must be in the controller's cache under that label.
pub fn twin_of_labelled<K, R>(twins: &Store<K>) -> impl Fn(R) -> Option<ObjectRef<K>> + use<K, R>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
    R: kube::Resource,
{
    let twins = twins.clone();
    move |object: R| {
        let instance = object.labels().get(labels::INSTANCE)?.clone();
        let namespace = object.namespace();
        twins
            .state()
            .into_iter()
            .find(|t| t.namespace() == namespace && instance_label(&t.name_any()) == instance)
            .map(|t| ObjectRef::from_obj(&*t))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(created: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": created, "creationTimestamp": created}, "status": status}),
        )
        .unwrap()
    }

    #[test]
    fn the_newest_finished_pod_speaks_and_an_unscheduled_one_gives_the_schedulers_message() {
        let failed = |code: i32, reason: &str, message: &str| {
            json!({"containerStatuses": [{"name": "trainer", "image": "t", "ready": false, "restartCount": 0, "imageID": "",
                "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}}}]})
        };
        let pods = JobPods::from_pods(vec![
            pod("2026-01-01T00:00:02Z", failed(1, "Error", "second")),
            pod("2026-01-01T00:00:01Z", failed(1, "Error", "first")),
        ]);
        assert_eq!(pods.termination_message(), Some("second"));
        assert_eq!(pods.unschedulable, None);
        let pending = pod(
            "2026-01-01T00:00:03Z",
            json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}),
        );
        let pods =
            JobPods::from_pods(vec![pod("2026-01-01T00:00:01Z", failed(1, "Error", "first")), pending]);
        assert_eq!(
            pods.unschedulable.as_deref(),
            Some("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
        );
        assert_eq!(pods.termination_message(), Some("first"));
    }

    #[test]
    fn out_of_memory_is_told_by_the_kernel_or_by_the_log_tail() {
        let end = |code, reason: &str, message: &str| ContainerEnd {
            exit_code: code,
            reason: Some(reason.into()),
            message: Some(message.into()),
        };
        assert!(end(137, "OOMKilled", "").out_of_memory());
        assert!(
            end(
                1,
                "Error",
                "Traceback\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
            )
            .out_of_memory()
        );
        assert!(!end(1, "Error", "ValueError: bad config").out_of_memory());
        let tail = end(1, "Error", "a\n\nb\nc\n  \nd\n").message_tail(3);
        assert_eq!(tail.as_deref(), Some("b\nc\nd"));
        assert_eq!(end(1, "Error", " \n").message_tail(3), None);
    }
}
