//! The export loop: take a batch, send it, retry the same batch with
//! backoff until the collector takes it. `concurrency` such loops share the
//! queue, so that many requests are in flight (the collector's round trip,
//! not the agent, would otherwise set the rate); batches may arrive out of
//! order, and `warden.seq` restores it. Memory stays bounded: a batch in
//! flight or being retried keeps its room in the queue, and new events
//! meanwhile wait under the queue's overflow policy.
use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tonic::{Code, client::Grpc, transport::Channel};

use super::{Shared, State, convert, wire::RawCodec};
use crate::enrich::Event;

const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Wake-up when no push came: picks up anything a missed notify left.
const FLUSH_TICK: Duration = Duration::from_millis(200);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(super) struct Exporter {
    pub shared: Arc<Shared>,
    pub grpc: Grpc<Channel>,
    pub prelude: convert::Prelude,
    pub batch_size: usize,
    pub timeout: Duration,
}

/// How one export attempt ended.
enum Outcome {
    /// Accepted, except `rejected` records (partial success).
    Sent { rejected: u64, message: String },
    /// Failed; worth retrying (collector down, overloaded, timed out...).
    Retry(String),
    /// The collector refused the request as malformed: retrying cannot help
    /// and would block every later event (OTLP: INVALID_ARGUMENT is not
    /// retryable). Authentication and other errors are retried instead,
    /// since they usually heal once configuration is fixed.
    Refused(String),
}

fn now_unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Exponential backoff with jitter (each wait in [d/2, d]), so agents on
/// many nodes do not retry in lockstep after a collector restart.
struct Backoff {
    next: Duration,
    rng: u64,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN, rng: now_unix_ns() | 1 }
    }

    fn wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(BACKOFF_MAX);
        // xorshift64: plenty for jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = base / 2;
        half + Duration::from_nanos(self.rng % (half.as_nanos() as u64 + 1))
    }
}

impl Exporter {
    pub async fn run(mut self) {
        loop {
            let batch = self.shared.queue.pop_batch(self.batch_size);
            if batch.is_empty() {
                tokio::select! {
                    _ = self.shared.queue.ready() => {}
                    _ = tokio::time::sleep(FLUSH_TICK) => {}
                }
                continue;
            }
            self.deliver(&batch).await;
            self.shared.queue.release(batch.len());
        }
    }

    /// Sends `batch` until the collector takes (or refuses) it.
    async fn deliver(&mut self, batch: &[Arc<Event>]) {
        let observed = now_unix_ns();
        let mut backoff = Backoff::new();
        let n = batch.len() as u64;
        loop {
            let outcome = self.export(batch, observed).await;
            let s = &self.shared;
            match outcome {
                Outcome::Sent { rejected, message } => {
                    let rejected = rejected.min(n);
                    s.exported.fetch_add(n - rejected, Ordering::Relaxed);
                    s.rejected.fetch_add(rejected, Ordering::Relaxed);
                    let error = (rejected > 0).then(|| format!("collector rejected {rejected} records: {message}"));
                    if s.health.lock().unwrap_or_else(|e| e.into_inner()).0 == State::Retrying {
                        tracing::info!(endpoint = %s.endpoint, "OTLP export recovered");
                    }
                    s.set_health(State::Connected, error);
                    return;
                }
                Outcome::Refused(error) => {
                    s.failed_exports.fetch_add(1, Ordering::Relaxed);
                    s.rejected.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(endpoint = %s.endpoint, %error, records = n, "OTLP collector refused a batch; dropped");
                    s.set_health(State::Connected, Some(error));
                    return;
                }
                Outcome::Retry(error) => {
                    s.failed_exports.fetch_add(1, Ordering::Relaxed);
                    if s.health.lock().unwrap_or_else(|e| e.into_inner()).0 != State::Retrying {
                        tracing::warn!(endpoint = %s.endpoint, %error, "OTLP export failed; retrying with backoff");
                    }
                    s.set_health(State::Retrying, Some(error));
                    tokio::time::sleep(backoff.wait()).await;
                }
            }
        }
    }

    async fn export(&mut self, batch: &[Arc<Event>], observed: u64) -> Outcome {
        let mut req = tonic::Request::new(convert::request(&self.prelude, batch, observed));
        // Read per request: a reload may have rotated a token.
        *req.metadata_mut() = self.shared.headers().0.clone();
        req.set_timeout(self.timeout);
        let grpc = &mut self.grpc;
        let call = async move {
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
            grpc.unary(req, tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT), RawCodec).await
        };
        // The channel has the same deadline; this one also covers connecting.
        let reply = match tokio::time::timeout(self.timeout, call).await {
            Ok(reply) => reply,
            Err(_) => return Outcome::Retry(format!("timed out after {} ms", self.timeout.as_millis())),
        };
        match reply {
            Ok(resp) => {
                let partial = resp.into_inner().partial_success.unwrap_or_default();
                Outcome::Sent {
                    rejected: u64::try_from(partial.rejected_log_records).unwrap_or(0),
                    message: partial.error_message,
                }
            }
            Err(status) => {
                let error = describe(&status);
                if status.code() == Code::InvalidArgument { Outcome::Refused(error) } else { Outcome::Retry(error) }
            }
        }
    }
}

/// `Unavailable: tcp connect error: Connection refused`, with the transport
/// error's causes (tonic's message alone is often just "transport error").
fn describe(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter() {
        let mut b = Backoff::new();
        let mut base = BACKOFF_MIN;
        for _ in 0..12 {
            let w = b.wait();
            assert!(w >= base / 2 && w <= base, "{w:?} outside [{:?}, {base:?}]", base / 2);
            base = (base * 2).min(BACKOFF_MAX);
        }
        assert_eq!(base, BACKOFF_MAX);
    }
}
