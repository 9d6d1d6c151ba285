//! cgroup → workload: on creation, on a full rescan, and again whenever pod
//! or job metadata changes (a label edit switches enforcement, no restart).
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, atomic::Ordering},
};

use super::state::{Inner, Shared};
use crate::{
    files::Identity,
    identity::{
        CgroupInfo,
        meta::{Changed, MetaStore, WorkloadIdentity},
    },
};

/// Fixes glibc's mmap and trim thresholds at their defaults (128 KiB). Left
/// dynamic, freeing one large table (10,000 cgroups' worth) raises them to
/// megabytes, and later frees then stay resident at a thread arena's top,
/// which `malloc_trim` never trims: churn would ratchet memory up.
pub fn fix_heap_thresholds() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

/// Hands freed heap pages back to the kernel (glibc keeps them otherwise).
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointers are involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A cgroup's record under the current policy and metadata.
fn classify(g: &Inner, meta: &MetaStore, id: u64, rel: String) -> CgroupInfo {
    let origin = g.tracker.origin_of(&rel);
    let workload = workload_of(&g.compiled, &g.carried, meta, id, &rel, &origin);
    let who = Arc::new(meta.identity(&origin));
    CgroupInfo { rel, workload, origin, who }
}

/// A cgroup's workload under `compiled`. Until the metadata its selectors
/// need is known (pod list, Slurm job), a cgroup an earlier agent had
/// identified under the same policy file keeps that identity: the kernel
/// enforced it all along, and dropping it would fail the workload closed
/// for as long as the API server takes to answer.
pub(super) fn workload_of(
    compiled: &crate::policy::CompiledPolicy,
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

/// A userspace event writer's identities by cgroup path, valid for one
/// metadata generation (so a burst of opens parses each path once).
#[derive(Default)]
pub struct PathIdentities {
    generation: u64,
    by_path: HashMap<String, Arc<WorkloadIdentity>>,
}

impl Shared {
    fn meta(&self) -> std::sync::RwLockReadGuard<'_, MetaStore> {
        self.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Identifies one new cgroup from its tracepoint path; returns whether it
    /// was inside our root and is now tracked.
    pub fn add_cgroup(&self, id: u64, tp_path: &str, truncated: bool) -> bool {
        let mut g = self.lock();
        let rel = if truncated { g.tracker.find_by_id(id) } else { g.tracker.resolve_tp_path(tp_path, id) };
        let Some(rel) = rel else { return false };
        let info = classify(&g, &self.meta(), id, rel);
        if let Err(e) = g.maps.set_cgroup(id, info.workload) {
            // Left unidentified in the kernel: fail closed, but say so.
            tracing::error!(cgroup = %info.rel, error = %e, "cannot write cgroup identity");
        }
        g.tracker.insert(id, info);
        drop(g);
        self.cgroups_gen.fetch_add(1, Ordering::AcqRel);
        self.cgroup_created.notify_one();
        true
    }

    pub fn remove_cgroup(&self, id: u64) {
        let mut g = self.lock();
        g.carried.remove(&id);
        if g.tracker.remove(id).is_some() {
            let _ = g.maps.set_cgroup(id, None);
            self.cgroups_gen.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// After deletions: returns memory held for cgroups that are gone to the
    /// system, so churn (pods come and go all day) does not ratchet it up.
    pub fn compact(&self) {
        if self.lock().tracker.compaction_due() {
            trim_heap();
        }
    }

    /// Makes tracker and kernel map match the cgroup tree exactly.
    pub fn reconcile_cgroups(&self) {
        let mut g = self.lock();
        let meta = self.meta();
        let found = g.tracker.scan();
        let present: HashSet<u64> = found.iter().map(|(id, _)| *id).collect();
        for (id, rel) in found {
            let info = classify(&g, &meta, id, rel);
            if g.tracker.get(id) != Some(&info) {
                if let Err(e) = g.maps.set_cgroup(id, info.workload) {
                    tracing::error!(cgroup = %info.rel, error = %e, "cannot write cgroup identity");
                }
                g.tracker.insert(id, info);
            }
        }
        let g = &mut *g;
        // Carried identities serve only cgroups that exist and still wait for metadata.
        let tracker = &g.tracker;
        g.carried.retain(|id, _| present.contains(id) && tracker.get(*id).is_some_and(|i| !meta.knows(&i.origin)));
        let gone: Vec<u64> = g.tracker.iter().map(|(id, _)| *id).filter(|id| !present.contains(id)).collect();
        for id in gone {
            g.tracker.remove(id);
            let _ = g.maps.set_cgroup(id, None);
        }
        // A rescan may have found or lost cgroups the records missed.
        self.cgroups_gen.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies a metadata update, then re-identifies exactly the cgroups it
    /// touches. Returns how many cgroups changed workload.
    pub fn update_metadata(&self, f: impl FnOnce(&mut MetaStore) -> Changed) -> usize {
        let changed = f(&mut self.meta.write().unwrap_or_else(|p| p.into_inner()));
        // A relist may settle carried identities without changing any pod.
        if changed.is_empty() && self.lock().carried.is_empty() {
            return 0;
        }
        // After the write: a reader seeing the new generation sees the new data.
        self.meta_gen.fetch_add(1, Ordering::AcqRel);
        let mut g = self.lock();
        let g = &mut *g;
        let meta = self.meta();
        // Decisions cached per cgroup path may rest on the old metadata.
        g.identity_cache.clear();
        let mut switched = 0;
        let mut touched: Vec<(u64, String)> =
            g.tracker.iter().filter(|(_, i)| changed.touches(&i.origin)).map(|(id, i)| (*id, i.rel.clone())).collect();
        // Carried identities whose metadata is now known: decided afresh.
        let settled: Vec<u64> =
            g.carried.keys().copied().filter(|id| g.tracker.get(*id).is_none_or(|i| meta.knows(&i.origin))).collect();
        for id in settled {
            g.carried.remove(&id);
            if let Some(i) = g.tracker.get(id) {
                touched.push((id, i.rel.clone()));
            }
        }
        for (id, rel) in touched {
            let info = classify(g, &meta, id, rel);
            if g.tracker.get(id).is_some_and(|old| old.workload != info.workload) {
                switched += 1;
                if let Err(e) = g.maps.set_cgroup(id, info.workload) {
                    tracing::error!(cgroup = %info.rel, error = %e, "cannot write cgroup identity");
                }
            }
            g.tracker.insert(id, info);
        }
        switched
    }

    /// Identity of a thread from its /proc cgroup path. Cached per path
    /// (bounded); the cache is cleared with the policy or the metadata.
    pub fn identify_cgroup_path(&self, hierarchy_path: &str) -> Identity {
        let mut g = self.lock();
        if let Some(id) = g.identity_cache.get(hierarchy_path) {
            return *id;
        }
        let id = match g.tracker.rel_of_hierarchy_path(hierarchy_path) {
            Some(rel) => {
                let origin = g.tracker.origin_of(&rel);
                let meta = self.meta();
                // The cgroup's id only matters while identities are carried over.
                let id = match g.carried.is_empty() {
                    true => 0,
                    false => crate::identity::cgroups::cgroup_id(&g.tracker.root_abs().join(&rel)).unwrap_or(0),
                };
                Identity::Governed(workload_of(&g.compiled, &g.carried, &meta, id, &rel, &origin))
            }
            None => Identity::Outside,
        };
        // A carried identity belongs to a cgroup id, not to its path (a
        // cgroup made again at the path is another cgroup): not cached.
        if !g.carried.is_empty() {
            return id;
        }
        if g.identity_cache.len() >= 65536 {
            g.identity_cache.clear();
        }
        g.identity_cache.insert(hierarchy_path.to_string(), id);
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
}
