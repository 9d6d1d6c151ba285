//! Node-local Kubernetes APIs the agent reads to learn which GPUs kubelet
//! assigned to which container: kubelet pod-resources v1 (`podresources`:
//! pod/container → device ids, whose forms `device_ids` parses), CRI
//! `ListContainers` (`cri`: container id → pod), the NVIDIA driver's procfs
//! (`nvidia`: GPU UUID → device minor; `nvidia_caps`: MIG capability minors)
//! and CDI specs (`cdi`: MIG UUID → device nodes). `resources` matches the
//! extended resource names kubelet reports.
//! Both gRPC APIs are served on local unix sockets only; the tests serve them
//! from in-process fakes (`warden_testkit::kube`) that implement the same
//! protos. `pods` watches the API server for this node's pod metadata;
//! `owner` asks it whether the agent's DaemonSet still exists.
pub mod cdi;
pub mod cri;
pub mod device_ids;
pub mod nvidia;
pub mod nvidia_caps;
pub mod owner;
pub mod podresources;
pub mod pods;
pub mod resources;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Largest response accepted, as kubelet's pod-resources server and crictl
/// use (16 MiB); tonic's 4 MiB default is too small for busy nodes.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Failures talking to kubelet / the container runtime or reading driver
/// files; each names the socket or file involved.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The socket could not be connected (missing, refused, timed out).
    #[error("connect to {}: {detail}", socket.display())]
    Connect { socket: PathBuf, detail: String },
    /// The server answered the rpc with an error status.
    #[error("rpc {op} on {}: {code:?}: {message}", socket.display())]
    Rpc { socket: PathBuf, op: &'static str, code: tonic::Code, message: String },
    /// The response decoded but violates what the API guarantees.
    #[error("rpc {op} on {}: bad data: {detail}", socket.display())]
    BadData { socket: PathBuf, op: &'static str, detail: String },
    /// A driver file or directory could not be read.
    #[error("read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl KubeError {
    fn rpc(socket: &Path, op: &'static str, status: tonic::Status) -> Self {
        KubeError::Rpc { socket: socket.to_path_buf(), op, code: status.code(), message: status.message().to_string() }
    }

    fn bad_data(socket: &Path, op: &'static str, detail: impl Into<String>) -> Self {
        KubeError::BadData { socket: socket.to_path_buf(), op, detail: detail.into() }
    }
}

/// Connects a gRPC channel to a unix socket. The URI is a placeholder that
/// HTTP/2 needs; the connector ignores it. `timeout` bounds the connect and
/// every request made on the channel.
pub async fn connect(socket: &Path, timeout: Duration) -> Result<Channel, KubeError> {
    let path = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    Endpoint::from_static("http://[::]:50051")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(connector)
        .await
        .map_err(|e| KubeError::Connect { socket: socket.to_path_buf(), detail: crate::system::error_chain(&e) })
}

#[cfg(test)]
mod tests;
