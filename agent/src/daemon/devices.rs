//! Wires device segments to the daemon: resolves protected nodes, attaches
//! the cgroup/dev hook and keeps kubelet's GPU assignment in the kernel.
use std::{sync::Arc, time::Duration};

use warden_common::GpuSet;

use super::state::Shared;
use crate::{
    devices::{DeviceTable, assigned},
    hooks::Hooks,
};

/// Device enforcement state, for status and event names.
#[derive(Default)]
pub struct DeviceState {
    pub table: Arc<DeviceTable>,
    /// Why the hook is not enforcing, if it is not.
    pub failure: Option<String>,
    pub assignment: AssignmentStatus,
    /// `start` ran: the hook is attached (or, in audit mode, failed and said so).
    pub started: bool,
}

#[derive(Default, Clone, Debug)]
pub struct AssignmentStatus {
    /// Containers (by id) with GPUs, from the last good read.
    pub containers: std::collections::HashMap<String, GpuSet>,
    /// Container cgroups with an entry in `DEVICE_ASSIGNED`.
    pub cgroups: usize,
    pub refreshes: u64,
    pub last_error: Option<String>,
    pub problems: Vec<String>,
}

/// Resolves the nodes, writes them, then attaches the hook (fail closed: no
/// process can open a protected node between attach and map write).
pub fn start(shared: &Arc<Shared>, hooks: &mut Hooks, enforce: bool) -> anyhow::Result<()> {
    let table = resolve(shared);
    for m in &table.missing {
        tracing::warn!(device = %m, "device segment node not resolved: not protected until it is");
    }
    shared.with_maps(|maps, _| maps.set_device_nodes(&table.entries()))?;
    shared.devices().table = Arc::new(table);
    if let Err(e) = hooks.attach_devices(&shared.cgroup_root_abs()) {
        let why = format!("the cgroup/dev hook cannot be attached: {e}");
        if enforce {
            anyhow::bail!("{why}; refusing to start in enforce mode (device segments would be unprotected)");
        }
        tracing::error!("{why}");
        shared.devices().failure = Some(why);
    }
    shared.devices().started = true;
    Ok(())
}

fn resolve(shared: &Shared) -> DeviceTable {
    let (specs, proc_root) = shared.with_compiled(|c| (c.devices.clone(), c.devices_config.proc_root.clone()));
    crate::devices::resolve(&specs, &proc_root)
}

/// Re-resolves nodes (a driver loaded, an RDMA device appeared) and writes
/// any change. `full`: also when the table looks complete; otherwise only a
/// table that can still change (something unresolved, or a wildcard pattern
/// that a new node may match) is re-read.
pub fn recheck_nodes(shared: &Shared, full: bool) {
    // Not in the middle of a reload: it would write the old policy's nodes.
    let _serial = shared.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
    let old = shared.device_table();
    let (configured, wildcards) = shared.with_compiled(|c| {
        let patterns = c.devices.iter().flat_map(|d| &d.spec.paths);
        (c.has_device_segments(), patterns.into_iter().any(|p| p.pattern.to_string_lossy().contains(['*', '?', '['])))
    });
    if !configured || !(full || wildcards || !old.missing.is_empty()) {
        return;
    }
    let table = resolve(shared);
    if table == *old {
        return;
    }
    if let Err(e) = shared.with_maps(|maps, _| maps.set_device_nodes(&table.entries())) {
        tracing::error!(error = %e, "cannot write protected device nodes");
        return;
    }
    for (_, (_, name)) in table.nodes.iter().filter(|(k, _)| !old.nodes.contains_key(k)) {
        tracing::info!(device = %name, "device node now protected");
    }
    shared.devices().table = Arc::new(table);
}

/// Reads kubelet's assignment every `refresh` and whenever a cgroup is
/// created (a new container must get its GPUs before it opens them), and
/// writes each container cgroup's GPU set. On a failed read the last good
/// assignment stays: GPUs of running containers do not change, and
/// containers not yet known get nothing (fail closed).
pub async fn assignment_loop(shared: Arc<Shared>) -> anyhow::Result<()> {
    let wake = shared.cgroup_created.clone();
    loop {
        let cfg = shared.with_compiled(|c| c.uses_assigned_gpus().then(|| c.devices_config.clone()));
        let refresh = cfg.as_ref().map_or(Duration::from_secs(5), |c| Duration::from_millis(c.refresh_ms as u64));
        if let Some(cfg) = cfg {
            match assigned::fetch(&cfg).await {
                Ok(a) => apply(&shared, a),
                Err(e) => {
                    let mut d = shared.devices();
                    if d.assignment.last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(error = %e, "cannot read GPU assignments; keeping the last good ones");
                    }
                    d.assignment.last_error = Some(e);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(refresh) => {}
            _ = wake.notified() => {
                // Let the runtime finish creating the container before asking it.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn apply(shared: &Shared, a: assigned::Assignment) {
    let result = shared.with_maps(|maps, tracker| {
        let entries = assigned::cgroup_entries(&a.by_container, tracker);
        maps.set_assigned(&entries).map(|_| entries.len())
    });
    let mut d = shared.devices();
    d.assignment.refreshes += 1;
    match result {
        Ok(n) => {
            d.assignment.cgroups = n;
            d.assignment.last_error = None;
        }
        Err(e) => d.assignment.last_error = Some(format!("writing DEVICE_ASSIGNED: {e}")),
    }
    d.assignment.problems = a.problems;
    d.assignment.containers = a.by_container;
}

/// Re-applies the last assignment to a new cgroup tree state (cheap; no RPC).
pub fn reapply_assignment(shared: &Shared) {
    let containers = shared.devices().assignment.containers.clone();
    if containers.is_empty() {
        return;
    }
    let _ = shared.with_maps(|maps, tracker| maps.set_assigned(&assigned::cgroup_entries(&containers, tracker)));
}
