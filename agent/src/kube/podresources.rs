//! kubelet pod-resources API v1 client: which device ids (e.g. GPU UUIDs from
//! the NVIDIA device plugin) kubelet assigned to each container. This is the
//! node-local source of truth for device assignment; it needs no API-server
//! credentials.
use std::{path::Path, time::Duration};

use super::{KubeError, MAX_MESSAGE_BYTES, connect};

/// Generated from `proto/podresources/v1/api.proto` (package `v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("v1");
}

/// Where kubelet serves the API by default.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// Devices of one resource (e.g. `nvidia.com/gpu`) assigned to one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerDevices {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub resource: String,
    pub device_ids: Vec<String>,
}

/// Calls `List` and flattens the answer to one entry per (container,
/// resource), in kubelet's order. Containers without devices yield nothing.
/// Entries missing a namespace, pod, container or resource name fail the whole
/// call: a partial view could attribute devices to the wrong workload.
pub async fn list(socket: &Path, timeout: Duration) -> Result<Vec<ContainerDevices>, KubeError> {
    const OP: &str = "v1.PodResourcesLister/List";
    let channel = connect(socket, timeout).await?;
    let mut client = pb::pod_resources_lister_client::PodResourcesListerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let response =
        client.list(pb::ListPodResourcesRequest {}).await.map_err(|s| KubeError::rpc(socket, OP, s))?.into_inner();
    let mut out = Vec::new();
    for pod in response.pod_resources {
        for container in pod.containers {
            for devices in container.devices {
                if [&pod.namespace, &pod.name, &container.name, &devices.resource_name].iter().any(|s| s.is_empty()) {
                    let detail = format!(
                        "empty name in pod {:?}/{:?} container {:?} resource {:?}",
                        pod.namespace, pod.name, container.name, devices.resource_name
                    );
                    return Err(KubeError::bad_data(socket, OP, detail));
                }
                out.push(ContainerDevices {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: container.name.clone(),
                    resource: devices.resource_name,
                    device_ids: devices.device_ids,
                });
            }
        }
    }
    Ok(out)
}
