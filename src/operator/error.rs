//! The operator's errors, each named after the action that failed. A *permanent* one (a child
//! or a status the API server refuses, a bug) is written to the object's status and an Event,
//! and the object waits for a change; a *transient* one (the API server or the network) is
//! retried with [`crate::backoff::reconcile_retries`].

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an object the reconcile depends on (a referenced twin, a ConfigMap).
    #[error("fetching {kind} {name}: {}", describe(source))]
    Fetch {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// Listing the existing children of one kind.
    #[error("listing the {kind}s of this object: {}", describe(source))]
    ListChildren {
        /// The kind.
        kind: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// Applying a desired child.
    #[error("applying {kind} {name}: {}", describe(source))]
    ApplyChild {
        /// The child's kind.
        kind: String,
        /// The child's name.
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// Deleting a child the builder no longer wants.
    #[error("deleting {kind} {name}: {}", describe(source))]
    DeleteChild {
        /// The child's kind.
        kind: String,
        /// The child's name.
        name: String,
        /// What the API server said.
        source: kube::Error,
    },
    /// Writing the object's status.
    #[error("writing the status: {}", describe(source))]
    WriteStatus {
        /// What the API server said.
        source: kube::Error,
    },
    /// Adding or removing the operator's finalizer.
    #[error("{action} the finalizer {finalizer}: {}", describe(source))]
    Finalizer {
        /// `adding` or `removing`.
        action: &'static str,
        /// The finalizer's name.
        finalizer: &'static str,
        /// What the API server said.
        source: kube::Error,
    },
    /// A call to AWS SageMaker failed for a reason that may pass: throttled beyond the SDK's
    /// own retries, unreachable, a server error.
    #[error("SageMaker {op} {name}: {message}")]
    SageMaker {
        /// The API call.
        op: &'static str,
        /// The training job.
        name: String,
        /// What the SDK or the service said.
        message: String,
    },
    /// An object could not be serialised (a bug, not a user error).
    #[error("serialising {what}: {source}")]
    Serialize {
        /// What was being serialised.
        what: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
    /// The object has no name or namespace (twins are namespaced; a bug or a corrupt cache).
    #[error("the object has no {0}")]
    Unidentified(&'static str),
}

/// The result of operator work.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the API server said, in its own words when it said something.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("the API server answered {} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

/// Answers the API server gives to a request that will fail the same way until the object or
/// the operator's permissions change.
fn refused(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if matches!(status.code, 400 | 403 | 404 | 405 | 422))
}

impl Error {
    /// Permanent errors wait for a change of the object; transient ones are retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Fetch { source, .. }
            | Error::ListChildren { source, .. }
            | Error::ApplyChild { source, .. }
            | Error::DeleteChild { source, .. }
            | Error::WriteStatus { source }
            | Error::Finalizer { source, .. } => refused(source),
            Error::Serialize { .. } | Error::Unidentified(_) => true,
            Error::SageMaker { .. } => false,
        }
    }

    /// A CamelCase reason, for the Ready condition, Events and metrics labels.
    pub fn reason(&self) -> &'static str {
        let api = |source: &kube::Error, refused_reason: &'static str| match source {
            kube::Error::Api(status) => match status.code {
                403 => "Forbidden",
                409 => "Conflict",
                429 => "TooManyRequests",
                500..=599 => "ApiServerError",
                _ if refused(source) => refused_reason,
                _ => "ApiError",
            },
            _ => "ApiUnreachable",
        };
        match self {
            Error::ApplyChild { source, .. } => api(source, "ChildRejected"),
            Error::WriteStatus { source } => api(source, "StatusRejected"),
            Error::Fetch { source, .. }
            | Error::ListChildren { source, .. }
            | Error::DeleteChild { source, .. }
            | Error::Finalizer { source, .. } => api(source, "RequestRejected"),
            Error::SageMaker { .. } => "SageMakerUnavailable",
            Error::Serialize { .. } => "SerializationFailed",
            Error::Unidentified(_) => "Unidentified",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure(message, "Invalid").with_code(code).boxed())
    }

    #[test]
    fn refusals_are_permanent_and_name_the_child() {
        let rejected = Error::ApplyChild {
            kind: "CronJob".into(),
            name: "paul-refresh".into(),
            source: api(422, "spec.schedule: Invalid value: \"61 * * * *\""),
        };
        assert!(rejected.is_permanent());
        assert_eq!(rejected.reason(), "ChildRejected");
        assert_eq!(
            rejected.to_string(),
            "applying CronJob paul-refresh: the API server answered 422 Invalid: spec.schedule: Invalid value: \"61 * * * *\""
        );
    }

    #[test]
    fn server_errors_and_conflicts_are_transient() {
        for code in [409, 429, 500, 503] {
            let error = Error::WriteStatus { source: api(code, "try again") };
            assert!(!error.is_permanent(), "{code}");
        }
        assert_eq!(Error::WriteStatus { source: api(500, "x") }.reason(), "ApiServerError");
        assert_eq!(Error::WriteStatus { source: api(403, "x") }.reason(), "Forbidden");
    }
}
