//! Test fixture: in-process kubelet pod-resources and CRI servers that
//! implement the real v1 protos (server traits generated here from the
//! agent's `proto/`) on a unix socket, so the agent's `kube::podresources` /
//! `kube::cri` clients and the code above them are exercised over real gRPC
//! round trips. Their answers can be changed at any time with `set`; the next
//! call sees the new data.
use std::{
    collections::HashMap,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::{net::UnixListener, sync::oneshot, task::JoinHandle};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status, transport::Server};

/// Generated from the agent's `proto/podresources/v1/api.proto` (package `v1`).
#[allow(clippy::all, missing_docs)]
pub mod pr_pb {
    tonic::include_proto!("v1");
}

/// Generated from the agent's `proto/cri/v1/api.proto` (package `runtime.v1`).
#[allow(clippy::all, missing_docs)]
pub mod cri_pb {
    tonic::include_proto!("runtime.v1");
}

/// Labels kubelet sets on containers (k8s.io/kubelet/pkg/types/labels.go).
pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";

/// Devices of one resource assigned to one container, as `FakeKubelet`
/// serves them (the fields of the agent's `podresources::ContainerDevices`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerDevices {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub resource: String,
    pub device_ids: Vec<String>,
}

/// A container as `FakeCri` serves it (the fields of the agent's
/// `cri::ContainerInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
}

/// The labels kubelet would set for `info`.
fn labels_for(info: &ContainerInfo) -> HashMap<String, String> {
    [
        (LABEL_NAMESPACE, &info.namespace),
        (LABEL_POD, &info.pod),
        (LABEL_POD_UID, &info.pod_uid),
        (LABEL_CONTAINER, &info.container),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect()
}

/// Test fixture: a kubelet pod-resources v1 server (`List` and `Get`;
/// `GetAllocatableResources` is unimplemented).
#[derive(Clone, Debug, Default)]
pub struct FakeKubelet {
    pods: Arc<Mutex<Vec<pr_pb::PodResources>>>,
}

impl FakeKubelet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the assignments served, grouped into pods and containers in order
    /// of first appearance (so a grouped list round-trips through `list`
    /// unchanged).
    pub fn set(&self, assignments: Vec<ContainerDevices>) {
        let mut pods: Vec<pr_pb::PodResources> = Vec::new();
        for a in assignments {
            let pod = match pods.iter().position(|p| p.namespace == a.namespace && p.name == a.pod) {
                Some(i) => &mut pods[i],
                None => {
                    pods.push(pr_pb::PodResources { name: a.pod, namespace: a.namespace, ..Default::default() });
                    pods.last_mut().expect("just pushed")
                }
            };
            let container = match pod.containers.iter().position(|c| c.name == a.container) {
                Some(i) => &mut pod.containers[i],
                None => {
                    pod.containers.push(pr_pb::ContainerResources { name: a.container, ..Default::default() });
                    pod.containers.last_mut().expect("just pushed")
                }
            };
            container.devices.push(pr_pb::ContainerDevices {
                resource_name: a.resource,
                device_ids: a.device_ids,
                topology: None,
            });
        }
        self.set_pods(pods);
    }

    /// Sets the raw messages served (for malformed or unusual answers).
    pub fn set_pods(&self, pods: Vec<pr_pb::PodResources>) {
        *lock(&self.pods) = pods;
    }

    /// Serves on `socket` until the handle is dropped.
    pub async fn serve(&self, socket: &Path) -> std::io::Result<ServerHandle> {
        let service = pr_pb::pod_resources_lister_server::PodResourcesListerServer::new(self.clone());
        ServerHandle::start(socket, Server::builder().add_service(service))
    }
}

#[tonic::async_trait]
impl pr_pb::pod_resources_lister_server::PodResourcesLister for FakeKubelet {
    async fn list(
        &self,
        _: Request<pr_pb::ListPodResourcesRequest>,
    ) -> Result<Response<pr_pb::ListPodResourcesResponse>, Status> {
        Ok(Response::new(pr_pb::ListPodResourcesResponse { pod_resources: lock(&self.pods).clone() }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<pr_pb::AllocatableResourcesRequest>,
    ) -> Result<Response<pr_pb::AllocatableResourcesResponse>, Status> {
        Err(Status::unimplemented("fake kubelet: GetAllocatableResources"))
    }

    async fn get(
        &self,
        request: Request<pr_pb::GetPodResourcesRequest>,
    ) -> Result<Response<pr_pb::GetPodResourcesResponse>, Status> {
        let req = request.into_inner();
        let pods = lock(&self.pods);
        let pod = pods.iter().find(|p| p.namespace == req.pod_namespace && p.name == req.pod_name);
        match pod {
            Some(p) => Ok(Response::new(pr_pb::GetPodResourcesResponse { pod_resources: Some(p.clone()) })),
            None => Err(Status::not_found(format!("pod {}/{} not found", req.pod_namespace, req.pod_name))),
        }
    }
}

/// Test fixture: a CRI `runtime.v1.RuntimeService` serving `ListContainers`
/// (with upstream filter semantics) from the trimmed real proto.
#[derive(Clone, Debug, Default)]
pub struct FakeCri {
    containers: Arc<Mutex<Vec<cri_pb::Container>>>,
}

impl FakeCri {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the containers served: running, labelled as kubelet labels them.
    pub fn set(&self, containers: Vec<ContainerInfo>) {
        let containers = containers
            .into_iter()
            .map(|c| cri_pb::Container {
                pod_sandbox_id: format!("sandbox-{}", c.pod_uid),
                metadata: Some(cri_pb::ContainerMetadata { name: c.container.clone(), attempt: 0 }),
                state: cri_pb::ContainerState::ContainerRunning as i32,
                labels: labels_for(&c),
                id: c.id,
                ..Default::default()
            })
            .collect();
        self.set_containers(containers);
    }

    /// Sets the raw messages served (e.g. containers not created by kubelet).
    pub fn set_containers(&self, containers: Vec<cri_pb::Container>) {
        *lock(&self.containers) = containers;
    }

    /// Serves on `socket` until the handle is dropped.
    pub async fn serve(&self, socket: &Path) -> std::io::Result<ServerHandle> {
        let service = cri_pb::runtime_service_server::RuntimeServiceServer::new(self.clone());
        ServerHandle::start(socket, Server::builder().add_service(service))
    }
}

#[tonic::async_trait]
impl cri_pb::runtime_service_server::RuntimeService for FakeCri {
    async fn list_containers(
        &self,
        request: Request<cri_pb::ListContainersRequest>,
    ) -> Result<Response<cri_pb::ListContainersResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let containers = lock(&self.containers).iter().filter(|c| matches(&filter, c)).cloned().collect();
        Ok(Response::new(cri_pb::ListContainersResponse { containers }))
    }
}

/// `ContainerFilter` semantics: every set field must match (AND).
fn matches(f: &cri_pb::ContainerFilter, c: &cri_pb::Container) -> bool {
    (f.id.is_empty() || f.id == c.id)
        && (f.pod_sandbox_id.is_empty() || f.pod_sandbox_id == c.pod_sandbox_id)
        && f.state.as_ref().is_none_or(|s| s.state == c.state)
        && f.label_selector.iter().all(|(k, v)| c.labels.get(k) == Some(v))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake server. Dropping it stops the server and removes its socket.
#[derive(Debug)]
pub struct ServerHandle {
    socket: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl ServerHandle {
    /// Binds `socket` (replacing a stale socket file, never another kind of
    /// file) and serves `router` on it in a spawned task.
    fn start(socket: &Path, router: tonic::transport::server::Router) -> std::io::Result<Self> {
        match std::fs::symlink_metadata(socket) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(socket)?,
            Ok(_) => {
                let msg = format!("{} exists and is not a socket", socket.display());
                return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, msg));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let incoming = UnixListenerStream::new(UnixListener::bind(socket)?);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = rx.await;
        }));
        Ok(Self { socket: socket.to_path_buf(), shutdown: Some(tx), task: Some(task) })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) -> Result<(), tonic::transport::Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("fake server task panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
