//! Prometheus `/metrics` and the `/healthz` (liveness) and `/readyz`
//! (readiness) probes, served on `events.metrics.address`.
pub mod http;
