//! State shared by the daemon's tasks and the control socket.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use warden_common::{
    STAT_ALLOWED_SHED, STAT_CGROUP_EVENTS, STAT_CGROUP_EVENTS_DROPPED, STAT_DECISIONS, STAT_DENIES_DROPPED,
    STAT_EVENTS, STAT_EVENTS_DROPPED,
};

use crate::{
    clock::now_rfc3339,
    control::server::Handler,
    files::{BackendChoice, Identity, roots::Roots},
    hooks::maps::VerdictCounts,
    hooks::{Hooks, maps::PolicyMaps},
    identity::{CgroupTracker, delay::DelayStats},
    policy::{CompiledPolicy, Mode, Policy},
    report::*,
};

pub struct Init {
    pub node: String,
    pub config: PathBuf,
    pub policy: Policy,
    pub compiled: Arc<CompiledPolicy>,
    pub maps: PolicyMaps,
    pub tracker: CgroupTracker,
    /// Identities an earlier agent pinned under the same policy file,
    /// kept until each cgroup's metadata is known (`identify::workload_of`).
    pub carried: HashMap<u64, u32>,
    /// The other kernel set holds an earlier agent's fill of the same
    /// policy file: its records and counters are named by this policy.
    pub previous_same: bool,
}

pub(super) struct Inner {
    pub(super) policy: Policy,
    /// The policy the hooks read now (that of set `maps.active_set()`).
    pub(super) compiled: Arc<CompiledPolicy>,
    /// The policy each kernel policy set holds: records name their ids
    /// with the set they were decided by.
    pub(super) set_policies: [Option<Arc<CompiledPolicy>>; 2],
    /// Kernel counters of sets refilled by reloads, by workload name
    /// (network, file, device).
    pub(super) harvested: HashMap<String, [VerdictCounts; 3]>,
    pub(super) maps: PolicyMaps,
    pub(super) tracker: CgroupTracker,
    pub(super) delays: DelayStats,
    pub(super) programs: Vec<ProgramStatus>,
    pub(super) loaded_at: String,
    /// cgroup hierarchy path → identity (cleared with the policy).
    pub(super) identity_cache: HashMap<String, Identity>,
    /// cgroup id → workload id carried over from an earlier agent (same
    /// policy file) until the cgroup's metadata is known.
    pub(super) carried: HashMap<u64, u32>,
}

/// File-segment enforcement state, for status.
#[derive(Default)]
pub struct FileState {
    pub choice: Option<BackendChoice>,
    pub failure: Option<String>,
    /// Userspace backend counters per workload id (0 = unidentified).
    pub counts: HashMap<u32, VerdictCounts>,
    /// Those counters by workload name, moved here by each reload (ids
    /// may name other workloads after it).
    pub harvested: HashMap<String, VerdictCounts>,
    pub roots: Option<Arc<Roots>>,
    pub ctx: Option<Arc<crate::daemon::files::FilesCtx>>,
}

/// The sinks, seen from status and the control socket.
pub struct PipelineHandle {
    pub fanout: Arc<crate::sinks::Fanout>,
    /// The node's event sequence (last number given).
    pub seq: Arc<AtomicU64>,
    pub otlp: Option<Arc<dyn Fn() -> OtlpStatus + Send + Sync>>,
}

impl PipelineHandle {
    /// The sink part of the event counters.
    fn status(&self) -> EventStatus {
        let f = &self.fanout;
        let (written, write_errors, jsonl_rotations) = f.jsonl_counts();
        let (subscribers, dropped) = f.tail.stats();
        EventStatus {
            written,
            write_errors,
            last_seq: self.seq.load(Ordering::Relaxed),
            summarized: f.counters.summarized.load(Ordering::Relaxed),
            summaries: f.counters.summaries.load(Ordering::Relaxed),
            loss_events: f.counters.loss_events.load(Ordering::Relaxed),
            jsonl: f.jsonl_target.clone(),
            jsonl_rotations,
            otlp: self.otlp.as_ref().map(|s| s()),
            tail: TailStatus { subscribers, dropped },
            ..Default::default()
        }
    }
}

pub struct Shared {
    node: String,
    config: PathBuf,
    started_at: String,
    inner: Mutex<Inner>,
    /// Pod and job metadata; lock order: `inner` before `meta`.
    pub(super) meta: std::sync::RwLock<crate::identity::meta::MetaStore>,
    /// Bumped whenever a cgroup is tracked or forgotten.
    pub(super) cgroups_gen: AtomicU64,
    /// Bumped after every metadata change (invalidates per-path caches).
    pub(super) meta_gen: AtomicU64,
    files: Mutex<FileState>,
    decode_errors: AtomicU64,
    /// The sinks and the OTLP exporter, once started.
    pipeline: std::sync::OnceLock<PipelineHandle>,
    /// CLOCK_MONOTONIC ns of the kernel-event task's last pass (liveness).
    heartbeat_ns: AtomicU64,
    /// Where /metrics is served (the bound address, port 0 resolved).
    metrics_address: std::sync::OnceLock<String>,
    pins: std::sync::OnceLock<PinStatus>,
    /// Set once every hook is attached and cgroups are identified.
    ready: std::sync::atomic::AtomicBool,
    devices: Mutex<super::devices::DeviceState>,
    policy_gen: AtomicU64,
    /// Serializes reloads (signal, command and file watch may race).
    pub(super) reload_lock: Mutex<()>,
    reload: Mutex<ReloadStatus>,
    pub(super) sources: Mutex<super::metadata::SourcesState>,
    /// Notified on every new cgroup in the root (GPU assignment refresh).
    pub cgroup_created: Arc<tokio::sync::Notify>,
}

impl Shared {
    pub fn new(i: Init) -> Self {
        let now = now_rfc3339();
        Self {
            node: i.node,
            config: i.config,
            started_at: now.clone(),
            inner: Mutex::new(Inner {
                policy: i.policy,
                set_policies: {
                    let active = i.maps.active_set() as usize;
                    let mut s = [None, None];
                    s[active] = Some(i.compiled.clone());
                    if i.previous_same {
                        s[1 - active] = Some(i.compiled.clone());
                    }
                    s
                },
                compiled: i.compiled,
                harvested: HashMap::new(),
                maps: i.maps,
                tracker: i.tracker,
                delays: DelayStats::default(),
                programs: Vec::new(),
                loaded_at: now,
                identity_cache: HashMap::new(),
                carried: i.carried,
            }),
            meta: Default::default(),
            meta_gen: AtomicU64::new(0),
            cgroups_gen: AtomicU64::new(0),
            files: Mutex::new(FileState::default()),
            decode_errors: AtomicU64::new(0),
            pipeline: Default::default(),
            heartbeat_ns: AtomicU64::new(crate::identity::delay::monotonic_ns()),
            metrics_address: Default::default(),
            pins: Default::default(),
            ready: Default::default(),
            devices: Mutex::new(Default::default()),
            policy_gen: AtomicU64::new(1),
            reload_lock: Mutex::new(()),
            reload: Default::default(),
            sources: Default::default(),
            cgroup_created: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock must not stop enforcement bookkeeping.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cgroup_root_abs(&self) -> PathBuf {
        self.lock().tracker.root_abs().to_path_buf()
    }

    pub fn metrics_config(&self) -> crate::policy::MetricsConfig {
        self.lock().policy.agent.metrics.clone()
    }

    pub fn set_metrics_address(&self, addr: String) {
        let _ = self.metrics_address.set(addr);
    }

    pub fn events_config(&self) -> crate::policy::EventsConfig {
        self.lock().policy.agent.events.clone()
    }

    pub fn set_programs(&self, hooks: &Hooks) {
        let p = hooks.pins();
        let _ =
            self.pins.set(PinStatus { dir: p.dir.display().to_string(), adopted: p.adopted, links: p.pinned_links() });
        self.lock().programs = hooks
            .attached
            .iter()
            .map(|a| ProgramStatus {
                name: a.name.into(),
                kind: a.kind.into(),
                attached_to: a.attached_to.clone(),
                program_id: a.program_id,
            })
            .collect();
    }

    pub fn file_verdict(&self, workload: Option<u32>, segment: u16, want: u8) -> (u8, u32) {
        self.lock().compiled.file_verdict(workload, segment, want)
    }

    /// Access bits granted to (workload, segment), if any rule covers it.
    pub fn file_access(&self, workload: Option<u32>, segment: u16) -> Option<u8> {
        let w = workload?;
        let g = self.lock();
        g.compiled
            .file_allow
            .binary_search_by_key(&(w, segment), |(k, _)| (k.workload_id, k.segment_id))
            .ok()
            .map(|i| g.compiled.file_allow[i].1.access)
    }

    fn files(&self) -> std::sync::MutexGuard<'_, FileState> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count_file(&self, workload: Option<u32>, verdict: u8) {
        let mut f = self.files();
        let c = f.counts.entry(workload.unwrap_or(0)).or_default();
        match verdict {
            warden_common::VERDICT_ALLOWED => c.allowed += 1,
            warden_common::VERDICT_DENIED => c.denied += 1,
            _ => c.audited += 1,
        }
    }

    /// Before a reload renumbers workloads: the userspace file counters of
    /// `old`'s ids, kept by name.
    pub(super) fn harvest_file_counts(&self, old: &CompiledPolicy) {
        let mut f = self.files();
        let f = &mut *f;
        for (id, c) in f.counts.drain() {
            if let Some(name) = workload_name(old, id) {
                *f.harvested.entry(name.to_string()).or_default() += c;
            }
        }
    }

    /// The resolved roots → the active kernel set.
    pub fn set_file_roots(&self, roots: &Roots) -> anyhow::Result<()> {
        self.lock().maps.set_file_roots(&roots.kernel_entries())?;
        Ok(())
    }

    pub fn file_roots(&self) -> Option<Arc<Roots>> {
        self.files().roots.clone()
    }

    /// A file backend was chosen at start (a reload cannot start one).
    pub fn file_backend_started(&self) -> bool {
        self.files().choice.is_some()
    }

    pub fn file_ctx(&self) -> Option<Arc<crate::daemon::files::FilesCtx>> {
        self.files().ctx.clone()
    }

    pub fn update_file_roots(&self, roots: Arc<Roots>) {
        self.files().roots = Some(roots);
    }

    pub fn set_file_failure(&self, reason: String) {
        self.files().failure = Some(reason);
    }

    pub fn set_file_backend(
        &self,
        choice: BackendChoice,
        roots: Arc<Roots>,
        ctx: Option<Arc<crate::daemon::files::FilesCtx>>,
    ) {
        let mut f = self.files();
        f.choice = Some(choice);
        f.roots = Some(roots);
        f.ctx = ctx;
    }

    pub fn record_delay(&self, us: u64) {
        self.lock().delays.record(us);
    }

    pub fn with_policy<R>(&self, f: impl FnOnce(&Policy) -> R) -> R {
        f(&self.lock().policy)
    }

    pub fn with_compiled<R>(&self, f: impl FnOnce(&CompiledPolicy) -> R) -> R {
        f(&self.lock().compiled)
    }

    pub fn devices(&self) -> std::sync::MutexGuard<'_, super::devices::DeviceState> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn device_table(&self) -> Arc<crate::devices::DeviceTable> {
        self.devices().table.clone()
    }

    /// Kernel maps and the cgroup tracker, under the state lock.
    pub fn with_maps<R>(&self, f: impl FnOnce(&mut PolicyMaps, &CgroupTracker) -> R) -> R {
        let mut g = self.lock();
        let g = &mut *g;
        f(&mut g.maps, &g.tracker)
    }

    /// What the fanotify event writer needs to name things, taken once
    /// (and again when `policy_generation` changes) so it never waits on
    /// the state lock per batch.
    pub fn events_snapshot(&self) -> (u64, Arc<CompiledPolicy>, crate::identity::cgroups::HierarchyPaths) {
        let g = self.lock();
        (self.policy_generation(), g.compiled.clone(), g.tracker.hierarchy_paths())
    }

    /// Bumped whenever the compiled policy is replaced.
    pub fn policy_generation(&self) -> u64 {
        self.policy_gen.load(Ordering::Acquire)
    }

    pub(super) fn bump_policy_generation(&self) {
        self.policy_gen.fetch_add(1, Ordering::AcqRel);
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    pub(super) fn reload_status(&self) -> std::sync::MutexGuard<'_, ReloadStatus> {
        self.reload.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a switch: the file backend and device state follow the new
    /// policy (the kernel set already holds its roots and nodes).
    pub(super) fn after_switch(&self, roots: Arc<Roots>, table: crate::devices::DeviceTable) {
        self.update_file_roots(roots);
        self.devices().table = Arc::new(table);
    }

    /// A `policy` event: every sink learns that the rules changed (or that a
    /// change was refused).
    pub(super) fn emit_policy_event(&self, o: &super::reload::Outcome) {
        let Some(p) = self.pipeline.get() else { return };
        let ev = crate::enrich::PolicyEvent::new(&p.seq, &self.node, o);
        let ev = Arc::new(crate::enrich::Event::Policy(ev));
        p.fanout.encode_and_deliver(&[ev], &mut Vec::new(), || {});
    }

    /// The cgroup tracker and the policies of both kernel sets, to name
    /// kernel records.
    pub fn with_identity<R>(&self, f: impl FnOnce(&CgroupTracker, Policies<'_>) -> R) -> R {
        let g = self.lock();
        f(&g.tracker, Policies { active: &g.compiled, sets: &g.set_policies })
    }

    pub fn stat(&self, index: u32) -> u64 {
        self.lock().maps.stat(index)
    }

    pub fn note_decode_errors(&self, n: u64) {
        if n > 0 {
            self.decode_errors.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn set_pipeline(&self, p: PipelineHandle) {
        let _ = self.pipeline.set(p);
    }

    pub fn heartbeat(&self) {
        self.heartbeat_ns.store(crate::identity::delay::monotonic_ns(), Ordering::Relaxed);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Liveness: the kernel-event task drains every 10 ms, so a pass
    /// older than a few seconds means the pipeline is stuck.
    pub fn live(&self) -> Result<(), String> {
        let age_ms = crate::identity::delay::monotonic_ns().saturating_sub(self.heartbeat_ns.load(Ordering::Relaxed))
            / 1_000_000;
        if age_ms > 5_000 { Err(format!("event pipeline stalled: last pass {age_ms} ms ago")) } else { Ok(()) }
    }

    /// Readiness: enforcing (hooks attached, cgroups identified) and live.
    pub fn ready(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Acquire) {
            return Err("starting: hooks not attached yet".into());
        }
        self.live()
    }

    /// Decisions the file backend could not queue for its event writer.
    pub fn file_events_dropped(&self) -> u64 {
        self.files().ctx.as_ref().map(|c| c.dropped.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn build_status(&self) -> StatusReport {
        let g = self.lock();
        let p = &g.policy;
        let c = &g.compiled;
        let by_workload = g.tracker.counts_by_workload();
        // One member per pod (its container's identity preferred), job or unit.
        let mut members: HashMap<u32, Vec<Arc<crate::identity::meta::WorkloadIdentity>>> = HashMap::new();
        for info in g.tracker.iter().map(|(_, i)| i) {
            let Some(key) = info.who.member_key() else { continue };
            let list = members.entry(info.workload.unwrap_or(0)).or_default();
            match list.iter().position(|m| m.member_key().as_ref() == Some(&key)) {
                Some(i) if list[i].container_id.is_none() && info.who.container_id.is_some() => {
                    list[i] = info.who.clone()
                }
                Some(_) => {}
                None if list.len() < MAX_MEMBERS => list.push(info.who.clone()),
                None => {}
            }
        }
        let files = self.files();
        let in_kernel = files.choice.as_ref().is_some_and(|c| c.backend == "lsm");
        // One row per workload id; id 0 gathers every unidentified cgroup.
        let row = |name: String, id: u32| {
            let [n, kf, d] = kernel_counts(&g, &name, id);
            let f = match in_kernel {
                true => kf,
                false => {
                    let mut f = files.counts.get(&id).copied().unwrap_or_default();
                    f += files.harvested.get(&name).copied().unwrap_or_default();
                    f
                }
            };
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
        let mut workloads: Vec<_> =
            c.workloads.iter().enumerate().map(|(i, n)| row(n.to_string(), i as u32 + 1)).collect();
        workloads.push(row(UNIDENTIFIED.into(), 0));
        drop(files);
        let network = EnforcementStatus {
            state: kernel_state(p.mode, p.segments.iter().filter(|s| !s.network.is_empty())),
            backend: "cgroup sock_addr (connect4/6, sendmsg4/6), in-kernel decision".into(),
            ..EnforcementStatus::not_configured("network")
        };
        let d = g.delays.summary();
        // Read before the struct literal: guards in it would live to its end.
        let (file_events_dropped, file_errors) = {
            let f = self.files();
            let ctx = f.ctx.as_ref();
            (
                ctx.map(|c| c.dropped.load(Ordering::Relaxed)).unwrap_or(0),
                ctx.map(|c| c.errors.load(Ordering::Relaxed)).unwrap_or(0),
            )
        };
        let sources = self.sources().clone();
        let file_status = self.file_enforcement(p.mode, c.has_file_segments(), p.segments.iter());
        let (device_status, gpu_assignment) = self.device_enforcement(p, c);
        StatusReport {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            node: self.node.clone(),
            kernel: crate::system::kernel::release(),
            started_at: self.started_at.clone(),
            mode: p.mode.to_string(),
            default_action: format!("{:?}", p.default_action).to_lowercase(),
            policy: PolicyStatus {
                file: self.config.display().to_string(),
                sha256: p.source_sha256.clone(),
                loaded_at: g.loaded_at.clone(),
                generation: self.policy_generation(),
                kernel_set: g.maps.active_set(),
                reload: self.reload_status().clone(),
                segments: c.segments.len(),
                workloads: c.workloads.len(),
                rules: c.rules.len(),
                prefixes_v4: c.v4.len(),
                prefixes_v6: c.v6.len(),
            },
            cgroup_root: g.tracker.root_abs().display().to_string(),
            programs: g.programs.clone(),
            enforcement: vec![network, file_status, device_status],
            workloads,
            events: EventStatus {
                kernel_emitted: g.maps.stat(STAT_EVENTS),
                kernel_dropped: g.maps.stat(STAT_EVENTS_DROPPED),
                kernel_dropped_denies: g.maps.stat(STAT_DENIES_DROPPED),
                kernel_allowed_shed: g.maps.stat(STAT_ALLOWED_SHED),
                kernel_dropped_per_cpu: g.maps.stat_per_cpu(STAT_EVENTS_DROPPED),
                decode_errors: self.decode_errors.load(Ordering::Relaxed),
                cgroup_events: g.maps.stat(STAT_CGROUP_EVENTS),
                cgroup_events_dropped: g.maps.stat(STAT_CGROUP_EVENTS_DROPPED),
                decisions: g.maps.stat(STAT_DECISIONS),
                file_events_dropped,
                file_errors,
                ..self.pipeline.get().map(PipelineHandle::status).unwrap_or_default()
            },
            identity: IdentityStatus {
                cgroups_tracked: g.tracker.len(),
                cgroups_identified: g.tracker.iter().filter(|(_, i)| i.workload.is_some()).count(),
                map_entries: g.maps.cgroup_entries(),
                carried_over: g.carried.len(),
                delay_samples: d.samples,
                delay_p50_us: d.p50_us,
                delay_p99_us: d.p99_us,
                delay_max_us: d.max_us,
                kubernetes: sources.kubernetes,
                slurm: sources.slurm,
            },
            gpu_assignment,
            metrics: self.metrics_address.get().cloned(),
            pins: self.pins.get().cloned().unwrap_or_default(),
        }
    }
}

/// The policies kernel records may have been decided by.
#[derive(Clone, Copy)]
pub struct Policies<'a> {
    pub active: &'a CompiledPolicy,
    sets: &'a [Option<Arc<CompiledPolicy>>; 2],
}

impl<'a> Policies<'a> {
    /// The policy of kernel set `set` (the active one if unknown).
    pub fn of(&self, set: u8) -> &'a CompiledPolicy {
        self.sets.get(set as usize).and_then(|p| p.as_deref()).unwrap_or(self.active)
    }
}

/// Name of workload `id` in `policy` (id 0: unidentified).
pub(super) fn workload_name(policy: &CompiledPolicy, id: u32) -> Option<&str> {
    if id == 0 { Some(UNIDENTIFIED) } else { policy.workload_name(id) }
}

const UNIDENTIFIED: &str = "(unidentified)";

/// Adds per-kind (network, file, device) counts.
pub(super) fn add_counts(total: &mut [VerdictCounts; 3], more: &[VerdictCounts; 3]) {
    for (t, c) in total.iter_mut().zip(more) {
        *t += *c;
    }
}

/// Kernel decisions (network, file, device) of workload `name` (id `id` in
/// the active policy): the active set's counters, the other set's under
/// that policy's id for the same name, and what reloads harvested.
fn kernel_counts(g: &Inner, name: &str, id: u32) -> [VerdictCounts; 3] {
    let active = g.maps.active_set();
    let mut total = g.maps.counts(active, id);
    let other = 1 - active;
    if let Some(p) = &g.set_policies[other as usize]
        && let Some(other_id) = g.maps.workload_ids(other).find(|i| workload_name(p, *i) == Some(name))
    {
        add_counts(&mut total, &g.maps.counts(other, other_id));
    }
    if let Some(h) = g.harvested.get(name) {
        add_counts(&mut total, h);
    }
    total
}

impl Shared {
    fn file_enforcement<'p>(
        &self,
        mode: Mode,
        configured: bool,
        segments: impl Iterator<Item = &'p crate::policy::Segment>,
    ) -> EnforcementStatus {
        let f = self.files();
        let mut e = EnforcementStatus::not_configured("files");
        if !configured {
            return e;
        }
        if let Some(c) = &f.choice {
            e.backend = c.backend.clone();
            e.reason = c.reason.clone();
            e.not_enforced = c.not_enforced.clone();
            e.state = match (mode, c.not_enforced.is_empty()) {
                (Mode::Enforce, false) => "partial".into(),
                _ => kernel_state(mode, segments.filter(|s| !s.paths.is_empty())),
            };
        }
        if let Some(r) = &f.roots {
            e.missing = r.missing.iter().map(|p| p.display().to_string()).collect();
        }
        let fan = f.ctx.as_ref().and_then(|c| c.fanotify.lock().unwrap_or_else(|p| p.into_inner()).clone());
        e.marked = fan.map(|fan| fan.marked().iter().map(|p| p.display().to_string()).collect()).unwrap_or_default();
        if let Some(why) = &f.failure {
            e.state = "failed".into();
            e.reason = why.clone();
        }
        e
    }

    fn device_enforcement(&self, p: &Policy, c: &CompiledPolicy) -> (EnforcementStatus, Option<AssignmentReport>) {
        let d = self.devices();
        let mut e =
            EnforcementStatus { missing: d.table.missing.clone(), ..EnforcementStatus::not_configured("devices") };
        if !c.has_device_segments() {
            return (e, None);
        }
        e.backend = "cgroup/dev (in-kernel decision on open and mknod)".into();
        e.state = kernel_state(p.mode, p.segments.iter().filter(|s| s.devices.is_some()));
        if let Some(why) = &d.failure {
            e.state = "failed".into();
            e.reason = why.clone();
        }
        let a = &d.assignment;
        let report = c.uses_assigned_gpus().then(|| AssignmentReport {
            containers: a.containers.len(),
            cgroups: a.cgroups,
            refreshes: a.refreshes,
            last_error: a.last_error.clone(),
            problems: a.problems.clone(),
        });
        (e, report)
    }
}

/// State of one kind of segment: not configured, audit, or enforced (and how
/// many of its segments are audited only).
fn kernel_state<'p>(mode: Mode, segments: impl Iterator<Item = &'p crate::policy::Segment>) -> String {
    let (mut n, mut audit) = (0, 0);
    for s in segments {
        n += 1;
        audit += usize::from(s.mode == Some(Mode::Audit));
    }
    match (mode, n, audit) {
        (_, 0, _) => "not-configured".into(),
        (Mode::Audit, ..) => "audit".into(),
        (Mode::Enforce, _, 0) => "enforced".into(),
        (Mode::Enforce, n, a) if a == n => "audit".into(),
        (Mode::Enforce, _, a) => format!("enforced ({a} segment{} in audit)", if a == 1 { "" } else { "s" }),
    }
}

impl crate::metrics::Source for Shared {
    fn status(&self) -> StatusReport {
        self.build_status()
    }

    fn live(&self) -> Result<(), String> {
        Shared::live(self)
    }

    fn ready(&self) -> Result<(), String> {
        Shared::ready(self)
    }
}

impl Handler for Shared {
    fn status(&self) -> StatusReport {
        self.build_status()
    }

    fn reload(&self) -> ReloadOutcome {
        Shared::reload(self, "command")
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
