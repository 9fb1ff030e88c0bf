//! Reaching SageMaker: one client per region and identity (the operator's own AWS chain, or
//! the keys of a job's `credentialsSecretRef`), kept while the Secret is unchanged; and the
//! three calls a run makes, with SageMaker's answers sorted into what the status says
//! (a quota, a refusal) and what is retried (throttling past the SDK's own retries, a server
//! error, no connection).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_sagemaker::Client;
use aws_sdk_sagemaker::config::Credentials;
use aws_sdk_sagemaker::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sagemaker::operation::describe_training_job::DescribeTrainingJobOutput;
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, Channel, DataSource, MetricDefinition, OutputDataConfig, ResourceConfig,
    S3DataDistribution, S3DataSource, S3DataType, StoppingCondition, Tag, TrainingInputMode,
    TrainingInstanceType,
};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::request::{CONFIG_HYPERPARAMETER, RESULT_METRICS, TrainingJobRequest, VOLUME_GB, metric_regex};
use crate::api::training::SageMakerBackend;
use crate::aws::{describe, error_code, sdk_config};
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
        let mut config = aws_sdk_sagemaker::config::Builder::from(&shared);
        if let Some(endpoint) = &self.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        let client = Client::from_conf(config.build());
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
fn sort<E>(op: &'static str, name: &str, error: SdkError<E>) -> Result<Refusal>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let retry = |error: &SdkError<E>| Error::SageMaker { op, name: name.into(), message: describe(error) };
    let SdkError::ServiceError(service) = &error else { return Err(retry(&error)) };
    let code = error_code(&error).unwrap_or_default();
    let throttled = code.contains("Throttl") || code == "TooManyRequestsException";
    if throttled || service.raw().status().is_server_error() {
        return Err(retry(&error));
    }
    Ok(match code {
        "ResourceLimitExceeded" => Refusal::Quota(describe(&error)),
        _ => Refusal::Rejected(describe(&error)),
    })
}

/// A training job that does not exist: SageMaker says so with ResourceNotFound, or with a
/// ValidationException ("Requested resource not found", "Could not find training job").
fn is_missing<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    let SdkError::ServiceError(service) = error else { return false };
    let message = service.err().message().unwrap_or_default().to_ascii_lowercase();
    match service.err().code() {
        Some("ResourceNotFound") => true,
        Some("ValidationException") => message.contains("not found") || message.contains("could not find"),
        _ => false,
    }
}

/// DescribeTrainingJob: the job, or `None` when there is none of that name.
pub async fn describe_training_job(
    client: &Client,
    name: &str,
) -> Result<std::result::Result<Option<DescribeTrainingJobOutput>, Refusal>> {
    match client.describe_training_job().training_job_name(name).send().await {
        Ok(output) => Ok(Ok(Some(output))),
        Err(error) if is_missing(&error) => Ok(Ok(None)),
        Err(error) => sort("DescribeTrainingJob", name, error).map(Err),
    }
}

/// CreateTrainingJob. A job of the same name created meanwhile (by this operator's previous
/// leader) counts as created.
pub async fn create_training_job(
    client: &Client,
    request: &TrainingJobRequest,
) -> Result<std::result::Result<(), Refusal>> {
    let mut algorithm = AlgorithmSpecification::builder()
        .training_image(&request.image)
        .training_input_mode(TrainingInputMode::File);
    for (metric, field) in RESULT_METRICS {
        let definition = MetricDefinition::builder().name(metric).regex(metric_regex(field)).build();
        algorithm = algorithm.metric_definitions(definition);
    }
    let channels = request.channels.iter().map(|(name, prefix)| {
        let source = S3DataSource::builder()
            .s3_data_type(S3DataType::S3Prefix)
            .s3_uri(prefix)
            .s3_data_distribution_type(S3DataDistribution::FullyReplicated)
            .build();
        Channel::builder()
            .channel_name(name)
            .data_source(DataSource::builder().s3_data_source(source).build())
            .build()
    });
    let mut stopping =
        StoppingCondition::builder().max_runtime_in_seconds(request.max_runtime_seconds as i32);
    if let Some(wait) = request.max_wait_seconds {
        stopping = stopping.max_wait_time_in_seconds(wait as i32);
    }
    let tags = request.tags.iter().map(|(key, value)| Tag::builder().key(key).value(value).build());
    let result = client
        .create_training_job()
        .training_job_name(&request.name)
        .role_arn(&request.role_arn)
        .algorithm_specification(algorithm.build())
        .hyper_parameters(CONFIG_HYPERPARAMETER, &request.config)
        .set_input_data_config(Some(channels.collect()))
        .output_data_config(OutputDataConfig::builder().s3_output_path(&request.output_path).build())
        .resource_config(
            ResourceConfig::builder()
                .instance_type(TrainingInstanceType::from(request.instance_type.as_str()))
                .instance_count(1)
                .volume_size_in_gb(VOLUME_GB)
                .build(),
        )
        .stopping_condition(stopping.build())
        .enable_managed_spot_training(request.spot)
        .set_tags(Some(tags.collect()))
        .send()
        .await;
    match result {
        Ok(_) => Ok(Ok(())),
        Err(error) if error_code(&error) == Some("ResourceInUse") => Ok(Ok(())),
        Err(error) => sort("CreateTrainingJob", &request.name, error).map(Err),
    }
}

/// StopTrainingJob.
pub async fn stop_training_job(client: &Client, name: &str) -> Result<std::result::Result<(), Refusal>> {
    match client.stop_training_job().training_job_name(name).send().await {
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
