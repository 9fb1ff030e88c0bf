//! Helpers that play the Job controller, the CronJob controller, the Deployment controller and
//! the kubelet: a Job that succeeded or failed with a termination message on its pod, a pod
//! that finished, a CronJob's scheduled run, a Deployment whose replicas became available or
//! not. The tests call them directly; the admin API serves them to scripts.

use serde_json::{Value, json};

use super::Shared;
use super::fields::Scope;
use super::store::{ApiError, ObjectKey, Ownership};

const CONTROLLER: &str = "kube-controller-manager";

impl Shared {
    fn key(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> ObjectKey {
        let store = self.store.lock().unwrap();
        let type_index = store.type_of_kind(api_version, kind).expect("a served kind");
        ObjectKey { type_index, namespace: namespace.into(), name: name.into() }
    }

    fn write_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let key = self.key(api_version, kind, namespace, name);
        let mut store = self.store.lock().unwrap();
        let mut object = store.get(&key)?;
        object["status"] = status;
        object["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        store.write(&key, object, Scope::Status, Ownership::Update(CONTROLLER))
    }

    /// Creates the Job's finished pod, whose container ended with `exit_code` and wrote
    /// `message` to its termination-message path.
    fn finished_pod(
        &self,
        job: &Value,
        phase: &str,
        exit_code: i32,
        reason: &str,
        message: &str,
    ) -> Result<Value, ApiError> {
        let namespace = job["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = job["metadata"]["name"].as_str().unwrap_or_default();
        let container = job["spec"]["template"]["spec"]["containers"][0]["name"].as_str().unwrap_or("main");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("{name}-{:05}", job["metadata"]["generation"].as_i64().unwrap_or(1)),
                "namespace": namespace,
                "labels": {"batch.kubernetes.io/job-name": name, "job-name": name},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                    "uid": job["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": job["spec"]["template"]["spec"],
        });
        let type_index = self.key("v1", "Pod", namespace, "").type_index;
        let created = self.store.lock().unwrap().create(type_index, namespace, pod, CONTROLLER, "Update")?;
        let pod_name = created["metadata"]["name"].as_str().unwrap().to_string();
        self.write_status(
            "v1",
            "Pod",
            namespace,
            &pod_name,
            terminated_status(container, phase, exit_code, reason, message),
        )
    }

    fn job(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.get("batch/v1", "Job", namespace, name).ok_or_else(|| ApiError::NotFound(format!("job {name}")))
    }

    /// Marks a Job succeeded; its pod's termination message is `termination_message`.
    pub fn mark_job_succeeded(
        &self,
        namespace: &str,
        name: &str,
        termination_message: &str,
    ) -> Result<Value, ApiError> {
        let job = self.job(namespace, name)?;
        self.finished_pod(&job, "Succeeded", 0, "Completed", termination_message)?;
        self.write_status("batch/v1", "Job", namespace, name, json!({
            "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:01:00Z", "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastTransitionTime": "2026-01-01T00:01:00Z", "lastProbeTime": "2026-01-01T00:01:00Z"},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastTransitionTime": "2026-01-01T00:01:00Z", "lastProbeTime": "2026-01-01T00:01:00Z"},
            ],
        }))
    }

    /// Marks a Job failed; its pod ended with exit code 1 and `termination_message`.
    pub fn mark_job_failed(
        &self,
        namespace: &str,
        name: &str,
        termination_message: &str,
    ) -> Result<Value, ApiError> {
        let job = self.job(namespace, name)?;
        self.finished_pod(&job, "Failed", 1, "Error", termination_message)?;
        self.write_status("batch/v1", "Job", namespace, name, json!({
            "startTime": "2026-01-01T00:00:00Z", "failed": 1,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": "2026-01-01T00:01:00Z", "lastProbeTime": "2026-01-01T00:01:00Z"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": "2026-01-01T00:01:00Z", "lastProbeTime": "2026-01-01T00:01:00Z"},
            ],
        }))
    }

    /// A Deployment and the replicas it asks for.
    fn deployment(&self, namespace: &str, name: &str) -> Result<(Value, i64), ApiError> {
        let deployment = self
            .get("apps/v1", "Deployment", namespace, name)
            .ok_or_else(|| ApiError::NotFound(format!("deployment {name}")))?;
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
        Ok((deployment, replicas))
    }

    /// Marks every replica of a Deployment ready and available.
    pub fn mark_deployment_available(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let (deployment, replicas) = self.deployment(namespace, name)?;
        self.write_status("apps/v1", "Deployment", namespace, name, json!({
            "observedGeneration": deployment["metadata"]["generation"], "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastTransitionTime": "2026-01-01T00:01:00Z", "lastUpdateTime": "2026-01-01T00:01:00Z"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed.", "lastTransitionTime": "2026-01-01T00:01:00Z", "lastUpdateTime": "2026-01-01T00:01:00Z"},
            ],
        }))
    }

    /// Marks a Deployment's replicas not available (pods crash-looping, say), with the reason
    /// and message of its Available condition.
    pub fn mark_deployment_unavailable(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
        message: &str,
    ) -> Result<Value, ApiError> {
        let (deployment, replicas) = self.deployment(namespace, name)?;
        self.write_status("apps/v1", "Deployment", namespace, name, json!({
            "observedGeneration": deployment["metadata"]["generation"], "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "False", "reason": reason, "message": message, "lastTransitionTime": "2026-01-01T00:01:00Z", "lastUpdateTime": "2026-01-01T00:01:00Z"},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "ReplicaSet is progressing.", "lastTransitionTime": "2026-01-01T00:01:00Z", "lastUpdateTime": "2026-01-01T00:01:00Z"},
            ],
        }))
    }

    /// Starts a pod of a Deployment (its template's labels and spec) with the status given, as
    /// the scheduler and kubelet report it: a crash-looping, OOM-killed or unschedulable replica.
    pub fn start_deployment_pod(
        &self,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let (deployment, _) = self.deployment(namespace, name)?;
        let template = &deployment["spec"]["template"];
        let prefix = format!("{name}-");
        let siblings = self
            .list("v1", "Pod")
            .iter()
            .filter(|p| p["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
            .count();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("{name}-7c9d5f8b6-{siblings:05}"),
                "namespace": namespace,
                "labels": template["metadata"]["labels"],
            },
            "spec": template["spec"],
        });
        let type_index = self.key("v1", "Pod", namespace, "").type_index;
        let created = self.store.lock().unwrap().create(type_index, namespace, pod, CONTROLLER, "Update")?;
        let pod_name = created["metadata"]["name"].as_str().unwrap().to_string();
        self.write_status("v1", "Pod", namespace, &pod_name, status)
    }

    /// Ends a pod: its phase becomes `Succeeded` (exit code 0) or `Failed` (exit code 1), and
    /// its first container's termination message is `message`.
    pub fn finish_pod(
        &self,
        namespace: &str,
        name: &str,
        succeeded: bool,
        message: &str,
    ) -> Result<Value, ApiError> {
        let pod = self
            .get("v1", "Pod", namespace, name)
            .ok_or_else(|| ApiError::NotFound(format!("pod {name}")))?;
        let container = pod["spec"]["containers"][0]["name"].as_str().unwrap_or("main").to_string();
        let (phase, exit_code, reason) =
            if succeeded { ("Succeeded", 0, "Completed") } else { ("Failed", 1, "Error") };
        self.write_status(
            "v1",
            "Pod",
            namespace,
            name,
            terminated_status(&container, phase, exit_code, reason, message),
        )
    }

    /// Starts a CronJob's run now, as the CronJob controller does on schedule: a Job from its
    /// template, owned by the CronJob, named `<cronjob>-<n>`.
    pub fn run_cron_job(&self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let cron_job = self
            .get("batch/v1", "CronJob", namespace, name)
            .ok_or_else(|| ApiError::NotFound(format!("cronjob {name}")))?;
        let template = &cron_job["spec"]["jobTemplate"];
        let runs = self.list("batch/v1", "Job").iter().filter(|j| is_owned_by(j, &cron_job)).count();
        let mut metadata = template["metadata"].clone();
        if !metadata.is_object() {
            metadata = json!({});
        }
        metadata["name"] = json!(format!("{name}-{}", 29_000_000 + runs));
        metadata["namespace"] = json!(namespace);
        metadata["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": name,
            "uid": cron_job["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
        let job =
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": template["spec"]});
        let type_index = self.key("batch/v1", "Job", namespace, "").type_index;
        self.store.lock().unwrap().create(type_index, namespace, job, "kube-controller-manager", "Update")
    }
}

fn is_owned_by(object: &Value, owner: &Value) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner["metadata"]["uid"]))
}

/// A pod status whose one container terminated.
fn terminated_status(container: &str, phase: &str, exit_code: i32, reason: &str, message: &str) -> Value {
    json!({
        "phase": phase,
        "containerStatuses": [{"name": container, "ready": false, "restartCount": 0, "image": "twin", "imageID": "",
            "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message,
                "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:01:00Z"}}}],
    })
}
