//! The operator's errors, split into permanent ones (the spec must change: a Failed condition,
//! no retry) and transient ones (the API or network: retried with backoff and jitter).

use std::time::Duration;

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API request failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The object cannot be reconciled as written.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// An object could not be serialised (a bug, not a user error).
    #[error("failed to serialise {what}: {source}")]
    Serialize {
        /// What was being serialised.
        what: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
    /// The object has no namespace (twins are namespaced; this is a bug or a corrupt cache).
    #[error("object has no namespace")]
    MissingNamespace,
}

/// The result of operator work.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Permanent errors wait for a change of the object; transient ones are retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(status)) => matches!(status.code, 400 | 403 | 404 | 405 | 422),
            Error::Kube(_) => false,
            Error::InvalidSpec(_) | Error::Serialize { .. } | Error::MissingNamespace => true,
        }
    }

    /// A CamelCase reason, for metrics labels and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                422 => "Invalid",
                429 => "TooManyRequests",
                500..=599 => "ApiServerError",
                _ => "ApiError",
            },
            Error::Kube(_) => "ApiUnreachable",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Serialize { .. } => "SerializationFailed",
            Error::MissingNamespace => "MissingNamespace",
        }
    }
}

/// Exponential backoff from 1 s to 5 min with ±20% jitter, by consecutive failure count.
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << failures.min(9)).min(Duration::from_secs(300));
    // Jitter from the clock's nanoseconds: cheap, and enough to spread retries of many objects.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let factor = 0.8 + 0.4 * (nanos % 1000) as f64 / 1000.0;
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_ceiling_with_jitter() {
        assert!(backoff(0) >= Duration::from_millis(800) && backoff(0) <= Duration::from_millis(1200));
        assert!(backoff(3) >= Duration::from_millis(6400) && backoff(3) <= Duration::from_millis(9600));
        assert!(backoff(30) <= Duration::from_secs(360) && backoff(30) >= Duration::from_secs(240));
    }

    #[test]
    fn api_errors_are_sorted_into_permanent_and_transient() {
        let api = |code: u16| {
            Error::Kube(kube::Error::Api(kube::core::Status::failure("x", "Y").with_code(code).boxed()))
        };
        assert!(api(422).is_permanent());
        assert!(!api(500).is_permanent());
        assert!(!api(409).is_permanent());
        assert_eq!(api(500).reason(), "ApiServerError");
        assert!(Error::InvalidSpec("x".into()).is_permanent());
    }
}
