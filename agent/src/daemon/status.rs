//! `warden status`, the metrics and the control socket all read one
//! `StatusReport`, assembled here from each part's own report: the policy
//! cell, the identity store, health, the sinks and every enforcer.
use std::{collections::HashMap, sync::Arc};

use warden_common::{
    STAT_ALLOWED_SHED, STAT_BACKSTOP_DROPS, STAT_CGROUP_EVENTS, STAT_CGROUP_EVENTS_DROPPED, STAT_DECISIONS,
    STAT_DENIES_DROPPED, STAT_EVENTS, STAT_EVENTS_DROPPED,
};

use super::{Agent, identities::Tracked, kinds::KINDS, policy_cell::CellState, policy_cell::UNIDENTIFIED};
use crate::report::words;
use crate::{control::server::Handler, identity::meta::WorkloadIdentity, report::*};

impl Agent {
    fn build_status(&self) -> StatusReport {
        // Lock order: the cell, then the identity store.
        let cell = self.parts.cell.lock();
        let tracked = self.parts.identities.lock();
        let p = &cell.policy;
        let c = &cell.compiled;
        let mut report = StatusReport {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            node: self.node.clone(),
            kernel: crate::system::kernel::release(),
            started_at: self.started_at.clone(),
            mode: p.mode.to_string(),
            default_action: format!("{:?}", p.default_action).to_lowercase(),
            policy: self.policy_report(&cell),
            cgroup_root: tracked.tracker.root_abs().display().to_string(),
            cgroup_namespace: crate::system::cgroupns::state().to_string(),
            programs: self.parts.health.programs(),
            enforcement: KINDS
                .iter()
                .zip(&self.enforcers)
                .map(|(k, e)| match e {
                    Some(e) => e.report(p, c),
                    None => EnforcementStatus::not_configured(k.name),
                })
                .collect(),
            workloads: self.workload_rows(&cell, &tracked),
            events: self.events_report(&cell),
            identity: self.identity_report(&cell, &tracked),
            gpu_assignment: None,
            metrics: self.parts.health.metrics_address(),
            pins: self.parts.health.pins(),
            integrity: self.parts.health.integrity(),
        };
        drop(tracked);
        drop(cell);
        for e in self.enforcers() {
            e.extend(&mut report);
        }
        unverified_unless_checked(&mut report);
        pinned_only_on_the_host(&mut report);
        report
    }

    fn policy_report(&self, cell: &CellState) -> PolicyStatus {
        let (p, c) = (&cell.policy, &cell.compiled);
        PolicyStatus {
            file: self.parts.cell.config_path().display().to_string(),
            sha256: p.source_sha256.clone(),
            loaded_at: cell.loaded_at().to_string(),
            generation: self.parts.cell.generation(),
            kernel_set: cell.maps.active_set(),
            reload: self.parts.health.reload_status().clone(),
            segments: c.segments.len(),
            workloads: c.workloads.len(),
            rules: c.rules.len(),
            prefixes_v4: c.v4.len(),
            prefixes_v6: c.v6.len(),
        }
    }

    /// One row per workload id; id 0 gathers every unidentified cgroup.
    fn workload_rows(&self, cell: &CellState, t: &Tracked) -> Vec<WorkloadStatus> {
        let by_workload = t.tracker.counts_by_workload();
        let members = members(t);
        let row = |name: String, id: u32| {
            let mut counts = cell.kernel_counts(&name, id);
            // A userspace backend's own counts replace its kind's kernel
            // ones (the columns follow `KINDS`: network, files, devices).
            for (i, e) in self.enforcers.iter().enumerate() {
                if let (Some(slot), Some(own)) = (counts.get_mut(i), e.as_ref().and_then(|e| e.counts(&name, id))) {
                    *slot = own;
                }
            }
            let [n, f, d] = counts;
            WorkloadStatus {
                name,
                id,
                cgroups: by_workload.get(&(id != 0).then_some(id)).copied().unwrap_or(0),
                allowed: n.allowed,
                denied: n.denied,
                audited: n.audited,
                file_allowed: f.allowed,
                file_denied: f.denied,
                file_audited: f.audited,
                device_allowed: d.allowed,
                device_denied: d.denied,
                device_audited: d.audited,
                members: members.get(&id).map(|m| m.iter().map(|w| (**w).clone()).collect()).unwrap_or_default(),
            }
        };
        let mut rows: Vec<_> =
            cell.compiled.workloads.iter().enumerate().map(|(i, n)| row(n.to_string(), i as u32 + 1)).collect();
        rows.push(row(UNIDENTIFIED.into(), 0));
        rows
    }

    fn events_report(&self, cell: &CellState) -> EventStatus {
        let m = &cell.maps;
        EventStatus {
            kernel_emitted: m.stat(STAT_EVENTS),
            kernel_dropped: m.stat(STAT_EVENTS_DROPPED),
            kernel_dropped_denies: m.stat(STAT_DENIES_DROPPED),
            kernel_allowed_shed: m.stat(STAT_ALLOWED_SHED),
            backstop_drops: m.stat(STAT_BACKSTOP_DROPS),
            kernel_dropped_per_cpu: m.stat_per_cpu(STAT_EVENTS_DROPPED),
            decode_errors: self.parts.health.decode_errors(),
            cgroup_events: m.stat(STAT_CGROUP_EVENTS),
            cgroup_events_dropped: m.stat(STAT_CGROUP_EVENTS_DROPPED),
            decisions: m.stat(STAT_DECISIONS),
            ..self.pipeline.get().map(super::events::SinkHandle::status).unwrap_or_default()
        }
    }

    fn identity_report(&self, cell: &CellState, t: &Tracked) -> IdentityStatus {
        let d = t.delays.summary();
        let sources = self.parts.identities.sources().clone();
        IdentityStatus {
            cgroups_tracked: t.tracker.len(),
            cgroups_identified: t.tracker.iter().filter(|(_, i)| i.workload.is_some()).count(),
            map_entries: cell.maps.cgroup_entries(),
            carried_over: t.carried.len(),
            delay_samples: d.samples,
            delay_p50_us: d.p50_us,
            delay_p99_us: d.p99_us,
            delay_max_us: d.max_us,
            kubernetes: sources.kubernetes,
            slurm: sources.slurm,
        }
    }
}

/// "enforced" (or "partial") is only said of what the guard verified at most
/// `VERIFIED_MAX_AGE_MS` ago with nothing left broken.
fn unverified_unless_checked(report: &mut StatusReport) {
    let i = &report.integrity;
    if i.verified {
        return;
    }
    let why = match (i.broken.first(), i.checked_ms_ago) {
        (Some(b), _) => format!("not whole: {b}"),
        (None, Some(ms)) => format!("last verified {ms} ms ago"),
        (None, None) => "not verified yet".into(),
    };
    for e in &mut report.enforcement {
        if e.state == "enforced" || e.state == "partial" {
            e.reason = format!("{} ({why}); {}", e.state, e.reason);
            e.state = "unverified".into();
        }
    }
}

/// Pins outlive the agent only on the host's bpffs: elsewhere no kind
/// claims to keep enforcing while the agent is down.
fn pinned_only_on_the_host(report: &mut StatusReport) {
    if report.pins.host_bpffs {
        return;
    }
    for e in &mut report.enforcement {
        if e.restart == words::RESTART_PINNED {
            e.restart = words::RESTART_POD_BPFFS.into();
        }
    }
}

/// One member per pod (its container's identity preferred), job or unit.
fn members(t: &Tracked) -> HashMap<u32, Vec<Arc<WorkloadIdentity>>> {
    let mut members: HashMap<u32, Vec<Arc<WorkloadIdentity>>> = HashMap::new();
    for info in t.tracker.iter().map(|(_, i)| i) {
        let Some(key) = info.who.member_key() else { continue };
        let list = members.entry(info.workload.unwrap_or(0)).or_default();
        match list.iter().position(|m| m.member_key().as_ref() == Some(&key)) {
            Some(i) if list[i].container_id.is_none() && info.who.container_id.is_some() => list[i] = info.who.clone(),
            Some(_) => {}
            None if list.len() < MAX_MEMBERS => list.push(info.who.clone()),
            None => {}
        }
    }
    members
}

impl crate::metrics::Source for Agent {
    fn status(&self) -> StatusReport {
        self.build_status()
    }

    fn live(&self) -> Result<(), String> {
        self.parts.health.live()
    }

    fn ready(&self) -> Result<(), String> {
        self.parts.health.ready()
    }
}

impl Handler for Agent {
    fn status(&self) -> StatusReport {
        self.build_status()
    }

    fn reload(&self) -> ReloadOutcome {
        Agent::reload(self, "command")
    }

    fn events(
        &self,
        filter: crate::sinks::tail::Filter,
        tail: usize,
        follow: bool,
    ) -> (Vec<Arc<crate::enrich::Event>>, Option<crate::sinks::tail::Subscription>) {
        match self.pipeline.get() {
            Some(p) => p.fanout.tail.subscribe(filter, tail, follow),
            None => (Vec::new(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    /// A workload row's counter columns are per kind, in `KINDS` order.
    #[test]
    fn kinds_follow_the_counter_columns() {
        let names: Vec<_> = super::KINDS.iter().map(|k| k.name).collect();
        assert_eq!(names, ["network", "files", "devices"]);
    }
}
