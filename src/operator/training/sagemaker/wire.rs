//! SageMaker's JSON 1.1 protocol (`POST /`, `X-Amz-Target: SageMaker.<Operation>`): requests
//! signed with SigV4 by `aws-sigv4`, with credentials from `aws-config`'s chain, and retried as
//! the SDK's standard mode retries (up to three attempts for throttling, server errors and lost
//! connections, with jittered exponential backoff); error answers read in every spelling the
//! protocol allows; and DescribeTrainingJob's answer, of what the status reads. Not the
//! `aws-sdk-sagemaker` crate: its 350-odd operations took 131 s of a 9-minute cold build on 2
//! cores, for the three the backend calls.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_smithy_runtime_api::client::identity::Identity;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws::causes;

/// A SageMaker client: where to send, in which region, signed with which credentials. Cheap
/// to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
}

/// Attempts per call, as in the SDK's standard retry mode.
const ATTEMPTS: u32 = 3;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Error codes that mean "slow down" (the SDK's list for its standard retry mode).
const THROTTLING: [&str; 14] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

impl std::fmt::Debug for Client {
    /// Where it sends and for which region; never the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `config`'s region and credentials. It sends to `endpoint_url` when given,
    /// else where the SDK's settings say (`AWS_ENDPOINT_URL_SAGEMAKER`, `AWS_ENDPOINT_URL`, a
    /// profile's `endpoint_url`), else to the region's public endpoint.
    pub fn new(config: &SdkConfig, endpoint_url: Option<&str>) -> std::result::Result<Self, String> {
        let region = config
            .region()
            .map(|r| r.as_ref().to_string())
            .ok_or_else(|| "no AWS region: set spec.backend.sagemaker.region or AWS_REGION".to_string())?;
        let endpoint = match endpoint_url
            .map(str::to_string)
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_SAGEMAKER").ok().filter(|v| !v.is_empty()))
            .or_else(|| config.endpoint_url().map(str::to_string))
        {
            Some(url) => url,
            None if region.starts_with("cn-") => format!("https://api.sagemaker.{region}.amazonaws.com.cn"),
            None => format!("https://api.sagemaker.{region}.amazonaws.com"),
        };
        let endpoint = reqwest::Url::parse(&endpoint)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| format!("the SageMaker endpoint {endpoint:?} is not an http(s) URL"))?;
        // rustls needs a process-wide crypto provider; ring is the one kube uses too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("twin-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let credentials = config.credentials_provider();
        Ok(Self { inner: Arc::new(ClientInner { http, endpoint, region, credentials }) })
    }

    /// One operation of the API by name (`DescribeTrainingJob`), with its JSON input; its JSON
    /// output. Retried as the SDK's standard mode retries.
    pub async fn call(
        &self,
        operation: &'static str,
        input: &Value,
    ) -> std::result::Result<Value, CallError> {
        let mut attempt = 0;
        loop {
            let result = self.attempt(operation, input).await;
            attempt += 1;
            match result {
                Err(error) if error.is_transient() && attempt < ATTEMPTS => {
                    // Full jitter: a random wait of up to 1 s after the first attempt, 2 s after
                    // the second (2^(attempt-1) s, at most MAX_BACKOFF).
                    let ceiling = Duration::from_secs(1 << (attempt - 1)).min(MAX_BACKOFF);
                    tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
                }
                other => return other,
            }
        }
    }

    async fn attempt(&self, operation: &'static str, input: &Value) -> std::result::Result<Value, CallError> {
        let inner = &self.inner;
        let Some(provider) = &inner.credentials else {
            return Err(CallError::Unsent("no AWS credentials were found (environment, profile, web identity, Pod Identity, instance profile)".into()));
        };
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| CallError::Unsent(format!("no AWS credentials: {}", causes(&e))))?;
        let identity: Identity = credentials.into();
        let body = serde_json::to_vec(input).expect("a JSON value serialises");
        let target = format!("SageMaker.{operation}");
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        let signed = SignableRequest::new(
            "POST",
            inner.endpoint.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .and_then(|request| {
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(&identity)
                .region(&inner.region)
                .name("sagemaker")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .expect("every signing parameter is set")
                .into();
            sign(request, &params)
        })
        .map_err(|e| CallError::Unsent(format!("cannot sign the request: {e}")))?;
        let (signature_headers, _) = signed.into_parts().0.into_parts();
        let mut request = inner.http.post(inner.endpoint.clone()).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        for header in &signature_headers {
            request = request.header(header.name(), header.value());
        }
        let response = request.send().await.map_err(|e| CallError::Unanswered(causes(&e)))?;
        let status = response.status();
        let error_type =
            response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = response.bytes().await.map_err(|e| CallError::Unanswered(causes(&e)))?;
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(json!({}));
            }
            return serde_json::from_slice(&bytes).map_err(|e| CallError::Service {
                status: status.as_u16(),
                code: "SerializationException".into(),
                message: format!("SageMaker answered {operation} with a body that is not JSON: {e}"),
            });
        }
        Err(service_error(status.as_u16(), error_type.as_deref(), &bytes))
    }
}

/// A call that failed, after its retries.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// SageMaker answered with an error.
    Service {
        /// The HTTP status.
        status: u16,
        /// The service's error code (`ValidationException`, `ThrottlingException`, ...).
        code: String,
        /// The service's message.
        message: String,
    },
    /// Sent, with no answer (no connection, a timeout).
    Unanswered(String),
    /// Not sent (no credentials, nothing to sign with).
    Unsent(String),
}

impl CallError {
    /// The service's error code; empty when it did not answer.
    pub fn code(&self) -> &str {
        match self {
            CallError::Service { code, .. } => code,
            _ => "",
        }
    }

    /// Worth another attempt: throttled, a server error, a timeout or a lost connection.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Service { status, code, .. } => {
                *status >= 500 || THROTTLING.contains(&code.as_str()) || code.starts_with("RequestTimeout")
            }
            CallError::Unanswered(_) => true,
            CallError::Unsent(_) => false,
        }
    }
}

impl std::fmt::Display for CallError {
    /// The service's code and message, which name the actual problem; else what went wrong.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Service { code, message, .. } => write!(f, "{code}: {message}"),
            CallError::Unanswered(text) => write!(f, "no answer from SageMaker: {text}"),
            CallError::Unsent(text) => f.write_str(text),
        }
    }
}

/// An error answer of the JSON 1.1 protocol: the code in the body's `__type` (or `code`, or the
/// `x-amzn-ErrorType` header), which may carry a namespace (`com.amazon...#Code`) or a URL after
/// a colon; the message in `message` or `Message`.
pub(super) fn service_error(status: u16, header: Option<&str>, body: &[u8]) -> CallError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let raw = parsed["__type"].as_str().or(parsed["code"].as_str()).or(header).unwrap_or_default();
    let code = raw.rsplit('#').next().unwrap_or_default().split(':').next().unwrap_or_default().trim();
    let message = parsed["message"].as_str().or(parsed["Message"].as_str()).map(str::to_string);
    CallError::Service {
        status,
        code: if code.is_empty() { format!("HTTP{status}") } else { code.to_string() },
        message: message.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "the service refused the request".into()
            } else {
                text.chars().take(300).collect()
            }
        }),
    }
}

/// What DescribeTrainingJob returns, of what the status reads. The fields are the API's,
/// named as its reference names them; times are seconds since the epoch, as the protocol
/// writes them.
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrainingJobDescription {
    pub training_job_arn: Option<String>,
    pub training_job_status: Option<TrainingJobStatus>,
    pub secondary_status: Option<SecondaryStatus>,
    /// The latest last.
    #[serde(default)]
    pub secondary_status_transitions: Vec<SecondaryStatusTransition>,
    pub failure_reason: Option<String>,
    pub training_start_time: Option<f64>,
    pub training_end_time: Option<f64>,
    pub last_modified_time: Option<f64>,
    #[serde(default)]
    pub final_metric_data_list: Vec<MetricData>,
}

/// A training job's state (`TrainingJobStatus`). A state this client does not know is kept as
/// written, to be shown; it decides nothing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum TrainingJobStatus {
    /// Starting or training.
    InProgress,
    /// Finished; its model was uploaded.
    Completed,
    /// Failed: `FailureReason` says why.
    Failed,
    /// Stopping after StopTrainingJob or a limit.
    Stopping,
    /// Stopped before it finished.
    Stopped,
    /// A state added after this client was written.
    Other(String),
}

impl From<String> for TrainingJobStatus {
    fn from(written: String) -> Self {
        match written.as_str() {
            "InProgress" => Self::InProgress,
            "Completed" => Self::Completed,
            "Failed" => Self::Failed,
            "Stopping" => Self::Stopping,
            "Stopped" => Self::Stopped,
            _ => Self::Other(written),
        }
    }
}

impl std::fmt::Display for TrainingJobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InProgress => "InProgress",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Other(written) => written,
        })
    }
}

/// A training job's finer state (`SecondaryStatus`): the two that say why a job was stopped
/// are told apart, the others (`Starting`, `Downloading`, `Training`, `Uploading`, ...) are
/// shown as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum SecondaryStatus {
    /// Stopped at `StoppingCondition.MaxRuntimeInSeconds`.
    MaxRuntimeExceeded,
    /// Stopped at `StoppingCondition.MaxWaitTimeInSeconds` (managed spot training).
    MaxWaitTimeExceeded,
    /// Any other finer state.
    Other(String),
}

impl From<String> for SecondaryStatus {
    fn from(written: String) -> Self {
        match written.as_str() {
            "MaxRuntimeExceeded" => Self::MaxRuntimeExceeded,
            "MaxWaitTimeExceeded" => Self::MaxWaitTimeExceeded,
            _ => Self::Other(written),
        }
    }
}

impl std::fmt::Display for SecondaryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MaxRuntimeExceeded => "MaxRuntimeExceeded",
            Self::MaxWaitTimeExceeded => "MaxWaitTimeExceeded",
            Self::Other(written) => written,
        })
    }
}

/// One secondary state of a training job.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecondaryStatusTransition {
    /// The state.
    pub status: Option<String>,
    /// What SageMaker said about it.
    pub status_message: Option<String>,
}

/// A metric's final value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricData {
    /// The metric's name.
    pub metric_name: Option<String>,
    /// Its value: SageMaker keeps metrics as 32-bit floats.
    pub value: Option<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_sends_to_the_regions_endpoint_unless_told_otherwise() {
        let config =
            |region: &str| SdkConfig::builder().region(aws_config::Region::new(region.to_string())).build();
        if std::env::var_os("AWS_ENDPOINT_URL_SAGEMAKER").is_none() {
            let client = Client::new(&config("eu-west-1"), None).unwrap();
            assert_eq!(client.inner.endpoint.as_str(), "https://api.sagemaker.eu-west-1.amazonaws.com/");
            let china = Client::new(&config("cn-north-1"), None).unwrap();
            assert_eq!(china.inner.endpoint.as_str(), "https://api.sagemaker.cn-north-1.amazonaws.com.cn/");
        }
        let local = Client::new(&config("eu-west-1"), Some("http://127.0.0.1:4566")).unwrap();
        assert_eq!(
            format!("{local:?}"),
            r#"Client { endpoint: "http://127.0.0.1:4566/", region: "eu-west-1", .. }"#
        );
        let error = Client::new(&config("eu-west-1"), Some("ftp://example.com")).unwrap_err();
        assert!(error.contains("not an http(s) URL"), "{error}");
        let error = Client::new(&SdkConfig::builder().build(), None).unwrap_err();
        assert!(error.contains("no AWS region"), "{error}");
    }

    #[test]
    fn error_answers_are_read_in_every_spelling_the_protocol_allows() {
        let read = |status, header, body: &str| service_error(status, header, body.as_bytes());
        assert_eq!(
            read(400, None, r#"{"__type": "com.amazonaws.sagemaker#ValidationException", "Message": "bad"}"#)
                .to_string(),
            "ValidationException: bad"
        );
        assert_eq!(
            read(
                400,
                Some("ThrottlingException:http://internal.amazon.com/"),
                r#"{"message": "Rate exceeded"}"#
            )
            .to_string(),
            "ThrottlingException: Rate exceeded"
        );
        let gateway = read(502, None, "<html>Bad Gateway</html>");
        assert_eq!(gateway.to_string(), "HTTP502: <html>Bad Gateway</html>");
        assert!(gateway.is_transient());
        assert!(read(400, None, r#"{"__type": "ThrottlingException"}"#).is_transient());
        assert!(!read(400, None, r#"{"__type": "AccessDeniedException"}"#).is_transient());
        assert!(CallError::Unanswered("connection refused".into()).is_transient());
        assert!(!CallError::Unsent("no AWS credentials".into()).is_transient());
    }

    #[test]
    fn a_description_reads_the_protocols_field_names_and_epoch_times() {
        let description: TrainingJobDescription = serde_json::from_value(json!({
            "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:1:training-job/j",
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Training",
            "SecondaryStatusTransitions": [{"Status": "Training", "StartTime": 1.8e9, "StatusMessage": "Training in progress."}],
            "TrainingStartTime": 1800000000.25,
            "FinalMetricDataList": [{"MetricName": "sft:train_loss", "Value": 1.25, "Timestamp": 1.8e9}],
            "RoleArn": "arn:aws:iam::1:role/r"
        }))
        .unwrap();
        assert_eq!(description.training_start_time, Some(1_800_000_000.25));
        assert_eq!(description.final_metric_data_list[0].value, Some(1.25));
        assert_eq!(
            description.secondary_status_transitions[0].status_message.as_deref(),
            Some("Training in progress.")
        );
    }
}
