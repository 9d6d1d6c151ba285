//! Test fixture: an OTLP/gRPC logs receiver that records the gRPC metadata
//! (headers) of every export request, which the real collector (rotel)
//! neither checks nor prints. It accepts everything; it runs on a runtime
//! of its own, so plain synchronous tests can use it.
use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::{Request, Response, Status, transport::Server};

/// Generated from the agent's `proto/opentelemetry` (server side). Modules
/// mirror the proto packages: the generated code uses relative paths.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    pub mod opentelemetry {
        pub mod proto {
            pub mod common {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.common.v1");
                }
            }
            pub mod resource {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.resource.v1");
                }
            }
            pub mod logs {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.logs.v1");
                }
            }
            pub mod collector {
                pub mod logs {
                    pub mod v1 {
                        tonic::include_proto!("opentelemetry.proto.collector.logs.v1");
                    }
                }
            }
        }
    }
    pub use opentelemetry::proto::collector::logs::v1 as collector;
}

use pb::collector::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
    logs_service_server::{LogsService, LogsServiceServer},
};

/// One export request as received.
#[derive(Clone, Debug)]
pub struct Export {
    /// Every ASCII metadata entry (gRPC's own `content-type`, `te`... too).
    pub metadata: Vec<(String, String)>,
    pub records: usize,
}

impl Export {
    /// The value of header `name`, if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Export>>>);

#[tonic::async_trait]
impl LogsService for Recorder {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let metadata = request
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => Some((k.to_string(), v.to_str().ok()?.to_string())),
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        let body = request.into_inner();
        let records = body.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(Export { metadata, records });
        Ok(Response::new(ExportLogsServiceResponse { partial_success: None }))
    }
}

/// A running receiver on a loopback port; stops when dropped.
pub struct FakeCollector {
    addr: SocketAddr,
    seen: Recorder,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeCollector {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("fake collector runtime");
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).expect("bind fake collector");
        let addr = listener.local_addr().expect("fake collector address");
        let seen = Recorder::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let router = Server::builder().add_service(LogsServiceServer::new(seen.clone()));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        runtime.spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = rx.await;
        }));
        Self { addr, seen, runtime: Some(runtime), shutdown: Some(tx) }
    }

    /// `http://127.0.0.1:PORT`, as `agent.events.otlp.endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every export request so far, in arrival order.
    pub fn exports(&self) -> Vec<Export> {
        self.seen.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until an export satisfies `pred`; panics with what came after
    /// `timeout`.
    pub fn wait_export(&self, timeout: Duration, pred: impl Fn(&Export) -> bool) -> Export {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.exports().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(Instant::now() < deadline, "no matching export in {timeout:?}; got {:?}", self.exports());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
