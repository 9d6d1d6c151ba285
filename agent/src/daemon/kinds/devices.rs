//! Device segments: resolves protected nodes, attaches the cgroup/dev hook
//! (in-kernel decision on open and mknod) and keeps kubelet's GPU
//! assignment in the kernel.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use crate::{
    daemon::{
        Parts,
        lifecycle::{Enforcer, SetParts, StartCx},
    },
    devices::{DeviceTable, Grants, assigned, mig::MigSlots},
    enrich::{Event, GpuAssignmentEvent, Numbering},
    policy::{CompiledPolicy, Policy},
    report::{AssignmentReport, EnforcementStatus, StatusReport},
    settings::{AgentConfig, DevicesConfig},
    sinks::fanout::Fanout,
};

/// The GPU-set bits MIG capabilities borrow: one binding for every kernel
/// set and for `DEVICE_ASSIGNED`, kept for the agent's life (see
/// `devices::mig`). Resolving runs under the agent's reload lock; the
/// assignment loop takes this lock only to compute and confirm its sets.
static MIG_SLOTS: Mutex<MigSlots> = Mutex::new(MigSlots::new());

fn mig_slots() -> MutexGuard<'static, MigSlots> {
    MIG_SLOTS.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default, Clone, Debug)]
pub struct AssignmentStatus {
    /// Containers (by id) with GPUs or MIG devices, from the last good read.
    pub containers: Grants,
    /// Container cgroups with an entry in `DEVICE_ASSIGNED`.
    pub cgroups: usize,
    pub refreshes: u64,
    pub last_error: Option<String>,
    pub problems: Vec<String>,
    /// Refusals already announced by an event (announced again if they
    /// clear and come back).
    pub announced: HashSet<assigned::Refusal>,
}

/// Where agent-made events go.
#[derive(Clone)]
struct EventOut {
    fanout: Arc<Fanout>,
    numbering: Numbering,
    node: String,
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
    events: EventOut,
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
    let events = EventOut {
        fanout: cx.pipeline.fanout.clone(),
        numbering: cx.enricher.numbering(),
        node: cx.enricher.node.to_string(),
    };
    let me = Arc::new(CgroupDev {
        parts: cx.parts.clone(),
        config: cx.settings.devices.clone(),
        state: Default::default(),
        events,
    });
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
    crate::devices::resolve(&c.devices, &config.proc_root, &mut mig_slots())
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

    /// Writes each container cgroup's GPU set from a fresh assignment,
    /// and announces new refusals.
    fn apply(&self, a: assigned::Assignment) {
        let written = self.write_assigned(&a.by_container);
        let fresh: Vec<assigned::Refusal> = {
            let s = self.state();
            a.refusals.iter().filter(|r| !s.assignment.announced.contains(*r)).cloned().collect()
        };
        self.announce(&fresh);
        let mut s = self.state();
        s.assignment.refreshes += 1;
        let mut problems: Vec<String> = a.refusals.iter().map(|r| r.to_string()).collect();
        problems.extend(a.problems);
        match written {
            Ok((n, unbound)) => {
                s.assignment.cgroups = n;
                s.assignment.last_error = None;
                if !unbound.is_empty() {
                    let list: Vec<String> = unbound.iter().map(|m| crate::devices::cap_path(*m)).collect();
                    problems.push(format!(
                        "MIG capabilities not protected yet, denied until they are: {}",
                        list.join(", ")
                    ));
                }
            }
            Err(e) => s.assignment.last_error = Some(format!("writing DEVICE_ASSIGNED: {e}")),
        }
        s.assignment.problems = problems;
        s.assignment.announced = a.refusals.into_iter().collect();
        s.assignment.containers = a.by_container;
    }

    /// Computes every container cgroup's set under the current MIG binding
    /// and writes them; then bits released before that binding are free.
    /// Returns the cgroups written and the capabilities left without a bit.
    fn write_assigned(&self, grants: &Grants) -> Result<(usize, Vec<u32>), String> {
        let mut cell = self.parts.cell.lock();
        let t = self.parts.identities.lock();
        let mut slots = mig_slots();
        let generation = slots.generation();
        let (entries, unbound) = assigned::cgroup_entries(grants, &t.tracker, &slots);
        cell.maps.set_assigned(&entries).map_err(|e| e.to_string())?;
        slots.assignment_written(generation);
        Ok((entries.len(), unbound))
    }

    /// Re-applies the last assignment to a new cgroup tree state or MIG
    /// binding (cheap; no RPC).
    fn reapply_assignment(&self) {
        let containers = self.state().assignment.containers.clone();
        if containers.is_empty() {
            return;
        }
        if let Err(e) = self.write_assigned(&containers) {
            tracing::error!(error = %e, "cannot write GPU assignments");
        }
    }

    /// One `gpu_assignment` event per refusal, and a warning in the log.
    fn announce(&self, refusals: &[assigned::Refusal]) {
        if refusals.is_empty() {
            return;
        }
        let o = &self.events;
        let events: Vec<Arc<Event>> = refusals
            .iter()
            .map(|r| {
                tracing::warn!(refusal = %r, "GPU assignment refused: the container does not get this device");
                Arc::new(Event::Gpu(GpuAssignmentEvent::refused(&o.numbering, &o.node, r)))
            })
            .collect();
        o.fanout.encode_and_deliver(&events, &mut Vec::new(), || {});
    }
}

impl Enforcer for CgroupDev {
    fn commit(&self, _old: &CompiledPolicy, set: &SetParts) {
        self.state().table = set.devices.clone();
    }

    /// The new policy may name GPU indices a MIG capability had borrowed:
    /// containers get the capability's new bit.
    fn settle(&self) {
        if self.state().table.mig {
            self.reapply_assignment();
        }
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
        // A MIG layout can change at any time (mig-manager): follow it.
        if !configured(&compiled) || !(full || wildcards || old.mig || !old.missing.is_empty()) {
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
        let rebound = table.cap_slots != old.cap_slots;
        self.state().table = Arc::new(table);
        if rebound {
            // Containers get the bits of instances that just appeared.
            self.reapply_assignment();
        }
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
