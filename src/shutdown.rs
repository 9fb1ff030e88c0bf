//! The one way a long-running command (`twin operator`, `twin serve`, `twin up`) hears that it
//! should stop: Ctrl-C (SIGINT) or SIGTERM, which Kubernetes and process supervisors send.

/// Resolves at the first Ctrl-C or SIGTERM. Where SIGTERM cannot be listened for, Ctrl-C alone.
pub async fn requested() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
