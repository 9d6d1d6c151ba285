//! Prometheus `/metrics` and the `/healthz` (liveness) and `/readyz`
//! (readiness) probes, served on `events.metrics.address`.
pub mod http;
#[cfg(test)]
mod http_tests;
pub mod process;
pub mod render;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::{Request, Response};
use tokio::net::TcpListener;

use crate::report::StatusReport;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoints report on: the daemon.
pub trait Source: Send + Sync + 'static {
    /// The same report as `warden status`. May take locks.
    fn status(&self) -> StatusReport;
    /// `Err(reason)`: the agent is broken and should be restarted.
    fn live(&self) -> Result<(), String>;
    /// `Err(reason)`: the agent is not (yet) enforcing its policy.
    fn ready(&self) -> Result<(), String>;
}

/// Serves until the future is dropped.
pub async fn serve(listener: TcpListener, source: Arc<dyn Source>) {
    http::serve(listener, move |req| respond(req, source.clone())).await
}

async fn respond(req: Request, source: Arc<dyn Source>) -> Response {
    // The source may block on locks: off the runtime's worker threads.
    let blocking = |f: fn(&dyn Source) -> Response| tokio::task::spawn_blocking(move || f(&*source));
    let answer = match req.path.as_str() {
        "/metrics" => blocking(|s| {
            let mut body = String::with_capacity(16 * 1024);
            render::render(&s.status(), &mut body);
            Response::new(200, CONTENT_TYPE, body)
        }),
        "/healthz" => blocking(|s| probe(s.live())),
        "/readyz" => blocking(|s| probe(s.ready())),
        _ => return Response::text(404, "not found\n"),
    };
    answer.await.unwrap_or_else(|_| Response::text(500, "status failed\n"))
}

fn probe(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => Response::text(200, "ok\n"),
        Err(reason) => Response::text(503, format!("{reason}\n")),
    }
}
