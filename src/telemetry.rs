//! Logging and tracing: JSON lines in a cluster (for log collectors), human-readable lines in a
//! terminal; and, where `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the same spans exported as
//! OpenTelemetry traces over OTLP/HTTP.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `format` is `json`, `text`, or unset (JSON unless stderr
/// is a terminal). The filter comes from `RUST_LOG`, `info` by default.
pub fn init(format: Option<&str>) {
    init_with_level(format, "info");
}

/// [`init`] with `level` (`warn`, `info`, ...) when `RUST_LOG` is unset.
pub fn init_with_level(format: Option<&str>, level: &str) {
    let _ = subscriber(format, level, None::<tracing_subscriber::layer::Identity>);
}

/// What must live as long as the process for traces to be exported; dropping it sends the
/// spans still buffered.
pub struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// [`init`], plus OTLP trace export as `service` when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Call it inside the tokio runtime.
pub fn init_with_traces(format: Option<&str>, service: &str) -> Traces {
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
    if !configured {
        init(format);
        return Traces { provider: None };
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(OtlpClient::new())
        .build();
    let provider = match exporter {
        Ok(exporter) => SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder().with_service_name(service.to_string()).build(),
            )
            .build(),
        Err(error) => {
            init(format);
            tracing::warn!("OTLP traces are off: {error}");
            return Traces { provider: None };
        }
    };
    let tracer = provider.tracer("twin-operator");
    // The gateway's per-request spans are at debug level, so that without OTLP they are
    // disabled where they are written and cost nothing on the request path (the log lines do
    // not need them); OTLP asks for them. A static filter, so each callsite is decided once.
    let spans = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("twin_operator::serve", tracing::Level::DEBUG);
    let _ = subscriber(
        format,
        "info",
        Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans)),
    );
    Traces { provider: Some(provider) }
}

fn subscriber<L>(
    format: Option<&str>,
    level: &str,
    traces: Option<L>,
) -> Result<(), tracing_subscriber::util::TryInitError>
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let json = match format {
        Some("json") => true,
        Some(_) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(traces);
    // A second init (tests) keeps the first subscriber.
    if json {
        let lines = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        registry.with(lines.with_filter(filter)).try_init()
    } else {
        let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
        registry.with(lines.with_filter(filter)).try_init()
    }
}

use tracing_subscriber::Layer as _;

/// OTLP's HTTP client: the project's reqwest, each export handed to the tokio runtime (the
/// batch processor exports from a thread of its own, outside the runtime).
#[derive(Debug)]
struct OtlpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl OtlpClient {
    fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .no_proxy()
            .build()
            .expect("a client with these settings builds");
        Self { client, runtime: tokio::runtime::Handle::current() }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: http::Request<opentelemetry_http::Bytes>,
    ) -> Result<http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut builder = self.client.request(parts.method, parts.uri.to_string()).body(body);
        for (name, value) in &parts.headers {
            builder = builder.header(name, value);
        }
        let exported = self.runtime.spawn(async move {
            let response = builder.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = exported.await??;
        let mut response = http::Response::builder().status(status);
        if let Some(map) = response.headers_mut() {
            *map = headers;
        }
        Ok(response.body(body)?)
    }
}
