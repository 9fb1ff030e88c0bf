//! HTTP fixtures on 127.0.0.1: an axum app served on a free port for the rest of the test.

use std::net::SocketAddr;

/// Serves `app` on a free port of 127.0.0.1 and returns its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    addr
}

/// Serves `app` on `listener` (an address taken before the app exists).
pub async fn serve_on(listener: tokio::net::TcpListener, app: axum::Router) {
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
}
