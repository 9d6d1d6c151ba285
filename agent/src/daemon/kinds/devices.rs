//! Device segments: resolves protected nodes, attaches the cgroup/dev hook
//! (in-kernel decision on open and mknod) and keeps kubelet's GPU
//! assignment in the kernel.
use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use warden_common::GpuSet;

use crate::{
    daemon::{
        Parts,
        lifecycle::{Enforcer, SetParts, StartCx},
    },
    devices::{DeviceTable, assigned},
    policy::{CompiledPolicy, Policy},
    report::{AssignmentReport, EnforcementStatus, StatusReport},
    settings::{AgentConfig, DevicesConfig},
};

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

#[derive(Default)]
struct State {
    table: Arc<DeviceTable>,
    /// Why the hook is not enforcing, if it is not.
    failure: Option<String>,
    assignment: AssignmentStatus,
}

pub struct CgroupDev {
    parts: Parts,
    /// `agent.devices` as the agent started with it.
    config: DevicesConfig,
    state: Mutex<State>,
}

pub fn configured(c: &CompiledPolicy) -> bool {
    c.has_device_segments()
}

/// Resolves the nodes, writes them, then attaches the hook (fail closed: no
/// process can open a protected node between attach and map write).
pub fn start(cx: &mut StartCx<'_>) -> anyhow::Result<Option<Arc<dyn Enforcer>>> {
    if !configured(cx.compiled) {
        return Ok(None);
    }
    let me =
        Arc::new(CgroupDev { parts: cx.parts.clone(), config: cx.settings.devices.clone(), state: Default::default() });
    // The first kernel set holds the nodes already.
    let table = cx.set.devices.clone();
    for m in &table.missing {
        tracing::warn!(device = %m, "device segment node not resolved: not protected until it is");
    }
    me.state().table = table;
    cx.tasks.push(Box::pin(assignment_loop(me.clone())));
    if let Err(e) = cx.hooks.attach_devices(&cx.parts.identities.cgroup_root_abs()) {
        let why = format!("the cgroup/dev hook cannot be attached: {e}");
        if cx.enforce {
            anyhow::bail!("{why}; refusing to start in enforce mode (device segments would be unprotected)");
        }
        tracing::error!("{why}");
        me.state().failure = Some(why);
    }
    Ok(Some(me))
}

fn resolve_table(c: &CompiledPolicy, config: &DevicesConfig) -> DeviceTable {
    crate::devices::resolve(&c.devices, &config.proc_root)
}

/// The protected nodes of `policy` as they exist on this node.
pub fn resolve(policy: &CompiledPolicy, settings: &AgentConfig, set: &mut SetParts) {
    let t = resolve_table(policy, &settings.devices);
    set.device_nodes = t.entries();
    set.devices = Arc::new(t);
}

impl CgroupDev {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes each container cgroup's GPU set from a fresh assignment.
    fn apply(&self, a: assigned::Assignment) {
        let result = {
            let mut cell = self.parts.cell.lock();
            let t = self.parts.identities.lock();
            let entries = assigned::cgroup_entries(&a.by_container, &t.tracker);
            cell.maps.set_assigned(&entries).map(|_| entries.len())
        };
        let mut s = self.state();
        s.assignment.refreshes += 1;
        match result {
            Ok(n) => {
                s.assignment.cgroups = n;
                s.assignment.last_error = None;
            }
            Err(e) => s.assignment.last_error = Some(format!("writing DEVICE_ASSIGNED: {e}")),
        }
        s.assignment.problems = a.problems;
        s.assignment.containers = a.by_container;
    }

    /// Re-applies the last assignment to a new cgroup tree state (cheap; no RPC).
    fn reapply_assignment(&self) {
        let containers = self.state().assignment.containers.clone();
        if containers.is_empty() {
            return;
        }
        let mut cell = self.parts.cell.lock();
        let t = self.parts.identities.lock();
        let _ = cell.maps.set_assigned(&assigned::cgroup_entries(&containers, &t.tracker));
    }
}

impl Enforcer for CgroupDev {
    fn commit(&self, _old: &CompiledPolicy, set: &SetParts) {
        self.state().table = set.devices.clone();
    }

    /// Re-resolves nodes (a driver loaded, an RDMA device appeared) and
    /// writes any change. `full`: also when the table looks complete;
    /// otherwise only a table that can still change (something unresolved,
    /// or a wildcard pattern that a new node may match) is re-read.
    fn recheck(&self, full: bool) {
        let old = self.state().table.clone();
        let compiled = self.parts.cell.compiled();
        let wildcards = compiled
            .devices
            .iter()
            .flat_map(|d| &d.spec.paths)
            .any(|p| p.pattern.to_string_lossy().contains(['*', '?', '[']));
        if full {
            self.reapply_assignment();
        }
        if !configured(&compiled) || !(full || wildcards || !old.missing.is_empty()) {
            return;
        }
        let table = resolve_table(&compiled, &self.config);
        if table == *old {
            return;
        }
        if let Err(e) = self.parts.cell.lock().maps.set_device_nodes(&table.entries()) {
            tracing::error!(error = %e, "cannot write protected device nodes");
            return;
        }
        for (_, (_, name)) in table.nodes.iter().filter(|(k, _)| !old.nodes.contains_key(k)) {
            tracing::info!(device = %name, "device node now protected");
        }
        self.state().table = Arc::new(table);
    }

    fn report(&self, policy: &Policy, compiled: &CompiledPolicy) -> EnforcementStatus {
        let s = self.state();
        let mut e =
            EnforcementStatus { missing: s.table.missing.clone(), ..EnforcementStatus::not_configured("devices") };
        if !configured(compiled) {
            return e;
        }
        e.backend = crate::report::words::DEVICES_BACKEND.into();
        e.restart = crate::report::words::RESTART_PINNED.into();
        e.state = super::kernel_state(policy.mode, policy.segments.iter().filter(|s| s.devices.is_some()));
        if let Some(why) = &s.failure {
            e.state = "failed".into();
            e.reason = why.clone();
        }
        e
    }

    fn extend(&self, report: &mut StatusReport) {
        if !self.parts.cell.compiled().uses_assigned_gpus() {
            return;
        }
        let a = &self.state().assignment;
        report.gpu_assignment = Some(AssignmentReport {
            containers: a.containers.len(),
            cgroups: a.cgroups,
            refreshes: a.refreshes,
            last_error: a.last_error.clone(),
            problems: a.problems.clone(),
        });
    }

    fn device_table(&self) -> Option<Arc<DeviceTable>> {
        Some(self.state().table.clone())
    }
}

/// Reads kubelet's assignment every `refresh` and whenever a cgroup is
/// created (a new container must get its GPUs before it opens them), and
/// writes each container cgroup's GPU set. On a failed read the last good
/// assignment stays: GPUs of running containers do not change, and
/// containers not yet known get nothing (fail closed).
async fn assignment_loop(me: Arc<CgroupDev>) -> anyhow::Result<()> {
    let wake = me.parts.identities.cgroup_created.clone();
    loop {
        let compiled = me.parts.cell.compiled();
        let cfg = compiled.uses_assigned_gpus().then_some(&me.config);
        let refresh = cfg.as_ref().map_or(Duration::from_secs(5), |c| Duration::from_millis(c.refresh_ms as u64));
        if let Some(cfg) = cfg {
            match assigned::fetch(cfg).await {
                Ok(a) => me.apply(a),
                Err(e) => {
                    let mut s = me.state();
                    if s.assignment.last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(error = %e, "cannot read GPU assignments; keeping the last good ones");
                    }
                    s.assignment.last_error = Some(e);
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
