//! The identity store: cgroup → workload, on creation, on a full rescan,
//! and again whenever pod or job metadata changes (a label edit switches
//! enforcement, no restart). It owns the cgroup tracker, the pod and job
//! metadata, identities carried over from an earlier agent, and the
//! per-path cache the userspace file backend reads.
//!
//! Every change of a cgroup's workload is written to the kernel's active
//! set while the policy cell is locked: callers pass its `CellState`, so
//! a reload can never interleave with one (lock order: cell, then this
//! store, then metadata).
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use super::policy_cell::CellState;
use crate::{
    files::Identity,
    identity::{
        CgroupInfo, CgroupTracker,
        delay::DelayStats,
        meta::{Changed, MetaStore, WorkloadIdentity},
    },
    policy::CompiledPolicy,
    report::SourceStatus,
};

/// Metadata sources' status, for `warden status`.
#[derive(Clone, Debug, Default)]
pub struct SourcesState {
    pub kubernetes: SourceStatus,
    pub slurm: SourceStatus,
}

pub struct Tracked {
    pub tracker: CgroupTracker,
    /// cgroup id → workload id carried over from an earlier agent (same
    /// policy file) until the cgroup's metadata is known.
    pub carried: HashMap<u64, u32>,
    pub delays: DelayStats,
    /// cgroup hierarchy path → identity, valid for `cache_policy` and the
    /// current metadata only.
    cache: HashMap<String, Identity>,
    cache_policy: Arc<CompiledPolicy>,
}

pub struct IdentityStore {
    tracked: Mutex<Tracked>,
    meta: RwLock<MetaStore>,
    /// Bumped whenever a cgroup is tracked or forgotten.
    cgroups_gen: AtomicU64,
    /// Bumped after every metadata change (invalidates per-path caches).
    meta_gen: AtomicU64,
    sources: Mutex<SourcesState>,
    /// Notified on every new cgroup in the root (GPU assignment refresh).
    pub cgroup_created: Arc<tokio::sync::Notify>,
}

/// A cgroup's workload under `compiled`. Until the metadata its selectors
/// need is known (pod list, Slurm job), a cgroup an earlier agent had
/// identified under the same policy file keeps that identity: the kernel
/// enforced it all along, and dropping it would fail the workload closed
/// for as long as the API server takes to answer.
pub fn workload_of(
    compiled: &CompiledPolicy,
    carried: &HashMap<u64, u32>,
    meta: &MetaStore,
    id: u64,
    rel: &str,
    origin: &crate::identity::path::PathIdentity,
) -> Option<u32> {
    match carried.get(&id) {
        Some(&w) if !meta.knows(origin) => Some(w),
        _ => compiled.workload_for(rel, &meta.facts(origin)),
    }
}

/// A cgroup's record under `compiled` and the current metadata.
fn classify(t: &Tracked, compiled: &CompiledPolicy, meta: &MetaStore, id: u64, rel: String) -> CgroupInfo {
    let origin = t.tracker.origin_of(&rel);
    let workload = workload_of(compiled, &t.carried, meta, id, &rel, &origin);
    let who = Arc::new(meta.identity(&origin));
    CgroupInfo { rel, workload, origin, who }
}

fn write_identity(cell: &mut CellState, info: &CgroupInfo, id: u64) {
    if let Err(e) = cell.maps.set_cgroup(id, info.workload) {
        // Left unidentified in the kernel: fail closed, but say so.
        tracing::error!(cgroup = %info.rel, error = %e, "cannot write cgroup identity");
    }
}

/// Identities of every tracked cgroup under a policy about to be installed.
pub struct Staged {
    by_cgroup: HashMap<u64, Option<u32>>,
    compiled: Arc<CompiledPolicy>,
}

impl Staged {
    /// The (cgroup, workload) entries of the kernel set.
    pub fn entries(&self) -> Vec<(u64, u32)> {
        self.by_cgroup.iter().filter_map(|(id, w)| w.map(|w| (*id, w))).collect()
    }
}

impl IdentityStore {
    pub fn new(tracker: CgroupTracker, carried: HashMap<u64, u32>, compiled: Arc<CompiledPolicy>) -> Self {
        let tracked =
            Tracked { tracker, carried, delays: DelayStats::default(), cache: HashMap::new(), cache_policy: compiled };
        Self {
            tracked: Mutex::new(tracked),
            meta: Default::default(),
            cgroups_gen: AtomicU64::new(0),
            meta_gen: AtomicU64::new(0),
            sources: Default::default(),
            cgroup_created: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta(&self) -> RwLockReadGuard<'_, MetaStore> {
        self.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sources(&self) -> MutexGuard<'_, SourcesState> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cgroup_root_abs(&self) -> PathBuf {
        self.lock().tracker.root_abs().to_path_buf()
    }

    /// The cgroup root as /proc/<pid>/cgroup names it.
    pub fn cgroup_root_in_hierarchy(&self) -> String {
        self.lock().tracker.root_in_hierarchy()
    }

    /// Identifies one new cgroup from its tracepoint path; returns whether it
    /// was inside our root and is now tracked.
    pub fn add_cgroup(&self, cell: &mut CellState, id: u64, tp_path: &str, truncated: bool) -> bool {
        let mut t = self.lock();
        let rel = if truncated { t.tracker.find_by_id(id) } else { t.tracker.resolve_tp_path(tp_path, id) };
        let Some(rel) = rel else { return false };
        let info = classify(&t, &cell.compiled, &self.meta(), id, rel);
        write_identity(cell, &info, id);
        t.tracker.insert(id, info);
        drop(t);
        self.cgroups_gen.fetch_add(1, Ordering::AcqRel);
        self.cgroup_created.notify_one();
        true
    }

    pub fn remove_cgroup(&self, cell: &mut CellState, id: u64) {
        let mut t = self.lock();
        t.carried.remove(&id);
        if t.tracker.remove(id).is_some() {
            let _ = cell.maps.set_cgroup(id, None);
            self.cgroups_gen.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn record_delay(&self, us: u64) {
        self.lock().delays.record(us);
    }

    /// After deletions: returns memory held for cgroups that are gone to the
    /// system, so churn (pods come and go all day) does not ratchet it up.
    pub fn compact(&self, cell: &mut CellState) {
        if self.lock().tracker.compaction_due() {
            cell.maps.compact();
            super::heap::trim();
        }
    }

    /// Makes tracker and kernel map match the cgroup tree exactly.
    pub fn reconcile(&self, cell: &mut CellState) {
        let mut t = self.lock();
        let t = &mut *t;
        let meta = self.meta();
        let found = t.tracker.scan();
        let present: HashSet<u64> = found.iter().map(|(id, _)| *id).collect();
        for (id, rel) in found {
            let info = classify(t, &cell.compiled, &meta, id, rel);
            if t.tracker.get(id) != Some(&info) {
                write_identity(cell, &info, id);
                t.tracker.insert(id, info);
            }
        }
        // Carried identities serve only cgroups that exist and still wait for metadata.
        let tracker = &t.tracker;
        t.carried.retain(|id, _| present.contains(id) && tracker.get(*id).is_some_and(|i| !meta.knows(&i.origin)));
        let gone: Vec<u64> = t.tracker.iter().map(|(id, _)| *id).filter(|id| !present.contains(id)).collect();
        for id in gone {
            t.tracker.remove(id);
            let _ = cell.maps.set_cgroup(id, None);
        }
        // A rescan may have found or lost cgroups the records missed.
        self.cgroups_gen.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies a metadata update, then re-identifies exactly the cgroups it
    /// touches. Returns how many cgroups changed workload.
    pub fn update_metadata(&self, cell: &super::PolicyCell, f: impl FnOnce(&mut MetaStore) -> Changed) -> usize {
        let changed = f(&mut self.meta.write().unwrap_or_else(|p| p.into_inner()));
        // A relist may settle carried identities without changing any pod.
        if changed.is_empty() && self.lock().carried.is_empty() {
            return 0;
        }
        // After the write: a reader seeing the new generation sees the new data.
        self.meta_gen.fetch_add(1, Ordering::AcqRel);
        let mut cell = cell.lock();
        let mut t = self.lock();
        let t = &mut *t;
        let meta = self.meta();
        // Decisions cached per cgroup path may rest on the old metadata.
        t.cache.clear();
        let mut switched = 0;
        let mut touched: Vec<(u64, String)> =
            t.tracker.iter().filter(|(_, i)| changed.touches(&i.origin)).map(|(id, i)| (*id, i.rel.clone())).collect();
        // Carried identities whose metadata is now known: decided afresh.
        let settled: Vec<u64> =
            t.carried.keys().copied().filter(|id| t.tracker.get(*id).is_none_or(|i| meta.knows(&i.origin))).collect();
        for id in settled {
            t.carried.remove(&id);
            if let Some(i) = t.tracker.get(id) {
                touched.push((id, i.rel.clone()));
            }
        }
        for (id, rel) in touched {
            let info = classify(t, &cell.compiled, &meta, id, rel);
            if t.tracker.get(id).is_some_and(|old| old.workload != info.workload) {
                switched += 1;
                write_identity(&mut cell, &info, id);
            }
            t.tracker.insert(id, info);
        }
        switched
    }

    /// Every tracked cgroup's identity under `compiled`, for the kernel set
    /// a reload is about to fill. `same_file`: carried identities stay
    /// valid (they are ids of the file they were pinned under).
    pub fn stage(&self, _cell: &CellState, compiled: &Arc<CompiledPolicy>, same_file: bool) -> Staged {
        let mut t = self.lock();
        if !same_file {
            t.carried.clear();
        }
        let meta = self.meta();
        let by_cgroup = t
            .tracker
            .iter()
            .map(|(id, info)| (*id, workload_of(compiled, &t.carried, &meta, *id, &info.rel, &info.origin)))
            .collect();
        Staged { by_cgroup, compiled: compiled.clone() }
    }

    /// Every cgroup in the tree under `compiled`, before anything is tracked
    /// (the first kernel set). Carried identities count: same file.
    pub fn scan(&self, compiled: &Arc<CompiledPolicy>) -> Staged {
        let t = self.lock();
        let meta = self.meta();
        let by_cgroup = t
            .tracker
            .scan()
            .into_iter()
            .map(|(id, rel)| {
                let origin = t.tracker.origin_of(&rel);
                (id, workload_of(compiled, &t.carried, &meta, id, &rel, &origin))
            })
            .collect();
        Staged { by_cgroup, compiled: compiled.clone() }
    }

    /// Once the kernel set of `staged` is in force (the cell still locked).
    pub fn commit(&self, _cell: &CellState, staged: Staged) {
        let mut t = self.lock();
        for (id, info) in t.tracker.iter_mut() {
            info.workload = staged.by_cgroup.get(id).copied().flatten();
        }
        t.cache.clear();
        t.cache_policy = staged.compiled;
    }

    /// Identity of a thread from its /proc cgroup path under `compiled` (a
    /// snapshot the caller re-checks against the policy generation).
    /// Cached per path (bounded) while `compiled` is the policy in force.
    pub fn identify_cgroup_path(&self, compiled: &Arc<CompiledPolicy>, hierarchy_path: &str) -> Identity {
        let mut t = self.lock();
        let current = Arc::ptr_eq(&t.cache_policy, compiled);
        if current && let Some(id) = t.cache.get(hierarchy_path) {
            return *id;
        }
        // Named from a cgroup namespace we could not leave: it may well be
        // under the root, so it is unidentified (fail closed), not outside.
        if hierarchy_path.split('/').any(|c| c == "..") {
            return Identity::Governed(None);
        }
        let id = match t.tracker.rel_of_hierarchy_path(hierarchy_path) {
            Some(rel) => {
                let origin = t.tracker.origin_of(&rel);
                let meta = self.meta();
                // The cgroup's id only matters while identities are carried over.
                let id = match t.carried.is_empty() {
                    true => 0,
                    false => crate::identity::cgroups::cgroup_id(&t.tracker.root_abs().join(&rel)).unwrap_or(0),
                };
                Identity::Governed(workload_of(compiled, &t.carried, &meta, id, &rel, &origin))
            }
            None => Identity::Outside,
        };
        // A carried identity belongs to a cgroup id, not to its path (a
        // cgroup made again at the path is another cgroup): not cached. Nor
        // is an answer under a policy that a reload has replaced meanwhile.
        if !t.carried.is_empty() || !current {
            return id;
        }
        if t.cache.len() >= 65536 {
            t.cache.clear();
        }
        t.cache.insert(hierarchy_path.to_string(), id);
        id
    }

    /// What events say about the processes of a cgroup path (userspace
    /// backends), through the writer's own cache.
    pub fn identity_of_path(&self, cache: &mut PathIdentities, hierarchy_path: &str) -> Arc<WorkloadIdentity> {
        let generation = self.meta_gen.load(Ordering::Acquire);
        if generation != cache.generation || cache.by_path.len() >= 8192 {
            cache.by_path.clear();
            cache.generation = generation;
        }
        if let Some(who) = cache.by_path.get(hierarchy_path) {
            return who.clone();
        }
        let who = Arc::new(self.meta().identity(&crate::identity::path::parse(hierarchy_path)));
        cache.by_path.insert(hierarchy_path.to_string(), who.clone());
        who
    }

    pub fn has_job(&self, id: u64) -> bool {
        self.meta().has_job(id)
    }

    pub fn known_jobs(&self) -> Vec<u64> {
        self.meta().job_ids()
    }

    /// (pods, Slurm jobs) known from metadata sources.
    pub fn metadata_counts(&self) -> (usize, usize) {
        let m = self.meta();
        (m.pod_count(), m.job_count())
    }

    /// Changes whenever the tracked cgroups do.
    pub fn cgroups_generation(&self) -> u64 {
        self.cgroups_gen.load(Ordering::Acquire)
    }

    /// Slurm job ids that tracked cgroups name.
    pub fn slurm_jobs_present(&self) -> HashSet<u64> {
        self.lock().tracker.iter().filter_map(|(_, i)| i.origin.slurm_job).collect()
    }
}

/// A userspace event writer's identities by cgroup path, valid for one
/// metadata generation (so a burst of opens parses each path once).
#[derive(Default)]
pub struct PathIdentities {
    generation: u64,
    by_path: HashMap<String, Arc<WorkloadIdentity>>,
}
