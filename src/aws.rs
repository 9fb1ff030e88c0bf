//! The AWS SDK as the crate's clients share it (S3 for artifacts; SageMaker's calls are signed
//! with its credentials, operator::training::sagemaker::client): the
//! usual configuration chain (environment, profile, web identity, Pod Identity, instance
//! profile) or keys read from a Secret, HTTPS through rustls with ring (the crate's one TLS
//! stack), and SDK errors said in the service's own words.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// The shared SDK configuration: `region` and `credentials` when given, the usual chain's
/// otherwise. Service endpoints follow the SDK's settings (`AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_<SERVICE>`), so every client can be pointed at an emulator.
pub async fn sdk_config(region: Option<&str>, credentials: Option<Credentials>) -> SdkConfig {
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    loader.load().await
}

/// The service's error code (`ThrottlingException`, `AccessDeniedException`, ...), when the
/// service answered with one.
pub fn error_code<E, R>(error: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// An SDK error said with the service's code and message, which name the actual problem
/// (`NoSuchBucket`, `AccessDenied`, ...), not just "service error"; other failures (no
/// connection, a timeout) with their chain of causes.
pub fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            format!(
                "{}: {}",
                inner.code().unwrap_or("error"),
                inner.message().unwrap_or("the service refused the request")
            )
        }
        other => causes(other),
    }
}

/// An error with its chain of causes, each after a colon.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}
