//! moto's S3 emulator on 127.0.0.1, started per test from `.cache/moto` (which
//! `scripts/install-tools` fills) and stopped when dropped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::repo;

/// A running moto server.
pub struct Moto {
    child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Credentials for moto in this process's environment, where the SDK's chain reads them (set
/// once: every test that talks to moto in process calls this, and nothing else sets them).
pub fn test_credentials() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        // SAFETY: set once, before any test of this binary reads them.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/aws-config");
            std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials");
        }
    });
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Self {
        let packages = repo::path(".cache/moto");
        assert!(
            packages.join("moto/server.py").is_file(),
            "moto is not installed in {}: run scripts/install-tools (scripts/test does)",
            packages.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONPATH", &packages)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs moto");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "moto did not start on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, addr }
    }

    /// The endpoint URL clients use.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes an object (moto does not check signatures).
    pub async fn put(&self, bucket: &str, key: &str, body: impl Into<reqwest::Body>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = format!("{}/{bucket}/{key}", self.endpoint());
        let response = reqwest::Client::new().put(&url).body(body).send().await.unwrap();
        assert!(response.status().is_success(), "put {url}: {}", response.status());
    }

    /// Creates a bucket (moto does not check signatures).
    pub async fn create_bucket(&self, bucket: &str) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response =
            reqwest::Client::new().put(format!("{}/{bucket}", self.endpoint())).send().await.unwrap();
        assert!(response.status().is_success(), "create bucket {bucket}: {}", response.status());
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
