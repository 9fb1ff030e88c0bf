//! The crate's one backoff (backon's exponential backoff with jitter): how long the operator
//! waits before retrying a reconcile that failed for a transient reason, and how the HTTP
//! clients space their retries.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Reconciles: 1 s, doubling to 5 minutes, each delay plus up to as much again at random, so
/// that many objects failing together do not retry together.
pub fn reconcile_retries() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(300))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// HTTP requests: `attempts` in all, 250 ms before the second, doubling (with jitter).
pub fn request_retries(attempts: u32) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(attempts.saturating_sub(1) as usize)
}

/// The delay before the next try after `failures` consecutive failures (1 or more).
pub fn delay_after(policy: ExponentialBuilder, failures: u32) -> Duration {
    policy.build().nth(failures.saturating_sub(1) as usize).unwrap_or(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_retries_grow_to_a_ceiling_with_jitter() {
        let delay = |failures| delay_after(reconcile_retries(), failures);
        assert!((Duration::from_secs(1)..Duration::from_secs(2)).contains(&delay(1)));
        assert!((Duration::from_secs(8)..Duration::from_secs(16)).contains(&delay(4)));
        assert!((Duration::from_secs(300)..Duration::from_secs(600)).contains(&delay(40)));
    }

    #[test]
    fn request_retries_stop_after_the_attempts() {
        assert_eq!(request_retries(3).build().count(), 2);
        assert_eq!(request_retries(1).build().count(), 0);
    }
}
