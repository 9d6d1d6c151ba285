//! The policy cell: the policy in force, the policy each kernel set was
//! filled from, and the kernel policy maps themselves. Start and reload
//! both fill a set through `install`; nothing else writes whole sets.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::{
    clock::now_rfc3339,
    hooks::maps::{PolicyMaps, SetContents, VerdictCounts},
    policy::{CompiledPolicy, Policy},
};

/// What the cell guards; `PolicyCell::lock` hands it out. Lock order:
/// the cell before the identity store (`IdentityStore`), before metadata.
pub struct CellState {
    pub policy: Policy,
    /// The policy the hooks read now (that of set `maps.active_set()`).
    pub compiled: Arc<CompiledPolicy>,
    /// The policy each kernel policy set holds: records name their ids
    /// with the set they were decided by.
    set_policies: [Option<Arc<CompiledPolicy>>; 2],
    /// Kernel counters of sets refilled by reloads, by workload name
    /// (network, file, device).
    harvested: HashMap<String, [VerdictCounts; 3]>,
    pub maps: PolicyMaps,
    loaded_at: String,
}

pub struct PolicyCell {
    config: PathBuf,
    state: Mutex<CellState>,
    /// Bumped whenever the compiled policy is replaced.
    generation: AtomicU64,
}

/// The policies kernel records may have been decided by, taken at once.
#[derive(Clone)]
pub struct Policies {
    pub active: Arc<CompiledPolicy>,
    sets: [Option<Arc<CompiledPolicy>>; 2],
}

impl Policies {
    /// The policy of kernel set `set` (the active one if unknown).
    pub fn of(&self, set: u8) -> &CompiledPolicy {
        self.sets.get(set as usize).and_then(|p| p.as_deref()).unwrap_or(&self.active)
    }
}

impl PolicyCell {
    /// A cell over maps that may hold an earlier agent's sets; `install`
    /// the first set next. `previous_same`: the set the hooks read now was
    /// filled from the same policy file by an earlier agent, so its records
    /// and counters are named by this policy.
    pub fn new(
        config: PathBuf,
        policy: Policy,
        compiled: Arc<CompiledPolicy>,
        maps: PolicyMaps,
        previous_same: bool,
    ) -> Self {
        let mut set_policies = [None, None];
        set_policies[maps.active_set() as usize] = previous_same.then(|| compiled.clone());
        let state =
            CellState { policy, compiled, set_policies, harvested: HashMap::new(), maps, loaded_at: now_rfc3339() };
        Self { config, state: Mutex::new(state), generation: AtomicU64::new(1) }
    }

    pub fn lock(&self) -> MutexGuard<'_, CellState> {
        // A panic while holding the lock must not stop enforcement bookkeeping.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn compiled(&self) -> Arc<CompiledPolicy> {
        self.lock().compiled.clone()
    }

    pub fn with_policy<R>(&self, f: impl FnOnce(&Policy) -> R) -> R {
        f(&self.lock().policy)
    }

    pub fn policies(&self) -> Policies {
        let g = self.lock();
        Policies { active: g.compiled.clone(), sets: g.set_policies.clone() }
    }

    /// Bumped whenever the compiled policy is replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn stat(&self, index: u32) -> u64 {
        self.lock().maps.stat(index)
    }
}

impl CellState {
    /// Fills the set the hooks do not read with `contents` and flips the
    /// hooks to it, then makes `compiled` the policy in force. The set
    /// being refilled still counts the policy two reloads back: its totals
    /// are kept by workload name first. On an error nothing switched.
    pub fn install(&mut self, policy: Policy, contents: &SetContents) -> anyhow::Result<()> {
        let retiring = 1 - self.maps.active_set();
        if let Some(old) = self.set_policies[retiring as usize].take() {
            for id in self.maps.workload_ids(retiring) {
                let Some(name) = workload_name(&old, id) else { continue };
                let counts = self.maps.counts(retiring, id);
                add_counts(self.harvested.entry(name.to_string()).or_default(), &counts);
            }
        }
        let active = self.maps.install(contents)?;
        self.set_policies[active as usize] = Some(contents.policy.clone());
        self.compiled = contents.policy.clone();
        self.policy = policy;
        self.loaded_at = now_rfc3339();
        Ok(())
    }

    pub fn loaded_at(&self) -> &str {
        &self.loaded_at
    }

    /// Kernel decisions (network, file, device) of workload `name` (id `id`
    /// in the active policy): the active set's counters, the other set's
    /// under that policy's id for the same name, and what reloads harvested.
    pub fn kernel_counts(&self, name: &str, id: u32) -> [VerdictCounts; 3] {
        let active = self.maps.active_set();
        let mut total = self.maps.counts(active, id);
        let other = 1 - active;
        if let Some(p) = &self.set_policies[other as usize]
            && let Some(other_id) = self.maps.workload_ids(other).find(|i| workload_name(p, *i) == Some(name))
        {
            add_counts(&mut total, &self.maps.counts(other, other_id));
        }
        if let Some(h) = self.harvested.get(name) {
            add_counts(&mut total, h);
        }
        total
    }
}

impl PolicyCell {
    /// After `CellState::install` under the lock: decisions that read
    /// anything old see the generation move and are made again.
    pub fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

pub const UNIDENTIFIED: &str = "(unidentified)";

/// Name of workload `id` in `policy` (id 0: unidentified).
pub fn workload_name(policy: &CompiledPolicy, id: u32) -> Option<&str> {
    if id == 0 { Some(UNIDENTIFIED) } else { policy.workload_name(id) }
}

/// Adds per-kind (network, file, device) counts.
fn add_counts(total: &mut [VerdictCounts; 3], more: &[VerdictCounts; 3]) {
    for (t, c) in total.iter_mut().zip(more) {
        *t += *c;
    }
}
