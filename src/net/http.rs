//! The crawlers' HTTP client: every resolved address passes the [`NetworkGuard`] (redirects
//! re-resolve, so they pass it too), a clear User-Agent, per-request timeouts, a size limit on
//! bodies, and retries with backoff on transient failures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::guard::NetworkGuard;

/// How the crawlers fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Networks allowed besides public addresses.
    pub guard: NetworkGuard,
    /// The User-Agent header.
    pub user_agent: String,
    /// Time limit of one request, connection included.
    pub timeout: Duration,
    /// Largest body read, in bytes.
    pub max_bytes: u64,
    /// Attempts for transient failures (timeouts, 5xx, 429).
    pub attempts: u32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            guard: NetworkGuard::default(),
            user_agent: concat!(
                "twin-operator/",
                env!("CARGO_PKG_VERSION"),
                " (+https://github.com/twin-operator/twin-operator)"
            )
            .into(),
            timeout: Duration::from_secs(20),
            max_bytes: 10 * 1024 * 1024,
            attempts: 3,
        }
    }
}

/// Resolves with the system resolver, then drops every address the guard refuses; a name
/// with none left fails with the guard's reason.
pub struct GuardedResolver {
    /// The networks allowed.
    pub guard: NetworkGuard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check(addr.ip()) {
                    Ok(()) => true,
                    Err(refused) => {
                        refusal = Some(refused);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let reason = refusal
                    .map(|r| format!("{host}: {r}"))
                    .unwrap_or_else(|| format!("{host} has no address"));
                return Err(reason.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Why a fetch failed: said so that a person can act on it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not http(s), or names an address the guard refuses.
    #[error("{0}")]
    Refused(String),
    /// The server answered with an error status.
    #[error("HTTP {status} from {url}")]
    Status {
        /// The status code.
        status: u16,
        /// The URL.
        url: String,
    },
    /// The body is larger than the limit.
    #[error("{url} is larger than the {limit}-byte limit")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The request failed (connection, timeout, redirect loop).
    #[error("cannot fetch {url}: {reason}")]
    Request {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// A fetched resource.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Fetched {
    /// The final URL, after redirects.
    pub url: String,
    /// The Content-Type header.
    pub content_type: String,
    pub body: Vec<u8>,
}

/// The crawlers' client.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    options: FetchOptions,
}

impl Fetcher {
    /// A client with the guard as its resolver.
    pub fn new(options: FetchOptions) -> Result<Self, String> {
        // rustls needs a process-wide crypto provider; ring is the one kube uses too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::limited(5))
            .dns_resolver(Arc::new(GuardedResolver { guard: options.guard.clone() }))
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client, options })
    }

    /// GETs a URL, with retries on transient failures and the body limit enforced while reading.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        self.get_limited(url, self.options.max_bytes).await
    }

    /// The options this client was built with.
    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// GETs a URL like [`Fetcher::get`], with its own body limit (archives are larger than pages).
    pub async fn get_limited(&self, url: &str, limit: u64) -> Result<Fetched, FetchError> {
        let parsed = self.check_url(url)?;
        self.retrying(|| self.try_get(parsed.clone(), limit)).await
    }

    /// Runs a request until it succeeds, fails for good, or has used its attempts, waiting
    /// as [`crate::backoff::request_retries`] says between attempts.
    async fn retrying<T, F, Fut>(&self, request: F) -> Result<T, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        request.retry(crate::backoff::request_retries(self.options.attempts)).when(is_transient).await
    }

    /// Streams a URL into a file (a model's weights: too large to hold in memory), with an
    /// optional bearer token and the body limit; returns the bytes written. Retries transient
    /// failures from the start.
    pub async fn download(
        &self,
        url: &str,
        destination: &std::path::Path,
        limit: u64,
        bearer: Option<&str>,
    ) -> Result<u64, FetchError> {
        use tokio::io::AsyncWriteExt;
        let parsed = self.check_url(url)?;
        let file_error = |e: std::io::Error| FetchError::Request {
            url: parsed.to_string(),
            reason: format!("cannot write {}: {e}", destination.display()),
        };
        self.retrying(|| async {
            let mut request = self.client.get(parsed.clone()).timeout(Duration::from_secs(3600));
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            let mut response = request.send().await.map_err(|e| request_error(&parsed, e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status { status: status.as_u16(), url: parsed.to_string() });
            }
            let mut file = tokio::fs::File::create(destination).await.map_err(file_error)?;
            let mut written = 0u64;
            while let Some(chunk) = response.chunk().await.map_err(|e| request_error(&parsed, e))? {
                written += chunk.len() as u64;
                if written > limit {
                    return Err(FetchError::TooLarge { url: parsed.to_string(), limit });
                }
                file.write_all(&chunk).await.map_err(file_error)?;
            }
            file.sync_all().await.map_err(file_error)?;
            Ok(written)
        })
        .await
    }

    /// POSTs JSON (an API call, not a crawl) through the same guard, with its own time limit,
    /// an optional bearer token, and retries on transient failures; returns the JSON answer.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<serde_json::Value, FetchError> {
        let parsed = self.check_url(url)?;
        self.retrying(|| async {
            let mut request = self
                .client
                .post(parsed.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .timeout(timeout);
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| request_error(&parsed, e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status { status: status.as_u16(), url: parsed.to_string() });
            }
            let bytes = response.bytes().await.map_err(|e| request_error(&parsed, e))?;
            serde_json::from_slice(&bytes).map_err(|e| FetchError::Request {
                url: parsed.to_string(),
                reason: format!("the answer is not JSON: {e}"),
            })
        })
        .await
    }

    /// Parses a URL, refusing other schemes and literal addresses the guard refuses (the
    /// resolver only sees names).
    fn check_url(&self, url: &str) -> Result<reqwest::Url, FetchError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| FetchError::Refused(format!("invalid URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::Refused(format!("{url}: only http and https URLs are fetched")));
        }
        if let Some(host) = parsed.host_str()
            && let Ok(ip) = host.trim_matches(['[', ']']).parse()
        {
            self.options.guard.check(ip).map_err(|r| FetchError::Refused(format!("{url}: {r}")))?;
        }
        Ok(parsed)
    }

    async fn try_get(&self, url: reqwest::Url, limit: u64) -> Result<Fetched, FetchError> {
        let shown = url.to_string();
        let request_error = |e| request_error(&url, e);
        let mut response = self.client.get(url.clone()).send().await.map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status { status: status.as_u16(), url: shown });
        }
        if response.content_length().is_some_and(|length| length > limit) {
            return Err(FetchError::TooLarge { url: shown, limit });
        }
        let final_url = response.url().to_string();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge { url: shown, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { url: final_url, content_type, body })
    }
}

/// A request error as a [`FetchError`]: the guard's refusal (which surfaces as a resolver error
/// deep in the chain) as such, a timeout said plainly.
fn request_error(url: &reqwest::Url, e: reqwest::Error) -> FetchError {
    let mut reason = e.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(inner) = source {
        reason = inner.to_string();
        source = inner.source();
    }
    if reason.contains("refusing to connect") {
        FetchError::Refused(reason)
    } else {
        FetchError::Request {
            url: url.to_string(),
            reason: if e.is_timeout() { "timed out".into() } else { reason },
        }
    }
}

fn is_transient(error: &FetchError) -> bool {
    match error {
        FetchError::Status { status, .. } => *status == 429 || *status >= 500,
        FetchError::Request { .. } => true,
        FetchError::Refused(_) | FetchError::TooLarge { .. } => false,
    }
}
