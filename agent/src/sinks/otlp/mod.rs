//! OTLP/gRPC logs exporter: events become OpenTelemetry log records
//! (`convert`) sent in batches to a collector (`exporter`) through a bounded
//! queue that drops allowed events before denies (`sinks::queue`).
//!
//! `push` never blocks; an exporter task on the tokio runtime drains the
//! queue and retries failed exports with backoff, so a slow or absent
//! collector costs at most `queue_size` events of memory and never stalls
//! the pipeline.
use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use tonic::metadata::MetadataMap;

use super::queue::EventQueue;
use crate::{enrich::Event, report::OtlpStatus, settings::OtlpConfig};

mod channel;
pub mod convert;
mod exporter;
pub mod proto;
mod wire;

#[cfg(test)]
mod e2e_tests;

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("{0}")]
    Config(String),
    /// `field`: the config key that named the file (`caFile`...).
    #[error("agent.events.otlp.{field}: {}: {error}", path.display())]
    File { field: &'static str, path: PathBuf, error: String },
}

/// Connection state as `warden status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No export has succeeded yet.
    Connecting,
    /// The last export succeeded.
    Connected,
    /// The last export failed; retrying with backoff.
    Retrying,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Retrying => "retrying",
        }
    }
}

/// What the exporter task and `status` share.
struct Shared {
    endpoint: String,
    /// gRPC metadata of every request, and the headers it was made from
    /// (status shows their names, never the values: they are credentials).
    headers: Mutex<(MetadataMap, Vec<(String, String)>)>,
    headers_file: Option<String>,
    queue: EventQueue,
    exported: AtomicU64,
    failed_exports: AtomicU64,
    rejected: AtomicU64,
    health: Mutex<(State, Option<String>)>,
}

impl Shared {
    fn headers(&self) -> std::sync::MutexGuard<'_, (MetadataMap, Vec<(String, String)>)> {
        self.headers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_health(&self, state: State, error: Option<String>) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.0 = state;
        if error.is_some() {
            h.1 = error;
        }
    }
}

pub struct OtlpSink {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl OtlpSink {
    /// Checks the configuration (endpoint, TLS files, headers) and starts
    /// the exporter on the current tokio runtime. Does not wait for the
    /// collector: it may be down at start-up.
    pub fn start(cfg: &OtlpConfig, node: &str, host: &str) -> anyhow::Result<OtlpSink> {
        let runtime = tokio::runtime::Handle::try_current().context("the OTLP exporter needs a tokio runtime")?;
        let _guard = runtime.enter();
        let channel = channel::lazy(cfg).with_context(|| format!("OTLP endpoint {}", cfg.endpoint))?;
        let headers = channel::metadata(&cfg.headers).context("OTLP headers")?;
        let shared = Arc::new(Shared {
            endpoint: cfg.endpoint.clone(),
            headers: Mutex::new((headers, cfg.headers.clone())),
            headers_file: cfg.headers_file.as_ref().map(|p| p.display().to_string()),
            queue: EventQueue::new(cfg.queue_size),
            exported: AtomicU64::new(0),
            failed_exports: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            health: Mutex::new((State::Connecting, None)),
        });
        let exporter = exporter::Exporter {
            shared: shared.clone(),
            grpc: tonic::client::Grpc::new(channel),
            prelude: convert::Prelude::new(&convert::resource(node, host, &cfg.resource)),
            batch_size: cfg.batch_size.clamp(1, cfg.queue_size.max(1)),
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
        };
        let tasks = (0..cfg.concurrency.max(1)).map(|_| runtime.spawn(exporter.clone().run())).collect();
        Ok(OtlpSink { shared, tasks })
    }

    /// Queues events for export; never blocks (overflow drops, see
    /// `sinks::queue`).
    pub fn push(&self, events: &[Arc<Event>]) {
        self.shared.queue.push_all(events);
    }

    /// Replaces the headers of later requests (a reload read a rotated
    /// token); returns whether they changed.
    pub fn set_headers(&self, headers: &[(String, String)]) -> Result<bool, OtlpError> {
        let map = channel::metadata(headers)?;
        let mut h = self.shared.headers();
        if h.1 == headers {
            return Ok(false);
        }
        *h = (map, headers.to_vec());
        Ok(true)
    }

    pub fn status(&self) -> OtlpStatus {
        let q = self.shared.queue.stats();
        let (state, last_error) = self.shared.health.lock().unwrap_or_else(|e| e.into_inner()).clone();
        OtlpStatus {
            endpoint: self.shared.endpoint.clone(),
            state: state.name().into(),
            queued: q.queued,
            queue_capacity: q.capacity,
            exported: self.shared.exported.load(Ordering::Relaxed),
            dropped_allowed: q.dropped_allowed,
            dropped_denies: q.dropped_kept,
            failed_exports: self.shared.failed_exports.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            last_error,
            headers: self.shared.headers().1.iter().map(|(k, _)| k.clone()).collect(),
            headers_file: self.shared.headers_file.clone(),
        }
    }

    /// Waits until every queued event has been exported (or given up), at
    /// most `timeout`; returns whether the queue drained. For shutdown.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.queue.stats().queued == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl super::Forward for OtlpSink {
    fn push(&self, events: &[Arc<Event>]) {
        OtlpSink::push(self, events);
    }
}

impl Drop for OtlpSink {
    /// The exporter lives as long as the sink; events still queued are lost
    /// (call `flush` first to deliver them).
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
