//! `gpus: assigned`: the GPUs kubelet gave each container.
//!
//! kubelet's pod-resources API lists, per (namespace, pod, container), the
//! device ids of each extended resource. For `nvidia.com/gpu` the NVIDIA
//! device plugin reports GPU UUIDs (`GPU-5c2a…`), which the driver maps to
//! device minors in `<proc>/driver/nvidia/gpus/<bus id>/information`
//! ("GPU UUID", "Device Minor"); plugins run with an index strategy report
//! the index itself (`0`, `1`…), which is the minor. The container runtime
//! (CRI `ListContainers`) maps names to container ids, and container ids
//! appear in the container's cgroup name (`cri-containerd-<id>.scope`,
//! `crio-<id>.scope`, `docker-<id>.scope`, or `<id>` with cgroupfs).
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use warden_common::{GpuSet, NVIDIA_MAX_GPUS};

use crate::{identity::CgroupTracker, kube, settings::DevicesConfig};

const RPC_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Default)]
pub struct Assignment {
    /// Container id → its GPUs.
    pub by_container: HashMap<String, GpuSet>,
    /// Device ids that map to no GPU on this node, and similar oddities.
    pub problems: Vec<String>,
}

fn cri_socket(cfg: &DevicesConfig) -> Result<PathBuf, String> {
    if let Some(s) = &cfg.cri_socket {
        return Ok(s.clone());
    }
    crate::settings::DEFAULT_CRI_SOCKETS.iter().map(PathBuf::from).find(|p| p.exists()).ok_or_else(|| {
        format!(
            "no container runtime socket found ({}); set agent.devices.criSocket",
            crate::settings::DEFAULT_CRI_SOCKETS.join(", ")
        )
    })
}

/// One read of kubelet, the runtime and the driver.
pub async fn fetch(cfg: &DevicesConfig) -> Result<Assignment, String> {
    let devices = kube::podresources::list(&cfg.kubelet_socket, RPC_TIMEOUT).await.map_err(|e| e.to_string())?;
    let containers = kube::cri::list_containers(&cri_socket(cfg)?, RPC_TIMEOUT).await.map_err(|e| e.to_string())?;
    let mut a = Assignment::default();
    let minors = gpu_minors(&cfg.proc_root, &mut a.problems);
    let mut by_name: HashMap<(String, String, String), GpuSet> = HashMap::new();
    for d in devices.iter().filter(|d| d.resource == cfg.gpu_resource) {
        let set = by_name.entry((d.namespace.clone(), d.pod.clone(), d.container.clone())).or_default();
        for id in &d.device_ids {
            match gpu_index(id, &minors) {
                Some(gpu) => set.insert(gpu),
                None => a.problems.push(format!(
                    "{}/{}/{}: device id `{id}` is no GPU of this node",
                    d.namespace, d.pod, d.container
                )),
            }
        }
    }
    for c in containers {
        if let Some(set) = by_name.get(&(c.namespace, c.pod, c.container)) {
            a.by_container.insert(c.id, *set);
        }
    }
    Ok(a)
}

fn gpu_minors(proc_root: &Path, problems: &mut Vec<String>) -> HashMap<String, u32> {
    let root = proc_root.join("driver/nvidia");
    if !root.exists() {
        return HashMap::new(); // no driver: only index ids can map
    }
    kube::nvidia::gpu_minors(&root).unwrap_or_else(|e| {
        problems.push(format!("reading {}: {e}", root.display()));
        HashMap::new()
    })
}

/// A device id as a GPU index: a UUID known to the driver, or an index.
fn gpu_index(id: &str, minors: &HashMap<String, u32>) -> Option<u16> {
    let minor = minors.get(id).copied().or_else(|| id.parse::<u32>().ok())?;
    (minor < NVIDIA_MAX_GPUS).then_some(minor as u16)
}

/// The container id named by a cgroup's path: its own last component, or
/// the nearest ancestor's (cgroups a container makes below its own inherit
/// its GPUs). Any layout, not only kubelet's: the scope name is what counts.
pub fn container_id_of(rel: &str) -> Option<&str> {
    rel.rsplit('/').find_map(|c| crate::identity::path::container_component(c).map(|(id, _)| id))
}

/// `DEVICE_ASSIGNED` entries: every tracked cgroup named for a container
/// with GPUs.
pub fn cgroup_entries(by_container: &HashMap<String, GpuSet>, tracker: &CgroupTracker) -> Vec<(u64, GpuSet)> {
    tracker
        .iter()
        .filter_map(|(id, info)| {
            let cid = container_id_of(&info.rel)?;
            by_container.get(cid).map(|set| (*id, *set))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_cgroup_names() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for name in [
            format!("kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"),
            format!("kubepods/burstable/pod1/{id}"),
            format!("x/crio-{id}.scope"),
            format!("docker-{id}.scope"),
            format!("kubepods/pod1/{id}/nested/child"),
        ] {
            assert_eq!(container_id_of(&name), Some(id), "{name}");
        }
        assert_eq!(container_id_of("kubepods.slice/kubepods-pod1.slice"), None);
        assert_eq!(container_id_of("system.slice/ssh.service"), None);
        assert_eq!(container_id_of("abc"), None);
    }

    #[test]
    fn device_ids_to_gpus() {
        let minors = HashMap::from([("GPU-aaaa".to_string(), 3u32), ("GPU-bad".to_string(), 254)]);
        assert_eq!(gpu_index("GPU-aaaa", &minors), Some(3));
        assert_eq!(gpu_index("1", &minors), Some(1));
        assert_eq!(gpu_index("GPU-bad", &minors), None);
        assert_eq!(gpu_index("GPU-unknown", &minors), None);
        assert_eq!(gpu_index("300", &minors), None);
    }
}
