//! The fake API server's admin API, under `/admin` beside the Kubernetes API, so that scripts
//! and people can play the parts of a cluster that the fake has no controller for:
//!
//! | request | what it does |
//! |---|---|
//! | `POST /admin/jobs/NS/NAME/succeed` (body: termination message) | the Job completes; its pod exited 0 with that message |
//! | `POST /admin/jobs/NS/NAME/fail` (body: termination message) | the Job fails; its pod exited 1 with that message |
//! | `POST /admin/pods/NS/NAME/succeed` or `/fail` (body: termination message) | the pod ends so |
//! | `POST /admin/cronjobs/NS/NAME/run` | a Job from the CronJob's template, as its schedule would start |
//! | `POST /admin/deployments/NS/NAME/available` | every replica ready and available |
//! | `POST /admin/deployments/NS/NAME/unavailable?reason=R&message=M` | no replica available, with that condition |
//! | `POST /admin/deployments/NS/NAME/pods` (JSON body: the pod's status) | a pod of the Deployment with that status (crash-looping, OOM-killed, unschedulable) |
//! | `POST /admin/faults` (JSON: `verb`, `resource`, `subresource`, `code`, `message`, `count`) | the next matching requests fail so |
//! | `DELETE /admin/faults` | unused faults are forgotten |
//! | `POST /admin/watches/close` | every open watch ends (clients re-watch) |
//!
//! Answers are the changed object as JSON, or `{"error": ...}` with the status a Kubernetes
//! API server would give (404 for an unknown object).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::store::ApiError;
use super::{FaultRule, Shared};

type Admin = State<Arc<Shared>>;
type Object = Path<(String, String)>;

/// The admin routes, nested under `/admin`.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/jobs/{namespace}/{name}/succeed", post(job_succeeded))
        .route("/jobs/{namespace}/{name}/fail", post(job_failed))
        .route("/pods/{namespace}/{name}/succeed", post(pod_succeeded))
        .route("/pods/{namespace}/{name}/fail", post(pod_failed))
        .route("/cronjobs/{namespace}/{name}/run", post(cron_job_run))
        .route("/deployments/{namespace}/{name}/available", post(deployment_available))
        .route("/deployments/{namespace}/{name}/unavailable", post(deployment_unavailable))
        .route("/deployments/{namespace}/{name}/pods", post(deployment_pod))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/watches/close", post(close_watches))
}

fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(object) => (StatusCode::OK, axum::Json(object)).into_response(),
        Err(error) => {
            let code = StatusCode::from_u16(error.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, axum::Json(json!({"error": error.message()}))).into_response()
        }
    }
}

async fn job_succeeded(State(shared): Admin, Path((namespace, name)): Object, message: String) -> Response {
    answer(shared.mark_job_succeeded(&namespace, &name, &message))
}

async fn job_failed(State(shared): Admin, Path((namespace, name)): Object, message: String) -> Response {
    answer(shared.mark_job_failed(&namespace, &name, &message))
}

async fn pod_succeeded(State(shared): Admin, Path((namespace, name)): Object, message: String) -> Response {
    answer(shared.finish_pod(&namespace, &name, true, &message))
}

async fn pod_failed(State(shared): Admin, Path((namespace, name)): Object, message: String) -> Response {
    answer(shared.finish_pod(&namespace, &name, false, &message))
}

async fn cron_job_run(State(shared): Admin, Path((namespace, name)): Object) -> Response {
    answer(shared.run_cron_job(&namespace, &name))
}

async fn deployment_available(State(shared): Admin, Path((namespace, name)): Object) -> Response {
    answer(shared.mark_deployment_available(&namespace, &name))
}

async fn deployment_unavailable(
    State(shared): Admin,
    Path((namespace, name)): Object,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let reason = query.get("reason").map(String::as_str).unwrap_or("MinimumReplicasUnavailable");
    let message =
        query.get("message").map(String::as_str).unwrap_or("Deployment does not have minimum availability.");
    answer(shared.mark_deployment_unavailable(&namespace, &name, reason, message))
}

async fn deployment_pod(State(shared): Admin, Path((namespace, name)): Object, body: String) -> Response {
    match serde_json::from_str::<Value>(&body) {
        Ok(status) => answer(shared.start_deployment_pod(&namespace, &name, status)),
        Err(error) => answer(Err(ApiError::BadRequest(format!("not a pod status: {error}")))),
    }
}

async fn add_fault(State(shared): Admin, body: String) -> Response {
    match serde_json::from_str::<FaultRule>(&body) {
        Ok(rule) => {
            let shown = json!({"verb": format!("{:?}", rule.verb), "resource": rule.plural, "subresource": rule.subresource,
                "code": rule.code, "message": rule.message, "count": rule.remaining});
            shared.inject(rule);
            answer(Ok(shown))
        }
        Err(error) => answer(Err(ApiError::BadRequest(format!("not a fault rule: {error}")))),
    }
}

async fn clear_faults(State(shared): Admin) -> Response {
    shared.clear_faults();
    answer(Ok(json!({"faults": 0})))
}

async fn close_watches(State(shared): Admin) -> Response {
    shared.close_watches();
    answer(Ok(json!({"closed": true})))
}
