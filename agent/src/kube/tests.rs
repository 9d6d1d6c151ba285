//! Real gRPC round trips over unix sockets against the fake servers of
//! `warden_testkit::kube`, whose server code is generated apart from ours.
use std::{
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use warden_testkit::kube::{self as fake, FakeCri, FakeKubelet};

use super::{
    KubeError,
    cri::{self, ContainerInfo},
    podresources::{self, ContainerDevices},
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh socket path; the directory is removed by the caller.
fn socket(name: &str) -> (PathBuf, PathBuf) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("warden-kube-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    (dir.join(name), dir)
}

fn devices(ns: &str, pod: &str, container: &str, resource: &str, ids: &[&str]) -> ContainerDevices {
    ContainerDevices {
        namespace: ns.into(),
        pod: pod.into(),
        container: container.into(),
        resource: resource.into(),
        device_ids: ids.iter().map(|s| s.to_string()).collect(),
    }
}

fn info(id: &str, ns: &str, pod: &str, uid: &str, container: &str) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        namespace: ns.into(),
        pod: pod.into(),
        pod_uid: uid.into(),
        container: container.into(),
    }
}

/// What the fake kubelet serves for `assignments`.
fn served_devices(assignments: &[ContainerDevices]) -> Vec<fake::ContainerDevices> {
    assignments
        .iter()
        .map(|a| fake::ContainerDevices {
            namespace: a.namespace.clone(),
            pod: a.pod.clone(),
            container: a.container.clone(),
            resource: a.resource.clone(),
            device_ids: a.device_ids.clone(),
        })
        .collect()
}

/// What the fake runtime serves for `containers`.
fn served_containers(containers: &[ContainerInfo]) -> Vec<fake::ContainerInfo> {
    containers
        .iter()
        .map(|c| fake::ContainerInfo {
            id: c.id.clone(),
            namespace: c.namespace.clone(),
            pod: c.pod.clone(),
            pod_uid: c.pod_uid.clone(),
            container: c.container.clone(),
        })
        .collect()
}

#[tokio::test]
async fn podresources_list_round_trip() {
    let (sock, dir) = socket("kubelet.sock");
    let kubelet = FakeKubelet::new();
    let first = vec![
        devices("train", "llm-0", "trainer", "nvidia.com/gpu", &["GPU-aaaa", "GPU-bbbb"]),
        devices("train", "llm-0", "trainer", "rdma/ib", &["mlx5_0"]),
        devices("train", "llm-0", "sidecar", "nvidia.com/gpu", &["GPU-cccc"]),
        devices("infer", "web-1", "server", "nvidia.com/gpu", &["GPU-dddd"]),
    ];
    kubelet.set(served_devices(&first));
    let server = kubelet.serve(&sock).await.unwrap();
    assert_eq!(podresources::list(&sock, TIMEOUT).await.unwrap(), first);

    let second = vec![devices("infer", "web-2", "server", "nvidia.com/gpu", &["GPU-aaaa"])];
    kubelet.set(served_devices(&second));
    assert_eq!(podresources::list(&sock, TIMEOUT).await.unwrap(), second);
    kubelet.set(vec![]);
    assert_eq!(podresources::list(&sock, TIMEOUT).await.unwrap(), vec![]);

    server.shutdown().await.unwrap();
    assert!(!sock.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn podresources_rejects_nameless_entries() {
    use fake::pr_pb as pb;
    let (sock, dir) = socket("kubelet.sock");
    let kubelet = FakeKubelet::new();
    kubelet.set_pods(vec![pb::PodResources {
        name: "p".into(),
        namespace: "ns".into(),
        containers: vec![pb::ContainerResources {
            name: String::new(),
            devices: vec![pb::ContainerDevices { resource_name: "nvidia.com/gpu".into(), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let _server = kubelet.serve(&sock).await.unwrap();
    let err = podresources::list(&sock, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, KubeError::BadData { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn cri_list_containers_round_trip() {
    use fake::cri_pb as pb;
    let (sock, dir) = socket("containerd.sock");
    let runtime = FakeCri::new();
    let first = vec![
        info("0f3c9a", "train", "llm-0", "uid-1", "trainer"),
        info("7b21de", "train", "llm-0", "uid-1", "sidecar"),
        info("c4d5e6", "infer", "web-1", "uid-2", "server"),
    ];
    runtime.set(served_containers(&first));
    let server = runtime.serve(&sock).await.unwrap();
    assert_eq!(cri::list_containers(&sock, TIMEOUT).await.unwrap(), first);

    let second = vec![info("99aa88", "infer", "web-2", "uid-3", "server")];
    runtime.set(served_containers(&second));
    assert_eq!(cri::list_containers(&sock, TIMEOUT).await.unwrap(), second);

    // Not created by kubelet: skipped. Container label missing: metadata name.
    let mut by_metadata = pb::Container {
        id: "abc".into(),
        metadata: Some(pb::ContainerMetadata { name: "meta-name".into(), attempt: 1 }),
        ..Default::default()
    };
    by_metadata.labels.insert(cri::LABEL_NAMESPACE.into(), "ns".into());
    by_metadata.labels.insert(cri::LABEL_POD.into(), "pod".into());
    let plain = pb::Container { id: "def".into(), ..Default::default() };
    runtime.set_containers(vec![plain, by_metadata]);
    assert_eq!(cri::list_containers(&sock, TIMEOUT).await.unwrap(), vec![info("abc", "ns", "pod", "", "meta-name")]);

    server.shutdown().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn missing_socket_names_the_path() {
    let (sock, dir) = socket("absent.sock");
    let err = podresources::list(&sock, TIMEOUT).await.unwrap_err();
    assert!(matches!(&err, KubeError::Connect { socket, .. } if *socket == sock), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&sock.display().to_string()) && msg.contains("No such file"), "{msg}");
    let err = cri::list_containers(&sock, TIMEOUT).await.unwrap_err();
    assert!(err.to_string().contains(&sock.display().to_string()), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn unimplemented_rpc_is_an_rpc_error() {
    use podresources::pb::{AllocatableResourcesRequest, pod_resources_lister_client::PodResourcesListerClient};
    let (sock, dir) = socket("kubelet.sock");
    let _server = FakeKubelet::new().serve(&sock).await.unwrap();
    let channel = super::connect(&sock, TIMEOUT).await.unwrap();
    let status = PodResourcesListerClient::new(channel)
        .get_allocatable_resources(AllocatableResourcesRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn silent_server_times_out() {
    let (sock, dir) = socket("silent.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // never answers
        }
    });
    let start = std::time::Instant::now();
    let err = podresources::list(&sock, Duration::from_millis(200)).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}: {err}", start.elapsed());
    assert!(err.to_string().contains(&sock.display().to_string()), "{err}");
    accept.abort();
    std::fs::remove_dir_all(dir).unwrap();
}
