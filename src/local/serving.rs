//! The endpoints `twin up` serves, together in this process until Ctrl-C or SIGTERM: each one's
//! status printed as it loads (Deploying), serves (Ready, or Degraded when it serves its base
//! model only) or fails, the URLs said once all have loaded, and the gateways stopped gracefully
//! (requests under way finish) and recorded as stopped.

use std::net::TcpListener;
use std::time::Duration;

use futures::future::select_all;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::endpoint::Plan;
use super::manifest::Located;
use super::state::Status;
use crate::api::endpoint::EndpointPhase;

/// An endpoint to serve: its plan and the address taken for it.
pub struct ToServe {
    /// The TwinEndpoint.
    pub resource: Located,
    /// How it is served.
    pub plan: Plan,
    /// The address it listens on.
    pub listener: TcpListener,
    /// The base URL of that address (`http://127.0.0.1:8080`).
    pub url: String,
}

/// How serving ended.
pub struct Ended {
    /// Every endpoint served what it was asked to serve (Ready) until stopped.
    pub all_reached: bool,
    /// Stopped while an endpoint was still loading.
    pub interrupted: bool,
}

/// An endpoint being served.
struct Serving {
    resource: Located,
    url: String,
    serving: String,
    degraded: Option<(String, String)>,
    revision: Option<String>,
    ready: oneshot::Receiver<String>,
    task: JoinHandle<Result<(), String>>,
    /// Whether it answered /readyz (and so is recorded as stopped at the end).
    served: bool,
    /// Whether its gateway has ended.
    ended: bool,
}

/// The status of a gateway that ended on its own, with why.
fn failed(result: Result<Result<(), String>, tokio::task::JoinError>) -> Status {
    match result {
        Ok(Ok(())) => Status::new(EndpointPhase::Failed, "GatewayStopped", "the gateway stopped serving"),
        Ok(Err(message)) => Status::new(EndpointPhase::Failed, "GatewayFailed", message),
        Err(error) => {
            Status::new(EndpointPhase::Failed, "GatewayFailed", format!("the gateway crashed: {error}"))
        }
    }
}

/// Serves `endpoints` until a stop request (or until every gateway has failed), reporting each
/// status through `report`.
pub async fn serve_until_stopped(
    endpoints: Vec<ToServe>,
    report: &mut impl FnMut(&Located, Status) -> Result<(), String>,
) -> Result<Ended, String> {
    let (stop, stopped) = watch::channel(false);
    let mut running = Vec::new();
    for endpoint in endpoints {
        let api = format!("{}/v1", endpoint.url);
        let loading = format!("loading {} to serve at {api}", endpoint.plan.serving);
        let revision = endpoint.plan.revision.clone();
        report(
            &endpoint.resource,
            Status::new(EndpointPhase::Deploying, "Loading", loading).with_revision(revision.clone()),
        )?;
        let (announce, ready) = oneshot::channel();
        let mut stopped = stopped.clone();
        let until_stopped = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let gateway =
            crate::serve::serve(endpoint.plan.args, endpoint.listener, until_stopped, Some(announce));
        running.push(Serving {
            resource: endpoint.resource,
            url: endpoint.url,
            serving: endpoint.plan.serving,
            degraded: endpoint.plan.degraded,
            revision,
            ready,
            task: tokio::spawn(gateway),
            served: false,
            ended: false,
        });
    }
    let mut all_reached = true;
    let mut interrupted = false;
    for endpoint in &mut running {
        let status = tokio::select! {
            readiness = &mut endpoint.ready => match readiness {
                Ok(readiness) => {
                    endpoint.served = true;
                    let api = format!("{}/v1", endpoint.url);
                    let (phase, reason, why) = match &endpoint.degraded {
                        Some((reason, why)) => (EndpointPhase::Degraded, reason.as_str(), format!("; {why}")),
                        None => (EndpointPhase::Ready, "Serving", String::new()),
                    };
                    all_reached &= phase == EndpointPhase::Ready;
                    tracing::info!(endpoint = %endpoint.resource.twin.handle(), %readiness, "serving");
                    Status::new(phase, reason, format!("serving {} at {api}{why}", endpoint.serving))
                        .with_revision(endpoint.revision.clone())
                }
                // The gateway ended before it was ready: its task says why.
                Err(_) => {
                    endpoint.ended = true;
                    all_reached = false;
                    failed((&mut endpoint.task).await)
                }
            },
            _ = crate::shutdown::requested() => {
                interrupted = true;
                break;
            }
        };
        report(&endpoint.resource, status)?;
    }
    let live: Vec<&Serving> = running.iter().filter(|e| e.served && !e.ended).collect();
    if !interrupted && !live.is_empty() {
        let first = &live[0].url;
        println!(
            "twin up is serving {} endpoint{}. Chat with `twin chat {first}/v1`, or open {first}/ in a browser; \
             Ctrl-C stops.",
            live.len(),
            if live.len() == 1 { "" } else { "s" }
        );
        loop {
            let (indices, tasks): (Vec<usize>, Vec<&mut JoinHandle<_>>) = running
                .iter_mut()
                .enumerate()
                .filter(|(_, e)| !e.ended)
                .map(|(index, e)| (index, &mut e.task))
                .unzip();
            if tasks.is_empty() {
                break;
            }
            tokio::select! {
                (result, position, _) = select_all(tasks) => {
                    all_reached = false;
                    let endpoint = &mut running[indices[position]];
                    endpoint.ended = true;
                    report(&endpoint.resource, failed(result))?;
                }
                _ = crate::shutdown::requested() => break,
            }
        }
    }
    let _ = stop.send(true);
    for endpoint in running.iter_mut().filter(|e| !e.ended) {
        // Requests under way finish; a gateway that does not end in time is left behind.
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut endpoint.task).await;
        let status = if endpoint.served {
            Status::new(
                EndpointPhase::Pending,
                "Stopped",
                format!("served at {}/v1 until twin up stopped; twin up again serves it, reusing what is unchanged", endpoint.url),
            )
            .with_revision(endpoint.revision.clone())
        } else {
            Status::new(
                EndpointPhase::Pending,
                "Interrupted",
                "stopped (Ctrl-C or SIGTERM) while it was loading",
            )
        };
        report(&endpoint.resource, status)?;
    }
    Ok(Ended { all_reached, interrupted })
}
