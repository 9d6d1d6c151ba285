//! CRI `RuntimeService/ListContainers` client: maps container ids (as seen in
//! cgroup paths) to the Kubernetes pod and container they run, using the
//! labels kubelet puts on every container it creates.
use std::{path::Path, time::Duration};

use super::{KubeError, MAX_MESSAGE_BYTES, connect};

/// Generated from `proto/cri/v1/api.proto` (trimmed CRI, package `runtime.v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("runtime.v1");
}

/// containerd's socket; CRI-O serves on `/run/crio/crio.sock`.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// Labels kubelet sets on containers (k8s.io/kubelet/pkg/types/labels.go).
pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";

/// A Kubernetes container known to the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Runtime container id (64 hex chars for containerd / CRI-O).
    pub id: String,
    pub namespace: String,
    pub pod: String,
    /// Empty if the runtime did not report the label.
    pub pod_uid: String,
    pub container: String,
}

/// Lists all containers (any state) and keeps those carrying kubelet's pod
/// labels; others (not created by kubelet) are skipped. A labelled container
/// without an id fails the call.
pub async fn list_containers(socket: &Path, timeout: Duration) -> Result<Vec<ContainerInfo>, KubeError> {
    const OP: &str = "runtime.v1.RuntimeService/ListContainers";
    let channel = connect(socket, timeout).await?;
    let mut client =
        pb::runtime_service_client::RuntimeServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let response = client
        .list_containers(pb::ListContainersRequest { filter: None })
        .await
        .map_err(|s| KubeError::rpc(socket, OP, s))?
        .into_inner();
    let mut out = Vec::new();
    for c in response.containers {
        let Some(info) = container_info(&c) else { continue };
        if info.id.is_empty() {
            return Err(KubeError::bad_data(
                socket,
                OP,
                format!("container {}/{} has no id", info.namespace, info.pod),
            ));
        }
        out.push(info);
    }
    Ok(out)
}

/// The pod identity of a runtime container, if kubelet created it.
fn container_info(c: &pb::Container) -> Option<ContainerInfo> {
    let label = |k: &str| c.labels.get(k).filter(|v| !v.is_empty()).cloned();
    let namespace = label(LABEL_NAMESPACE)?;
    let pod = label(LABEL_POD)?;
    let container =
        label(LABEL_CONTAINER).or_else(|| c.metadata.as_ref().map(|m| m.name.clone()).filter(|n| !n.is_empty()))?;
    Some(ContainerInfo {
        id: c.id.clone(),
        namespace,
        pod,
        pod_uid: label(LABEL_POD_UID).unwrap_or_default(),
        container,
    })
}
