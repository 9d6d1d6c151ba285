//! `gpus: assigned`: the GPUs and MIG devices kubelet gave each container.
//!
//! kubelet's pod-resources API lists, per (namespace, pod, container), the
//! device ids of each extended resource. For the resources named in
//! `agent.devices.gpuResources` (`nvidia.com/gpu`, `nvidia.com/gpu.shared`,
//! `nvidia.com/mig-*` by default) the NVIDIA device plugin reports GPU
//! UUIDs, indices, time-sliced replicas of either, or MIG devices; `id_map`
//! turns each into GPU minors and MIG capability minors, or refuses it with
//! the reason (`Refusal`: the container does not get it). The container runtime
//! (CRI `ListContainers`) maps names to container ids, and container ids
//! appear in the container's cgroup name (`cri-containerd-<id>.scope`,
//! `crio-<id>.scope`, `docker-<id>.scope`, or `<id>` with cgroupfs).
use std::{
    cell::OnceCell,
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use warden_common::GpuSet;

use super::{
    ContainerGrant, Grants,
    id_map::{self, DriverView, Mapped},
    mig::MigSlots,
};
use crate::{identity::CgroupTracker, kube, settings::DevicesConfig};

const RPC_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Default)]
pub struct Assignment {
    /// Container id → what it may open.
    pub by_container: Grants,
    /// Device ids that grant nothing, and why.
    pub refusals: Vec<Refusal>,
    /// Driver files or CDI specs that could not be read, and similar.
    pub problems: Vec<String>,
}

/// A device id kubelet assigned that this node cannot map: its container
/// does not get it (the kernel denies it), and status and an event say why.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Refusal {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub resource: String,
    pub device_id: String,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}: {} `{}` refused: {}",
            self.namespace, self.pod, self.container, self.resource, self.device_id, self.reason
        )
    }
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

/// One read of kubelet, the runtime, the driver and (for MIG UUIDs) CDI specs.
pub async fn fetch(cfg: &DevicesConfig) -> Result<Assignment, String> {
    let devices = kube::podresources::list(&cfg.kubelet_socket, RPC_TIMEOUT).await.map_err(|e| e.to_string())?;
    let containers = kube::cri::list_containers(&cri_socket(cfg)?, RPC_TIMEOUT).await.map_err(|e| e.to_string())?;
    let mut a = Assignment::default();
    let driver_root = cfg.proc_root.join("driver/nvidia");
    let minors = gpu_minors(&driver_root, &mut a.problems);
    let caps = kube::nvidia_caps::existing(&driver_root).unwrap_or_else(|e| {
        a.problems.push(format!("MIG capabilities: {e}"));
        Default::default()
    });
    let cdi_cell = OnceCell::new();
    let cdi = || cdi_cell.get_or_init(|| kube::cdi::read(&cfg.cdi_spec_dirs));
    let view = DriverView { gpu_minors: &minors, caps: &caps, cdi: &cdi, driver_root: &driver_root };
    let mut by_name: HashMap<(String, String, String), ContainerGrant> = HashMap::new();
    for d in devices.iter().filter(|d| kube::resources::any_matches(&cfg.gpu_resources, &d.resource)) {
        let grant = by_name.entry((d.namespace.clone(), d.pod.clone(), d.container.clone())).or_default();
        for id in &d.device_ids {
            match id_map::map(id, &view) {
                Ok(Mapped::Gpu(g)) => {
                    grant.gpus.insert(g);
                }
                Ok(Mapped::Mig { gpu, gi_cap, ci_cap }) => {
                    grant.gpus.insert(gpu);
                    grant.caps.extend([gi_cap, ci_cap]);
                }
                Err(reason) => a.refusals.push(Refusal {
                    namespace: d.namespace.clone(),
                    pod: d.pod.clone(),
                    container: d.container.clone(),
                    resource: d.resource.clone(),
                    device_id: id.clone(),
                    reason,
                }),
            }
        }
    }
    if let Some(c) = cdi_cell.get() {
        a.problems.extend(c.problems.iter().cloned());
    }
    for c in containers {
        if let Some(grant) = by_name.get(&(c.namespace, c.pod, c.container))
            && !grant.is_empty()
        {
            a.by_container.insert(c.id, grant.clone());
        }
    }
    Ok(a)
}

fn gpu_minors(root: &Path, problems: &mut Vec<String>) -> HashMap<String, u32> {
    if !root.exists() {
        return HashMap::new(); // no driver: only index ids can map
    }
    kube::nvidia::gpu_minors(root).unwrap_or_else(|e| {
        problems.push(format!("reading {}: {e}", root.display()));
        HashMap::new()
    })
}

/// The container id named by a cgroup's path: its own last component, or
/// the nearest ancestor's (cgroups a container makes below its own inherit
/// its GPUs). Any layout, not only kubelet's: the scope name is what counts.
pub fn container_id_of(rel: &str) -> Option<&str> {
    rel.rsplit('/').find_map(|c| crate::identity::path::container_component(c).map(|(id, _)| id))
}

/// `DEVICE_ASSIGNED` entries: every tracked cgroup named for a container
/// with devices, its set computed under `slots`. Also returns the MIG
/// capability minors granted but not (yet) bound to a bit: denied for now.
pub fn cgroup_entries(grants: &Grants, tracker: &CgroupTracker, slots: &MigSlots) -> (Vec<(u64, GpuSet)>, Vec<u32>) {
    let sets: HashMap<&str, (GpuSet, Vec<u32>)> =
        grants.iter().map(|(id, g)| (id.as_str(), g.gpu_set(slots))).collect();
    let entries = tracker
        .iter()
        .filter_map(|(id, info)| {
            let cid = container_id_of(&info.rel)?;
            sets.get(cid).map(|(set, _)| (*id, *set))
        })
        .collect();
    let mut unbound: Vec<u32> = sets.into_values().flat_map(|(_, u)| u).collect();
    unbound.sort_unstable();
    unbound.dedup();
    (entries, unbound)
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
}
