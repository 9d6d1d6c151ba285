//! Pod metadata from the Kubernetes API server: a list + watch of the pods
//! bound to this node only (`spec.nodeName` field selector), through
//! kube-rs' watcher, which re-lists after a watch error such as 410 Gone.
//! Errors back off and never block enforcement: cgroups whose pod is not
//! known yet simply stay unidentified.
use std::time::Duration;

use ::kube::{
    Api, Client, Config,
    runtime::{WatchStreamExt, watcher},
};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::identity::meta::{ContainerMeta, PodMeta};
use crate::settings::{ApiServer, KubernetesConfig};

/// What the watch delivers, already reduced to what identity needs.
#[derive(Debug)]
pub enum PodUpdate {
    /// Every pod of the node (after the first list and after each resync).
    Relisted(Vec<PodMeta>),
    Applied(PodMeta),
    Deleted(String),
    /// A failed list or watch; the watcher backs off and retries.
    Error(String),
}

/// Builds the client for `agent.kubernetes`; `Ok(None)`: disabled.
pub fn client_config(k: &KubernetesConfig) -> Result<Option<Config>, String> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let mut config = match &k.api_server {
        ApiServer::Off => return Ok(None),
        ApiServer::Auto if !in_cluster => return Ok(None),
        ApiServer::Auto | ApiServer::InCluster => {
            Config::incluster().map_err(|e| format!("in-cluster Kubernetes config: {e}"))?
        }
        ApiServer::Url(url) => {
            let uri = url.parse().map_err(|e| format!("apiServer `{url}`: {e}"))?;
            let mut config = Config::new(uri);
            config.auth_info.token_file = k.token_file.as_ref().map(|p| p.display().to_string());
            // Watches are long-lived; a dead connection is noticed by the
            // server-side timeout (kube asks for 290 s) plus this margin.
            config.read_timeout = Some(Duration::from_secs(300));
            config
        }
    };
    // The client's own retry layer (15 tries of 503 over minutes) would hide
    // an outage from status; the watcher's backoff retries instead.
    config.default_retry = false;
    Ok(Some(config))
}

/// A container id as the runtime reports it (`containerd://<id>`), bare.
fn bare_id(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

fn containers(statuses: Option<&Vec<ContainerStatus>>) -> impl Iterator<Item = ContainerMeta> + '_ {
    statuses.into_iter().flatten().filter_map(|s| {
        let id = bare_id(s.container_id.as_deref()?);
        (!id.is_empty()).then(|| ContainerMeta { id: id.to_string(), name: s.name.clone(), image: s.image.clone() })
    })
}

/// The identity-relevant part of a pod; `None` without a UID.
pub fn pod_meta(pod: &Pod) -> Option<PodMeta> {
    let m = &pod.metadata;
    let status = pod.status.as_ref();
    let all = containers(status.and_then(|s| s.container_statuses.as_ref()))
        .chain(containers(status.and_then(|s| s.init_container_statuses.as_ref())))
        .chain(containers(status.and_then(|s| s.ephemeral_container_statuses.as_ref())))
        .collect();
    Some(PodMeta {
        uid: m.uid.clone()?,
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        labels: m.labels.clone().unwrap_or_default(),
        service_account: pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
        containers: all,
    })
}

/// Watches this node's pods until `updates` is closed.
pub async fn watch(config: Config, node: String, updates: tokio::sync::mpsc::Sender<PodUpdate>) {
    // rustls needs one process-wide crypto provider; ours is ring. An error
    // only means it is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match Client::try_from(config) {
        Ok(c) => c,
        Err(e) => {
            let _ = updates.send(PodUpdate::Error(format!("Kubernetes client: {e}"))).await;
            return;
        }
    };
    let api: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut pending: Vec<PodMeta> = Vec::new();
    while let Some(item) = stream.next().await {
        let update = match item {
            Ok(watcher::Event::Init) => {
                pending.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(pod)) => {
                pending.extend(pod_meta(&pod));
                continue;
            }
            Ok(watcher::Event::InitDone) => PodUpdate::Relisted(std::mem::take(&mut pending)),
            Ok(watcher::Event::Apply(pod)) => match pod_meta(&pod) {
                Some(p) => PodUpdate::Applied(p),
                None => continue,
            },
            Ok(watcher::Event::Delete(pod)) => match pod.metadata.uid {
                Some(uid) => PodUpdate::Deleted(uid),
                None => continue,
            },
            Err(e) => PodUpdate::Error(e.to_string()),
        };
        if updates.send(update).await.is_err() {
            return;
        }
    }
}

/// Fuzzing entry point: a pod object as the API server (or anyone able to
/// answer on its address) might send it; never panics.
pub fn fuzz(bytes: &[u8]) {
    if let Ok(pod) = serde_json::from_slice::<Pod>(bytes) {
        let _ = pod_meta(&pod);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_to_meta() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ml", "uid": "u-1", "labels": {"app": "t"}},
            "spec": {"serviceAccountName": "sa", "containers": [{"name": "main", "image": "img"}]},
            "status": {
                "containerStatuses": [
                    {"name": "main", "image": "docker.io/library/img:1", "imageID": "", "ready": true,
                     "restartCount": 0, "containerID": "containerd://abc123"},
                    {"name": "pending", "image": "x", "imageID": "", "ready": false, "restartCount": 0}
                ],
                "initContainerStatuses": [
                    {"name": "init", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "containerID": "cri-o://def456"}
                ]
            }
        }))
        .unwrap();
        let m = pod_meta(&pod).unwrap();
        assert_eq!((m.uid.as_str(), m.namespace.as_str(), m.name.as_str()), ("u-1", "ml", "p"));
        assert_eq!(m.service_account.as_deref(), Some("sa"));
        assert_eq!(m.labels.get("app").map(String::as_str), Some("t"));
        let ids: Vec<(&str, &str)> = m.containers.iter().map(|c| (c.id.as_str(), c.name.as_str())).collect();
        assert_eq!(ids, [("abc123", "main"), ("def456", "init")], "containers not started yet have no id");
        assert_eq!(m.containers[0].image, "docker.io/library/img:1");
        assert!(pod_meta(&Pod::default()).is_none());
    }

    /// The shipped RBAC grants exactly what the watch uses: get, list and
    /// watch on pods, bound to warden's ServiceAccount.
    #[test]
    fn shipped_rbac_is_least_privilege() {
        let text = include_str!("../../../config/kubernetes/warden.yaml");
        let docs = yaml_rust2::YamlLoader::load_from_str(text).unwrap();
        let role = docs.iter().find(|d| d["kind"].as_str() == Some("ClusterRole")).expect("a ClusterRole");
        let rules = role["rules"].as_vec().unwrap();
        assert_eq!(rules.len(), 1);
        let strs = |y: &yaml_rust2::Yaml| -> Vec<String> {
            y.as_vec().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        assert_eq!(strs(&rules[0]["apiGroups"]), [""]);
        assert_eq!(strs(&rules[0]["resources"]), ["pods"]);
        assert_eq!(strs(&rules[0]["verbs"]), ["get", "list", "watch"]);
        let binding = docs.iter().find(|d| d["kind"].as_str() == Some("ClusterRoleBinding")).unwrap();
        assert_eq!(binding["roleRef"]["name"].as_str(), Some("warden"));
        assert_eq!(binding["subjects"][0]["kind"].as_str(), Some("ServiceAccount"));
    }

    #[test]
    fn config_choices() {
        let off = KubernetesConfig { api_server: ApiServer::Off, token_file: None };
        assert!(client_config(&off).unwrap().is_none());
        let url = KubernetesConfig { api_server: ApiServer::Url("http://127.0.0.1:1".into()), token_file: None };
        let c = client_config(&url).unwrap().unwrap();
        assert_eq!(c.cluster_url.to_string(), "http://127.0.0.1:1/");
        assert!(!c.default_retry, "kube's retry layer would hide an outage from status");
    }
}
