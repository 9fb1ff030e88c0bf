//! Reaching SageMaker: one client per region and identity (the operator's own AWS chain, or
//! the keys of a job's `credentialsSecretRef`), kept while the Secret is unchanged; and the
//! three calls a run makes (over `wire`), with SageMaker's answers sorted into what the status
//! says (a quota, a refusal) and what is retried (throttling past the client's own retries, a
//! server error, no connection).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_credential_types::Credentials;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::request::{CONFIG_HYPERPARAMETER, RESULT_METRICS, TrainingJobRequest, VOLUME_GB, metric_regex};
use super::wire::{CallError, Client, TrainingJobDescription};
use crate::api::training::SageMakerBackend;
use crate::aws::sdk_config;
use crate::operator::context::Context;
use crate::operator::error::{Error, Result};

/// Why a run cannot reach SageMaker, in the status's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    /// A CamelCase reason.
    pub reason: &'static str,
    /// What to fix.
    pub message: String,
}

/// SageMaker's answer when it is not the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An account quota (instances of the type, concurrent jobs) is used up: it may free up.
    Quota(String),
    /// Refused for good until something changes (the role, the image, the instance type, a
    /// permission): the service's code and message.
    Rejected(String),
}

/// The SageMaker clients of the operator.
pub struct SageMakerClients {
    fixed: Option<Client>,
    endpoint_url: Option<String>,
    /// Clients by region and identity, with the Secret's resourceVersion they were built from.
    built: Mutex<HashMap<String, (String, Client)>>,
}

const ACCESS_KEY: &str = "AWS_ACCESS_KEY_ID";
const SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";
const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

impl SageMakerClients {
    /// Clients built per region and identity (sending to `endpoint_url` when given), or
    /// `fixed` for every call.
    pub fn new(fixed: Option<Client>, endpoint_url: Option<String>) -> Self {
        Self { fixed, endpoint_url, built: Mutex::new(HashMap::new()) }
    }

    /// The client for a job's backend: its region, and the keys of its `credentialsSecretRef`
    /// or the operator's own identity.
    pub async fn client(
        &self,
        ctx: &Context,
        namespace: &str,
        backend: &SageMakerBackend,
    ) -> Result<std::result::Result<Client, Unusable>> {
        if let Some(client) = &self.fixed {
            return Ok(Ok(client.clone()));
        }
        let (key, version, credentials) = match &backend.credentials_secret_ref {
            None => (backend.region.clone(), String::new(), None),
            Some(reference) => {
                let Some(secret) = ctx.fetch::<Secret>(namespace, &reference.name).await? else {
                    return Ok(Err(Unusable {
                        reason: "CredentialsSecretNotFound",
                        message: format!(
                            "Secret {:?} (spec.backend.sagemaker.credentialsSecretRef) does not exist in namespace {namespace}",
                            reference.name
                        ),
                    }));
                };
                let credentials = match secret_credentials(&secret) {
                    Ok(credentials) => credentials,
                    Err(message) => return Ok(Err(Unusable { reason: "CredentialsSecretInvalid", message })),
                };
                let key = format!("{}|{namespace}/{}", backend.region, reference.name);
                (key, secret.resource_version().unwrap_or_default(), Some(credentials))
            }
        };
        if let Some((built_from, client)) = self.built.lock().expect("clients lock").get(&key)
            && *built_from == version
        {
            return Ok(Ok(client.clone()));
        }
        let shared = sdk_config(Some(&backend.region), credentials).await;
        let client = match Client::new(&shared, self.endpoint_url.as_deref()) {
            Ok(client) => client,
            Err(message) => return Ok(Err(Unusable { reason: "SageMakerEndpointInvalid", message })),
        };
        self.built.lock().expect("clients lock").insert(key, (version, client.clone()));
        Ok(Ok(client))
    }
}

/// The keys a credentials Secret holds.
fn secret_credentials(secret: &Secret) -> std::result::Result<Credentials, String> {
    let data = secret.data.clone().unwrap_or_default();
    let value = |key: &str| {
        data.get(key).map(|v| String::from_utf8_lossy(&v.0).trim().to_string()).filter(|v| !v.is_empty())
    };
    match (value(ACCESS_KEY), value(SECRET_KEY)) {
        (Some(access), Some(secret_key)) => {
            Ok(Credentials::new(access, secret_key, value(SESSION_TOKEN), None, "credentialsSecretRef"))
        }
        _ => Err(format!(
            "Secret {:?} (spec.backend.sagemaker.credentialsSecretRef) needs the keys {ACCESS_KEY} and {SECRET_KEY}",
            secret.name_any()
        )),
    }
}

/// Sorts a failed call: what the status should say, or an error to retry with backoff.
fn sort(op: &'static str, name: &str, error: CallError) -> Result<Refusal> {
    if error.is_transient() || !matches!(error, CallError::Service { .. }) {
        return Err(Error::SageMaker { op, name: name.into(), message: error.to_string() });
    }
    Ok(match error.code() {
        "ResourceLimitExceeded" => Refusal::Quota(error.to_string()),
        _ => Refusal::Rejected(error.to_string()),
    })
}

/// A training job that does not exist: SageMaker says so with ResourceNotFound, or with a
/// ValidationException ("Requested resource not found", "Could not find training job").
fn is_missing(error: &CallError) -> bool {
    let CallError::Service { code, message, .. } = error else { return false };
    let message = message.to_ascii_lowercase();
    match code.as_str() {
        "ResourceNotFound" => true,
        "ValidationException" => message.contains("not found") || message.contains("could not find"),
        _ => false,
    }
}

/// DescribeTrainingJob: the job, or `None` when there is none of that name.
pub async fn describe_training_job(
    client: &Client,
    name: &str,
) -> Result<std::result::Result<Option<TrainingJobDescription>, Refusal>> {
    match client.call("DescribeTrainingJob", &json!({"TrainingJobName": name})).await {
        Ok(output) => match serde_json::from_value(output) {
            Ok(description) => Ok(Ok(Some(description))),
            Err(e) => Err(Error::SageMaker {
                op: "DescribeTrainingJob",
                name: name.into(),
                message: format!("an answer the operator cannot read: {e}"),
            }),
        },
        Err(error) if is_missing(&error) => Ok(Ok(None)),
        Err(error) => sort("DescribeTrainingJob", name, error).map(Err),
    }
}

/// CreateTrainingJob's input for a request.
fn create_input(request: &TrainingJobRequest) -> Value {
    let metrics: Vec<Value> = RESULT_METRICS
        .iter()
        .map(|(metric, field)| json!({"Name": metric, "Regex": metric_regex(field)}))
        .collect();
    let channels: Vec<Value> = request
        .channels
        .iter()
        .map(|(name, prefix)| {
            json!({"ChannelName": name, "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": prefix,
                "S3DataDistributionType": "FullyReplicated"
            }}})
        })
        .collect();
    let mut stopping = json!({"MaxRuntimeInSeconds": request.max_runtime_seconds});
    if let Some(wait) = request.max_wait_seconds {
        stopping["MaxWaitTimeInSeconds"] = json!(wait);
    }
    let tags: Vec<Value> =
        request.tags.iter().map(|(key, value)| json!({"Key": key, "Value": value})).collect();
    json!({
        "TrainingJobName": request.name,
        "RoleArn": request.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": request.image,
            "TrainingInputMode": "File",
            "MetricDefinitions": metrics,
        },
        "HyperParameters": {CONFIG_HYPERPARAMETER: request.config},
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": request.output_path},
        "ResourceConfig": {
            "InstanceType": request.instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": VOLUME_GB,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": request.spot,
        "Tags": tags,
    })
}

/// CreateTrainingJob. A job of the same name created meanwhile (by this operator's previous
/// leader) counts as created.
pub async fn create_training_job(
    client: &Client,
    request: &TrainingJobRequest,
) -> Result<std::result::Result<(), Refusal>> {
    match client.call("CreateTrainingJob", &create_input(request)).await {
        Ok(_) => Ok(Ok(())),
        Err(error) if error.code() == "ResourceInUse" => Ok(Ok(())),
        Err(error) => sort("CreateTrainingJob", &request.name, error).map(Err),
    }
}

/// StopTrainingJob.
pub async fn stop_training_job(client: &Client, name: &str) -> Result<std::result::Result<(), Refusal>> {
    match client.call("StopTrainingJob", &json!({"TrainingJobName": name})).await {
        Ok(_) => Ok(Ok(())),
        Err(error) if is_missing(&error) => Ok(Ok(())),
        Err(error) => sort("StopTrainingJob", name, error).map(Err),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta { name: Some("aws".into()), ..Default::default() },
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn missing_jobs_quotas_and_refusals_are_told_apart() {
        let service = |code: &str, message: &str| CallError::Service {
            status: 400,
            code: code.into(),
            message: message.into(),
        };
        assert!(is_missing(&service("ValidationException", "Requested resource not found.")));
        assert!(!is_missing(&service("ValidationException", "RoleArn is invalid")));
        assert_eq!(
            sort("CreateTrainingJob", "j", service("ResourceLimitExceeded", "ml.g5.2xlarge: 0 of 0"))
                .unwrap(),
            Refusal::Quota("ResourceLimitExceeded: ml.g5.2xlarge: 0 of 0".into())
        );
        assert_eq!(
            sort("CreateTrainingJob", "j", service("AccessDeniedException", "not allowed")).unwrap(),
            Refusal::Rejected("AccessDeniedException: not allowed".into())
        );
        let retried =
            sort("DescribeTrainingJob", "j", CallError::Unanswered("timed out".into())).unwrap_err();
        assert_eq!(retried.reason(), "SageMakerUnavailable");
    }

    #[test]
    fn a_credentials_secret_needs_both_keys() {
        let keys = secret_credentials(&secret(&[
            (ACCESS_KEY, "AKIA"),
            (SECRET_KEY, "s3cr3t\n"),
            (SESSION_TOKEN, "t"),
        ]))
        .unwrap();
        assert_eq!(
            (keys.access_key_id(), keys.secret_access_key(), keys.session_token()),
            ("AKIA", "s3cr3t", Some("t"))
        );
        let error = secret_credentials(&secret(&[(ACCESS_KEY, "AKIA")])).unwrap_err();
        assert!(error.contains("\"aws\"") && error.contains(SECRET_KEY), "{error}");
    }
}
