//! Git's smart HTTP protocol on 127.0.0.1: `git http-backend` run as a CGI program for each
//! request, serving the bare repositories under one folder.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use super::serve;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use tokio::io::AsyncWriteExt;

/// Runs `git http-backend` for one request.
async fn cgi(root: PathBuf, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", method.as_str())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in &headers {
        let Ok(value) = value.to_str() else { continue };
        if name == "content-type" {
            command.env("CONTENT_TYPE", value);
        }
        command.env(format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_")), value);
    }
    let mut child = command.spawn().expect("git http-backend starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let split = output
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| output.stdout.windows(2).position(|w| w == b"\n\n").map(|at| (at, 2)));
    let Some((at, gap)) = split else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from(output.stderr))
            .unwrap();
    };
    let mut response = Response::builder();
    let mut status = StatusCode::OK;
    for line in String::from_utf8_lossy(&output.stdout[..at]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("status") {
            let code = value.trim().split(' ').next().unwrap_or("500");
            status = code.parse().map(|c| StatusCode::from_u16(c).unwrap()).unwrap_or(StatusCode::OK);
        } else {
            response = response.header(name.trim(), value.trim());
        }
    }
    response.status(status).body(Body::from(output.stdout[at + gap..].to_vec())).unwrap()
}

/// Serves the bare repositories under `root` at `http://ADDR/<name>.git`.
pub async fn serve(root: PathBuf) -> SocketAddr {
    let app =
        axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let root = root.clone();
            async move { cgi(root, method, uri, headers, body).await }
        });
    serve::serve(app).await
}

/// Runs `git` in a folder, panicking with its output when it fails.
pub fn git(dir: &std::path::Path, args: &[&str]) {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Paul")
        .env("GIT_AUTHOR_EMAIL", "paul@example.com")
        .env("GIT_COMMITTER_NAME", "Paul")
        .env("GIT_COMMITTER_EMAIL", "paul@example.com")
        .env("GIT_AUTHOR_DATE", "2026-11-01T08:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-11-01T08:00:00Z")
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}
