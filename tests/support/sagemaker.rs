//! SageMaker for the controller tests: an in-memory SageMaker behind `aws-smithy-mocks` (the
//! real SDK client, its serialisation, retries and error classification, with every call
//! answered from a map of training jobs the test moves along), a client of moto's emulator, and
//! a client that reaches nothing (for tests that do not exercise SageMaker).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_sdk_sagemaker::Client;
use aws_sdk_sagemaker::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sagemaker::error::ErrorMetadata;
use aws_sdk_sagemaker::operation::create_training_job::{CreateTrainingJobInput, CreateTrainingJobOutput};
use aws_sdk_sagemaker::operation::describe_training_job::{DescribeTrainingJobError, DescribeTrainingJobOutput};
use aws_sdk_sagemaker::operation::stop_training_job::StopTrainingJobOutput;
use aws_sdk_sagemaker::primitives::DateTime;
use aws_sdk_sagemaker::types::{MetricData, SecondaryStatus, SecondaryStatusTransition, TrainingJobStatus};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock};

pub const REGION: &str = "eu-central-1";
const ACCOUNT: &str = "123456789012";

/// One training job as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeJob {
    /// What CreateTrainingJob was asked.
    pub request: CreateTrainingJobInput,
    pub status: TrainingJobStatus,
    pub secondary: SecondaryStatus,
    pub message: String,
    pub failure_reason: Option<String>,
    pub metrics: Vec<(String, f32)>,
    pub changed: SystemTime,
}

#[derive(Debug, Default)]
pub struct State {
    pub jobs: BTreeMap<String, FakeJob>,
    /// Every CreateTrainingJob call, by job name.
    pub creates: Vec<String>,
    /// Every DescribeTrainingJob call.
    pub describes: usize,
    /// Every StopTrainingJob call, by job name.
    pub stops: Vec<String>,
}

/// An in-memory SageMaker.
#[derive(Clone, Default)]
pub struct FakeSageMaker {
    pub state: Arc<Mutex<State>>,
    throttling: Arc<AtomicBool>,
}

fn arn(name: &str) -> String {
    format!("arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}")
}

fn describe(name: &str, job: &FakeJob) -> DescribeTrainingJobOutput {
    let changed = DateTime::from(job.changed);
    let mut output = DescribeTrainingJobOutput::builder()
        .training_job_name(name)
        .training_job_arn(arn(name))
        .training_job_status(job.status.clone())
        .secondary_status(job.secondary.clone())
        .secondary_status_transitions(
            SecondaryStatusTransition::builder()
                .status(job.secondary.clone())
                .start_time(changed)
                .status_message(&job.message)
                .build(),
        )
        .creation_time(changed)
        .last_modified_time(changed)
        .training_start_time(changed);
    if matches!(job.status, TrainingJobStatus::Completed | TrainingJobStatus::Failed | TrainingJobStatus::Stopped) {
        output = output.training_end_time(changed);
    }
    if let Some(reason) = &job.failure_reason {
        output = output.failure_reason(reason);
    }
    for (metric, value) in &job.metrics {
        output = output.final_metric_data_list(MetricData::builder().metric_name(metric).value(*value).build());
    }
    output.build()
}

/// SageMaker's answer for a name it does not know (a ValidationException, as the real service
/// answers DescribeTrainingJob).
fn not_found(name: &str) -> DescribeTrainingJobError {
    DescribeTrainingJobError::generic(
        ErrorMetadata::builder()
            .code("ValidationException")
            .message(format!("Requested resource not found: training job {name}"))
            .build(),
    )
}

/// A throttled answer as the service sends it (awsJson 1.1).
const THROTTLED: &str = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;

impl FakeSageMaker {
    /// A client whose every call this fake answers. Once `throttle` is called, the next
    /// `times` DescribeTrainingJob attempts are throttled first.
    pub fn client(&self, throttled_attempts: usize) -> (Client, Rule) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let throttling = self.throttling.clone();
        // Retries of one call stay on the rule that answered its first attempt: these answer
        // throttled `throttled_attempts` times, then with the job as it is.
        let state = self.state.clone();
        let throttle = mock!(Client::describe_training_job)
            .match_requests(move |_| throttling.load(Ordering::SeqCst))
            .sequence()
            .http_status(400, Some(THROTTLED.into()))
            .times(throttled_attempts.max(1))
            .output(move || {
                let state = state.lock().unwrap();
                let (name, job) = state.jobs.iter().next().expect("a throttled job exists");
                describe(name, job)
            })
            .build();
        let state = self.state.clone();
        let describes = mock!(Client::describe_training_job).then_compute_response(move |input| {
            let mut state = state.lock().unwrap();
            state.describes += 1;
            let name = input.training_job_name().unwrap_or_default();
            match state.jobs.get(name) {
                Some(job) => MockResponse::Output(describe(name, job)),
                None => MockResponse::Error(not_found(name)),
            }
        });
        let state = self.state.clone();
        let creates = mock!(Client::create_training_job).then_compute_response(move |input| {
            let mut state = state.lock().unwrap();
            let name = input.training_job_name().unwrap_or_default().to_string();
            state.creates.push(name.clone());
            state.jobs.entry(name.clone()).or_insert_with(|| FakeJob {
                request: input.clone(),
                status: TrainingJobStatus::InProgress,
                secondary: SecondaryStatus::Starting,
                message: "Preparing the instances for training".into(),
                failure_reason: None,
                metrics: Vec::new(),
                changed: SystemTime::now(),
            });
            MockResponse::Output(CreateTrainingJobOutput::builder().training_job_arn(arn(&name)).build())
        });
        let state = self.state.clone();
        let stops = mock!(Client::stop_training_job).then_compute_response(move |input| {
            let mut state = state.lock().unwrap();
            let name = input.training_job_name().unwrap_or_default().to_string();
            state.stops.push(name.clone());
            if let Some(job) = state.jobs.get_mut(&name) {
                job.status = TrainingJobStatus::Stopping;
                job.secondary = SecondaryStatus::Stopping;
                job.changed = SystemTime::now();
            }
            MockResponse::Output(StopTrainingJobOutput::builder().build())
        });
        let interceptor = aws_smithy_mocks::MockResponseInterceptor::new()
            .rule_mode(RuleMode::MatchAny)
            .with_rule(&throttle)
            .with_rule(&describes)
            .with_rule(&creates)
            .with_rule(&stops);
        let config = aws_sdk_sagemaker::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(interceptor)
            .build();
        (Client::from_conf(config), throttle)
    }

    /// Throttles the next DescribeTrainingJob calls (as many attempts as the client was built
    /// with).
    pub fn start_throttling(&self) {
        self.throttling.store(true, Ordering::SeqCst);
    }

    /// Moves a job along.
    pub fn update(&self, name: &str, change: impl FnOnce(&mut FakeJob)) {
        let mut state = self.state.lock().unwrap();
        let job = state.jobs.get_mut(name).unwrap_or_else(|| panic!("no training job {name}"));
        change(job);
        job.changed = SystemTime::now();
    }

    /// The names of the jobs created so far.
    pub fn creates(&self) -> Vec<String> {
        self.state.lock().unwrap().creates.clone()
    }

    pub fn describes(&self) -> usize {
        self.state.lock().unwrap().describes
    }

    pub fn stops(&self) -> Vec<String> {
        self.state.lock().unwrap().stops.clone()
    }

    pub fn job(&self, name: &str) -> Option<FakeJob> {
        self.state.lock().unwrap().jobs.get(name).cloned()
    }
}

/// A client of the SageMaker at `endpoint` (moto), through the operator's own SDK setup.
pub async fn client_at(endpoint: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let credentials = Credentials::new("AKIDTEST", "secret", None, None, "test");
    let shared = twin_operator::aws::sdk_config(Some(REGION), Some(credentials)).await;
    Client::from_conf(aws_sdk_sagemaker::config::Builder::from(&shared).endpoint_url(endpoint).build())
}

/// A client that reaches nothing (a closed local port): tests that do not exercise SageMaker
/// never call out of the machine.
pub async fn unreachable() -> Client {
    client_at("http://127.0.0.1:9").await
}
