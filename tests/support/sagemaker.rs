//! SageMaker for the controller tests: an in-memory SageMaker on 127.0.0.1 that speaks the
//! service's wire protocol (JSON 1.1, `X-Amz-Target: SageMaker.<Operation>`), so the operator's
//! real client serialises, signs, retries and classifies errors exactly as against AWS,
//! with every training job's state in a map the test moves along; a client of moto's emulator;
//! and a client that reaches nothing (for tests that do not exercise SageMaker).
//!
//! Not `aws-smithy-mocks`: it enables `aws-smithy-http-client/test-util`, which turns on
//! serde_json's `preserve_order` in every test build, so the tests' JSON (CRDs, snapshots,
//! content hashes) would no longer be ordered as the binary's is.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use twin_operator::operator::training::sagemaker::wire::Client;

pub const REGION: &str = "eu-central-1";
const ACCOUNT: &str = "123456789012";

/// One training job as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeJob {
    /// The CreateTrainingJob request, as sent.
    pub request: Value,
    /// `InProgress`, `Completed`, `Failed`, `Stopping` or `Stopped`.
    pub status: String,
    /// The secondary status (`Starting`, `Training`, `MaxRuntimeExceeded`, ...).
    pub secondary: String,
    pub message: String,
    pub failure_reason: Option<String>,
    pub metrics: Vec<(String, f64)>,
    pub changed: SystemTime,
}

impl FakeJob {
    /// Moves the job to `status` / `secondary`.
    pub fn to(&mut self, status: &str, secondary: &str) {
        self.status = status.into();
        self.secondary = secondary.into();
    }
}

#[derive(Debug, Default)]
pub struct Calls {
    pub jobs: BTreeMap<String, FakeJob>,
    /// Every CreateTrainingJob call, by job name.
    pub creates: Vec<String>,
    /// DescribeTrainingJob calls answered.
    pub describes: usize,
    /// DescribeTrainingJob calls answered with ThrottlingException.
    pub throttled: usize,
    /// How many of the next DescribeTrainingJob calls to throttle.
    pub throttle_next: usize,
    /// Every StopTrainingJob call, by job name.
    pub stops: Vec<String>,
    /// The access key ID and region each call was signed with.
    pub signed_by: Vec<(String, String)>,
}

/// An in-memory SageMaker on a local port.
pub struct FakeSageMaker {
    calls: Arc<Mutex<Calls>>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

fn arn(name: &str) -> String {
    format!("arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}")
}

/// A timestamp as the JSON 1.1 protocol writes it: seconds since the epoch.
fn epoch(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn describe(name: &str, job: &FakeJob) -> Value {
    let changed = epoch(job.changed);
    let finished = matches!(job.status.as_str(), "Completed" | "Failed" | "Stopped");
    let metrics: Vec<Value> = job
        .metrics
        .iter()
        .map(|(metric, value)| json!({"MetricName": metric, "Value": value, "Timestamp": changed}))
        .collect();
    let mut output = json!({
        "TrainingJobName": name,
        "TrainingJobArn": arn(name),
        "TrainingJobStatus": job.status,
        "SecondaryStatus": job.secondary,
        "SecondaryStatusTransitions": [{"Status": job.secondary, "StartTime": changed, "StatusMessage": job.message}],
        "CreationTime": changed,
        "LastModifiedTime": changed,
        "TrainingStartTime": changed,
        "FinalMetricDataList": metrics,
        "AlgorithmSpecification": job.request["AlgorithmSpecification"],
        "RoleArn": job.request["RoleArn"],
    });
    if finished {
        output["TrainingEndTime"] = json!(changed);
    }
    if let Some(reason) = &job.failure_reason {
        output["FailureReason"] = json!(reason);
    }
    output
}

/// An error answer of the protocol: HTTP 400 with the error's type in `__type`.
fn error(code: &str, message: &str) -> Response {
    let body = json!({"__type": code, "message": message}).to_string();
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body).into_response()
}

fn answer(body: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body.to_string()).into_response()
}

async fn handle(AxumState(calls): AxumState<Arc<Mutex<Calls>>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return error("SerializationException", "the body is not JSON");
    };
    let name = input["TrainingJobName"].as_str().unwrap_or_default().to_string();
    let mut calls = calls.lock().unwrap();
    // `AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/sagemaker/aws4_request, ...`
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let scope: Vec<&str> = authorization
        .split("Credential=")
        .nth(1)
        .unwrap_or_default()
        .split(',')
        .next()
        .unwrap_or_default()
        .split('/')
        .collect();
    calls.signed_by.push((scope[0].to_string(), scope.get(2).copied().unwrap_or_default().to_string()));
    match target.as_str() {
        "SageMaker.CreateTrainingJob" => {
            calls.creates.push(name.clone());
            if calls.jobs.contains_key(&name) {
                return error("ResourceInUse", &format!("Training job names must be unique: {name}"));
            }
            let job = FakeJob {
                request: input,
                status: "InProgress".into(),
                secondary: "Starting".into(),
                message: "Preparing the instances for training".into(),
                failure_reason: None,
                metrics: Vec::new(),
                changed: SystemTime::now(),
            };
            calls.jobs.insert(name.clone(), job);
            answer(json!({"TrainingJobArn": arn(&name)}))
        }
        "SageMaker.DescribeTrainingJob" => {
            if calls.throttle_next > 0 {
                calls.throttle_next -= 1;
                calls.throttled += 1;
                return error("ThrottlingException", "Rate exceeded");
            }
            calls.describes += 1;
            match calls.jobs.get(&name) {
                Some(job) => answer(describe(&name, job)),
                // What the service answers for a name it does not know.
                None => error("ValidationException", "Requested resource not found."),
            }
        }
        "SageMaker.StopTrainingJob" => {
            calls.stops.push(name.clone());
            match calls.jobs.get_mut(&name) {
                Some(job) => {
                    job.to("Stopping", "Stopping");
                    job.changed = SystemTime::now();
                    answer(json!({}))
                }
                None => error("ValidationException", "Requested resource not found."),
            }
        }
        other => error("UnknownOperationException", &format!("the fake does not serve {other:?}")),
    }
}

impl FakeSageMaker {
    /// Starts the fake on a free local port.
    pub async fn start() -> Self {
        let calls = Arc::new(Mutex::new(Calls::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", post(handle)).with_state(calls.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { calls, addr, server }
    }

    /// Where it listens.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of this fake, built as the operator builds its own.
    pub async fn client(&self) -> Client {
        client_at(&self.endpoint()).await
    }

    /// Throttles the next `count` DescribeTrainingJob calls.
    pub fn throttle_next(&self, count: usize) {
        self.calls.lock().unwrap().throttle_next = count;
    }

    /// Moves a job along.
    pub fn update(&self, name: &str, change: impl FnOnce(&mut FakeJob)) {
        let mut calls = self.calls.lock().unwrap();
        let job = calls.jobs.get_mut(name).unwrap_or_else(|| panic!("no training job {name}"));
        change(job);
        job.changed = SystemTime::now();
    }

    /// What was called so far.
    pub fn calls<T>(&self, read: impl FnOnce(&Calls) -> T) -> T {
        read(&self.calls.lock().unwrap())
    }

    pub fn creates(&self) -> Vec<String> {
        self.calls(|c| c.creates.clone())
    }

    pub fn stops(&self) -> Vec<String> {
        self.calls(|c| c.stops.clone())
    }

    pub fn job(&self, name: &str) -> Option<FakeJob> {
        self.calls(|c| c.jobs.get(name).cloned())
    }
}

impl Drop for FakeSageMaker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A client of the SageMaker at `endpoint` (the fake, moto), through the operator's own AWS
/// setup.
pub async fn client_at(endpoint: &str) -> Client {
    let credentials = Credentials::new("AKIDTEST", "secret", None, None, "test");
    let shared = twin_operator::aws::sdk_config(Some(REGION), Some(credentials)).await;
    Client::new(&shared, Some(endpoint)).unwrap()
}

/// A client that reaches nothing (a closed local port): tests that do not exercise SageMaker
/// never call out of the machine.
pub async fn unreachable() -> Client {
    client_at("http://127.0.0.1:9").await
}
