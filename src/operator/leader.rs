//! Leader election on a `coordination.k8s.io/v1` Lease: one replica leads and reconciles; the
//! others stand by and take over once the leader has not renewed for the lease duration. Expiry
//! is judged by the local clock since the Lease was last seen to change (not by the leader's
//! clock), as client-go does, so clock skew between nodes does not matter.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// This replica's view of the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// No answer from the Lease API yet.
    Unknown,
    /// This replica holds the Lease.
    Leading,
    /// Another replica holds it; this one is ready to take over.
    StandingBy,
    /// The Lease API has not answered for a while.
    Failing,
}

/// Runs an election for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<(String, Instant)>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl LeaderElector {
    /// An elector for Lease `name` in `api`'s namespace.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self { api, name: name.into(), identity: identity.into(), duration, observed: None }
    }

    /// Tries to acquire or renew the Lease once. `Ok(true)` when this replica leads.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        // The record's identity: holder and renew time. A change restarts the expiry clock.
        let record = format!("{holder}@{:?}", spec.renew_time);
        match &self.observed {
            Some((seen, _)) if *seen == record => {}
            _ => self.observed = Some((record, Instant::now())),
        }
        let held_by_me = holder == self.identity;
        let lease_seconds = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.duration);
        let expired =
            holder.is_empty() || self.observed.as_ref().is_some_and(|(_, at)| at.elapsed() > lease_seconds);
        if !held_by_me && !expired {
            return Ok(false);
        }
        if !held_by_me {
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(seconds);
        // The resource version in `lease` makes this a compare-and-swap: a concurrent winner
        // turns it into a 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up so a stand-by takes over at once (on shutdown).
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        self.api.replace(&self.name, &PostParams::default(), &lease).await.map(drop)
    }

    /// Campaigns until `shutdown`, publishing this replica's leadership; releases the Lease on
    /// the way out when it leads.
    pub async fn run(mut self, state: watch::Sender<Leadership>, shutdown: CancellationToken) {
        let retry = self.duration / 3;
        let mut last_success = Instant::now();
        loop {
            let next = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_success = Instant::now();
                    Leadership::Leading
                }
                Ok(false) => {
                    last_success = Instant::now();
                    Leadership::StandingBy
                }
                Err(error) => {
                    warn!(lease = %self.name, "leader election: the Lease API failed: {error}");
                    // A leader that cannot renew within the lease duration must stop reconciling:
                    // a stand-by may already have taken over.
                    if last_success.elapsed() >= self.duration {
                        Leadership::Failing
                    } else {
                        *state.borrow()
                    }
                }
            };
            if *state.borrow() != next {
                info!(lease = %self.name, identity = %self.identity, "leadership: {next:?}");
                state.send_replace(next);
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if *state.borrow() == Leadership::Leading {
            state.send_replace(Leadership::StandingBy);
            match self.release().await {
                Ok(()) => info!(lease = %self.name, "released the leader Lease"),
                Err(error) => warn!(lease = %self.name, "could not release the leader Lease: {error}"),
            }
        }
    }
}
