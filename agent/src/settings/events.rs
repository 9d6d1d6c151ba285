//! `agent.events` and `agent.metrics`: where decisions go and how.
use std::{net::SocketAddr, path::PathBuf};

/// Size-based rotation of a JSON lines file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotate {
    /// Rotate once the file reaches this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`events.jsonl.1` … `.keep`).
    pub keep: u32,
}

impl Default for Rotate {
    fn default() -> Self {
        Self { max_bytes: 100 << 20, keep: 5 }
    }
}

/// What is emitted for allowed decisions. Denies and audits are always
/// individual events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AllowedEvents {
    /// One `summary` event per (workload, segment, rule) and interval.
    #[default]
    Summary,
    /// One event per allowed decision (noisy on busy nodes).
    Each,
}

/// `agent.events.otlp`: an OpenTelemetry collector (OTLP/gRPC logs).
/// `Debug` leaves the header values out: they are credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// `http://host:4317` or `https://host:4317` (TLS).
    pub endpoint: String,
    /// PEM CA bundle to verify the collector (https); default: webpki roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key (mutual TLS); both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// gRPC metadata sent with every export (e.g. an auth header): the
    /// inline `headers` and those of `headers_file`, merged.
    pub headers: Vec<(String, String)>,
    /// A YAML/JSON map of headers kept out of the config file (a mounted
    /// Kubernetes Secret), read with the policy at start and every reload.
    pub headers_file: Option<PathBuf>,
    /// Extra resource attributes (host.name, k8s.node.name are always set).
    pub resource: Vec<(String, String)>,
    /// Log records per export request.
    pub batch_size: usize,
    /// Export requests in flight at once (over one HTTP/2 connection): hides
    /// the collector's round trip, which otherwise caps the event rate.
    pub concurrency: usize,
    /// Events held while the collector is slow or down; beyond it the
    /// oldest allowed events go first, then the oldest denies.
    pub queue_size: usize,
    /// Per-export deadline.
    pub timeout_ms: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            headers: Vec::new(),
            headers_file: None,
            resource: Vec::new(),
            batch_size: 512,
            concurrency: 4,
            queue_size: 65_536,
            timeout_ms: 10_000,
        }
    }
}

impl OtlpConfig {
    /// The header names, in order (what status may show).
    pub fn header_names(&self) -> Vec<String> {
        self.headers.iter().map(|(k, _)| k.clone()).collect()
    }

    /// Equal but for the header values: a reload can apply those to the
    /// running exporter (a rotated token); anything else needs a restart.
    pub fn same_but_headers(&self, other: &OtlpConfig) -> bool {
        let strip = |c: &OtlpConfig| OtlpConfig { headers: Vec::new(), ..c.clone() };
        strip(self) == strip(other)
    }
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("headers", &format_args!("{:?} (values hidden)", self.header_names()))
            .field("headers_file", &self.headers_file)
            .field("resource", &self.resource)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .field("queue_size", &self.queue_size)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// `-` for stdout, `off`, else a file path.
    pub jsonl: String,
    /// Rotation of the JSON lines file (ignored for stdout).
    pub rotate: Rotate,
    pub log_unprotected: bool,
    pub allowed: AllowedEvents,
    /// Window of allowed-decision summaries.
    pub summary_interval_ms: u64,
    pub otlp: Option<OtlpConfig>,
}

impl EventsConfig {
    /// Equal but for OTLP header values (see `OtlpConfig::same_but_headers`).
    pub fn same_but_otlp_headers(&self, other: &EventsConfig) -> bool {
        let strip = |c: &EventsConfig| EventsConfig { otlp: None, ..c.clone() };
        let otlp = match (&self.otlp, &other.otlp) {
            (Some(a), Some(b)) => a.same_but_headers(b),
            (a, b) => a == b,
        };
        otlp && strip(self) == strip(other)
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            jsonl: "-".into(),
            rotate: Rotate::default(),
            log_unprotected: false,
            allowed: AllowedEvents::default(),
            summary_interval_ms: 10_000,
            otlp: None,
        }
    }
}

/// `agent.metrics`: Prometheus `/metrics`, `/healthz` and `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `None`: off.
    pub address: Option<SocketAddr>,
}

pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9464";

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { address: DEFAULT_METRICS_ADDRESS.parse().ok() }
    }
}
