//! Typed handles on the kernel maps: compiled policy in, counters out.
//! Policy maps come in two sets (see `POLICY_SETS`): `install` fills the
//! one the hooks do not read, then flips them over in one write.
use std::{collections::HashSet, sync::Arc};

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
};
use warden_common::{
    AllowKey, AllowValue, DeviceAllowValue, DeviceKey, DeviceSegment, FileAllowValue, GpuSet, InodeKey, MAX_WORKLOADS,
    POLICY_SETS, STAT_SLOTS, SegmentEntries, SegmentInfo, Settings, SocketGrant, VERDICT_SLOTS, counter_slot,
    map_names as names,
};

use super::HookError;
use crate::policy::CompiledPolicy;

/// The maps of one policy set (`NAME_0` or `NAME_1` in the object).
struct PolicySet {
    cgroups: HashMap<MapData, u64, u32>,
    v4: LpmTrie<MapData, [u8; 4], SegmentEntries>,
    v6: LpmTrie<MapData, [u8; 16], SegmentEntries>,
    segment_info: Array<MapData, SegmentInfo>,
    allow: HashMap<MapData, AllowKey, AllowValue>,
    settings: Array<MapData, Settings>,
    file_roots: HashMap<MapData, InodeKey, u32>,
    file_devs: HashMap<MapData, u64, u8>,
    file_allow: HashMap<MapData, AllowKey, FileAllowValue>,
    device_segments: HashMap<MapData, DeviceKey, DeviceSegment>,
    device_allow: HashMap<MapData, AllowKey, DeviceAllowValue>,
    socket_grants: Array<MapData, SocketGrant>,
    clear_v4: Array<MapData, u64>,
    clear_v6: Array<MapData, u64>,
}

/// Everything a policy set holds: the compiled policy plus what the agent
/// resolved on this node for it (cgroup identities, file roots, device
/// nodes).
pub struct SetContents<'a> {
    pub policy: &'a Arc<CompiledPolicy>,
    pub cgroups: &'a [(u64, u32)],
    pub file_roots: &'a [(InodeKey, u32)],
    pub device_nodes: &'a [(DeviceKey, DeviceSegment)],
    /// sha256 of the policy file (`POLICY_TAG`).
    pub tag: [u8; 32],
}

/// What a set holds, known without reading the kernel: the next fill
/// writes only the difference (a reload of a 10,000-prefix policy that
/// changed a rule writes one entry, not 10,000).
struct Held {
    policy: Arc<CompiledPolicy>,
    /// Kept current while the set is active (`set_cgroup`).
    cgroups: std::collections::HashMap<u64, u32>,
}

/// A policy file digest and the (cgroup id, workload id) entries filled under it.
pub type PinnedIdentities = ([u8; 32], Vec<(u64, u32)>);

pub struct PolicyMaps {
    sets: [PolicySet; POLICY_SETS as usize],
    /// Unknown (None) after a start: maps may hold an earlier agent's data.
    held: [Option<Held>; POLICY_SETS as usize],
    /// Which set the hooks read (index 0).
    policy_set: Array<MapData, u32>,
    /// Policy file digest per set.
    tags: Array<MapData, [u8; 32]>,
    active: usize,
    /// Workload ids each set's policy has (its counters beyond are unused).
    workloads: [u32; POLICY_SETS as usize],
    counters: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    file_counters: PerCpuArray<MapData, u64>,
    device_assigned: HashMap<MapData, u64, GpuSet>,
    device_counters: PerCpuArray<MapData, u64>,
    /// `agent.events.logUnprotected`: a daemon setting every set carries.
    log_unprotected: bool,
}

/// Per-verdict decision counts of one workload id.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VerdictCounts {
    pub allowed: u64,
    pub denied: u64,
    pub audited: u64,
}

impl std::ops::AddAssign for VerdictCounts {
    fn add_assign(&mut self, o: Self) {
        self.allowed += o.allowed;
        self.denied += o.denied;
        self.audited += o.audited;
    }
}

pub(super) fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, HookError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| HookError::Map(name.to_string(), "missing from object".into()))?;
    T::try_from(map).map_err(|e| HookError::Map(name.to_string(), e.to_string()))
}

fn err(name: &'static str) -> impl Fn(aya::maps::MapError) -> HookError {
    move |e| HookError::Map(name.to_string(), e.to_string())
}

impl PolicySet {
    fn take(ebpf: &mut Ebpf, n: usize) -> Result<Self, HookError> {
        Ok(Self {
            cgroups: take(ebpf, names::CGROUP_WL[n])?,
            v4: take(ebpf, names::SEG_V4[n])?,
            v6: take(ebpf, names::SEG_V6[n])?,
            segment_info: take(ebpf, names::SEG_INFO[n])?,
            allow: take(ebpf, names::ALLOW[n])?,
            settings: take(ebpf, names::SETTINGS[n])?,
            file_roots: take(ebpf, names::FILE_ROOTS[n])?,
            file_devs: take(ebpf, names::FILE_DEVS[n])?,
            file_allow: take(ebpf, names::FILE_ALLOW[n])?,
            device_segments: take(ebpf, names::DEV_SEGS[n])?,
            device_allow: take(ebpf, names::DEV_ALLOW[n])?,
            socket_grants: take(ebpf, names::SOCKET_GRANTS[n])?,
            clear_v4: take(ebpf, names::CLEAR_V4[n])?,
            clear_v6: take(ebpf, names::CLEAR_V6[n])?,
        })
    }

    /// Makes this set hold exactly `c`. With `held` (what it holds now)
    /// only changed entries are written and removed; otherwise every entry
    /// is written and the kernel's keys are scanned for stale ones.
    fn fill(&mut self, c: &SetContents, held: Option<&Held>, log_unprotected: bool) -> Result<(), HookError> {
        let p = c.policy;
        let settings = Settings { log_unprotected: u8::from(log_unprotected), ..p.settings };
        self.settings.set(0, settings, 0).map_err(err("SETTINGS"))?;
        for (id, info) in &p.segment_info {
            self.segment_info.set(*id, *info, 0).map_err(err("SEG_INFO"))?;
        }
        // Entries past this policy's workload ids are never read: the set's
        // cgroups carry only this policy's ids.
        for (id, grant) in p.socket_grants.iter().enumerate() {
            self.socket_grants.set(id as u32, *grant, 0).map_err(err("SOCKET_GRANTS"))?;
        }
        // After the prefix maps below would be as good: the hooks read this
        // set only once the fill is complete. Only changed words are
        // written when the set's contents are known.
        let old = held.map(|h| (&h.policy.clear_v4, &h.policy.clear_v6));
        for (map, new, old, name) in [
            (&mut self.clear_v4, &p.clear_v4, old.map(|o| o.0), "CLEAR_V4"),
            (&mut self.clear_v6, &p.clear_v6, old.map(|o| o.1), "CLEAR_V6"),
        ] {
            for (i, w) in new.iter().enumerate() {
                if old.and_then(|o| o.get(i)) != Some(w) {
                    map.set(i as u32, *w, 0).map_err(err(name))?;
                }
            }
        }
        match held {
            Some(h) => {
                let o = &h.policy;
                diff_hash(&mut self.allow, &o.allow, &p.allow, "ALLOW")?;
                diff_hash(&mut self.file_allow, &o.file_allow, &p.file_allow, "FILE_ALLOW")?;
                diff_hash(&mut self.device_allow, &o.device_allow, &p.device_allow, "DEV_ALLOW")?;
                let trie = |v: &[(warden_common::Ipv4Key, SegmentEntries)]| -> Vec<((u32, [u8; 4]), SegmentEntries)> {
                    v.iter().map(|(k, e)| ((k.prefix_len, k.addr), *e)).collect()
                };
                diff_trie(&mut self.v4, &trie(&o.v4), &trie(&p.v4), "SEG_V4")?;
                let trie6 = |v: &[(warden_common::Ipv6Key, SegmentEntries)]| -> Vec<((u32, [u8; 16]), SegmentEntries)> {
                    v.iter().map(|(k, e)| ((k.prefix_len, k.addr), *e)).collect()
                };
                diff_trie(&mut self.v6, &trie6(&o.v6), &trie6(&p.v6), "SEG_V6")?;
                let old: Vec<(u64, u32)> = h.cgroups.iter().map(|(k, v)| (*k, *v)).collect();
                diff_hash(&mut self.cgroups, &old, c.cgroups, "CGROUP_WL")?;
            }
            None => {
                sync_hash(&mut self.allow, &p.allow, "ALLOW")?;
                sync_hash(&mut self.file_allow, &p.file_allow, "FILE_ALLOW")?;
                sync_hash(&mut self.device_allow, &p.device_allow, "DEV_ALLOW")?;
                sync_trie(&mut self.v4, p.v4.iter().map(|(k, v)| (k.prefix_len, k.addr, *v)), "SEG_V4")?;
                sync_trie(&mut self.v6, p.v6.iter().map(|(k, v)| (k.prefix_len, k.addr, *v)), "SEG_V6")?;
                sync_hash(&mut self.cgroups, c.cgroups, "CGROUP_WL")?;
            }
        }
        self.set_file_roots(c.file_roots)?;
        sync_hash(&mut self.device_segments, c.device_nodes, "DEV_SEGS")
    }

    fn set_file_roots(&mut self, roots: &[(InodeKey, u32)]) -> Result<(), HookError> {
        sync_hash(&mut self.file_roots, roots, "FILE_ROOTS")?;
        let devs: Vec<(u64, u8)> =
            roots.iter().map(|(k, _)| k.dev).collect::<HashSet<u64>>().into_iter().map(|d| (d, 1)).collect();
        sync_hash(&mut self.file_devs, &devs, "FILE_DEVS")
    }
}

impl PolicyMaps {
    /// `adopted`: the maps are an earlier agent's pins (counters may hold
    /// anything); otherwise they were just created, all zero.
    pub(super) fn take(ebpf: &mut Ebpf, adopted: bool, log_unprotected: bool) -> Result<Self, HookError> {
        let mut maps = Self {
            sets: [PolicySet::take(ebpf, 0)?, PolicySet::take(ebpf, 1)?],
            held: [None, None],
            policy_set: take(ebpf, names::POLICY_SET)?,
            tags: take(ebpf, names::POLICY_TAG)?,
            active: 0,
            // Counters left by an earlier agent: all ids may be non-zero.
            workloads: [if adopted { MAX_WORKLOADS } else { 0 }; POLICY_SETS as usize],
            counters: take(ebpf, names::COUNTERS)?,
            stats: take(ebpf, names::STATS)?,
            file_counters: take(ebpf, names::FILE_COUNTERS)?,
            device_assigned: take(ebpf, names::DEVICE_ASSIGNED)?,
            device_counters: take(ebpf, names::DEVICE_COUNTERS)?,
            log_unprotected,
        };
        maps.active = maps.policy_set.get(&0, 0).map(|s| (s & 1) as usize).unwrap_or(0);
        Ok(maps)
    }

    /// The set the hooks read now.
    pub fn active_set(&self) -> u8 {
        self.active as u8
    }

    /// Fills the set the hooks do not read with `c`, then flips the hooks
    /// to it: one word written, so every decision sees either the whole old
    /// policy or the whole new one. Returns the set now active. On an error
    /// nothing has switched (the hooks still read the old set).
    pub fn install(&mut self, c: &SetContents) -> Result<u8, HookError> {
        let next = 1 - self.active;
        // Zero the next set's counters first: they still count decisions of
        // the policy two installs ago (the caller harvested them).
        self.zero_counters(next);
        self.workloads[next] = c.policy.workloads.len() as u32;
        // Until the fill completes the set's contents are unknown.
        let held = self.held[next].take();
        self.sets[next].fill(c, held.as_ref(), self.log_unprotected)?;
        self.tags.set(next as u32, c.tag, 0).map_err(err(names::POLICY_TAG))?;
        self.held[next] = Some(Held { policy: c.policy.clone(), cgroups: c.cgroups.iter().copied().collect() });
        self.policy_set.set(0, next as u32, 0).map_err(err(names::POLICY_SET))?;
        self.active = next;
        Ok(next as u8)
    }

    /// What an earlier agent left in the active set: its policy digest and
    /// cgroup identities. `None` once this agent has installed a set.
    pub fn pinned_identities(&self) -> Option<PinnedIdentities> {
        if self.held[self.active].is_some() {
            return None;
        }
        let tag = self.tags.get(&(self.active as u32), 0).ok()?;
        let cgroups = self.sets[self.active].cgroups.iter().filter_map(Result::ok).collect();
        Some((tag, cgroups))
    }

    fn active_set_mut(&mut self) -> &mut PolicySet {
        &mut self.sets[self.active]
    }

    /// Maps a cgroup to a workload (or removes it: unidentified) in the
    /// active set; the next `install` writes the whole table anyway.
    pub fn set_cgroup(&mut self, cgroup_id: u64, workload: Option<u32>) -> Result<(), HookError> {
        if let Some(h) = self.held[self.active].as_mut() {
            match workload {
                Some(w) => h.cgroups.insert(cgroup_id, w),
                None => h.cgroups.remove(&cgroup_id),
            };
        }
        let set = self.active_set_mut();
        match workload {
            Some(w) => set.cgroups.insert(cgroup_id, w, 0).map_err(err("CGROUP_WL")),
            None => match set.cgroups.remove(&cgroup_id) {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(err("CGROUP_WL")(e)),
            },
        }
    }

    /// Segment roots by identity, for the in-kernel file hooks (active set).
    pub fn set_file_roots(&mut self, roots: &[(InodeKey, u32)]) -> Result<(), HookError> {
        self.active_set_mut().set_file_roots(roots)
    }

    /// Protected device nodes resolved on this node (active set).
    pub fn set_device_nodes(&mut self, nodes: &[(DeviceKey, DeviceSegment)]) -> Result<(), HookError> {
        sync_hash(&mut self.active_set_mut().device_segments, nodes, "DEV_SEGS")
    }

    /// The GPUs assigned to each container cgroup; others are removed.
    pub fn set_assigned(&mut self, assigned: &[(u64, GpuSet)]) -> Result<(), HookError> {
        sync_hash(&mut self.device_assigned, assigned, names::DEVICE_ASSIGNED)
    }

    /// Per-verdict network, file (in-kernel backend) and device decisions
    /// of a workload id of policy set `set`.
    pub fn counts(&self, set: u8, workload_id: u32) -> [VerdictCounts; 3] {
        [&self.counters, &self.file_counters, &self.device_counters].map(|m| sum_counts(m, set, workload_id))
    }

    /// Workload ids of the policy set `set` holds (0 is unidentified).
    pub fn workload_ids(&self, set: u8) -> std::ops::RangeInclusive<u32> {
        0..=self.workloads[set as usize & 1]
    }

    /// Zeroes the counters of the ids a set's policy had: only those were
    /// ever bumped, and a reload must stay fast.
    fn zero_counters(&mut self, set: usize) {
        let cpus = aya::util::nr_cpus().unwrap_or(1);
        // PerCpuValues is not Clone: one small Vec per slot.
        let zero = || aya::maps::PerCpuValues::<u64>::try_from(vec![0u64; cpus]);
        for id in self.workload_ids(set as u8) {
            for v in 1..VERDICT_SLOTS as u8 {
                for m in [&mut self.counters, &mut self.file_counters, &mut self.device_counters] {
                    if let Ok(z) = zero() {
                        let _ = m.set(counter_slot(set as u8, id, v), z, 0);
                    }
                }
            }
        }
    }

    /// After cgroup churn: the remembered identities of each set give their
    /// room back once most of it is empty (like the tracker's table).
    pub fn compact(&mut self) {
        for h in self.held.iter_mut().flatten() {
            if h.cgroups.capacity() > 1024 && h.cgroups.len() * 4 < h.cgroups.capacity() {
                h.cgroups.shrink_to_fit();
            }
        }
    }

    pub fn cgroup_entries(&self) -> usize {
        self.sets[self.active].cgroups.keys().count()
    }

    /// One `STAT_*` slot per CPU.
    pub fn stat_per_cpu(&self, index: u32) -> Vec<u64> {
        if index >= STAT_SLOTS {
            return Vec::new();
        }
        self.stats.get(&index, 0).map(|v| v.iter().copied().collect()).unwrap_or_default()
    }

    /// Sums one `STAT_*` slot over all CPUs.
    pub fn stat(&self, index: u32) -> u64 {
        if index >= STAT_SLOTS {
            return 0;
        }
        self.stats.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}

/// Deleting an absent key is not an error for us (cgroup was unidentified).
fn is_not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Writes every entry to a hash map, then removes keys not given. Writing
/// before removing means a reload never passes through an emptier map.
fn sync_hash<K, V>(map: &mut HashMap<MapData, K, V>, entries: &[(K, V)], name: &'static str) -> Result<(), HookError>
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod,
{
    for (k, v) in entries {
        map.insert(*k, *v, 0).map_err(err(name))?;
    }
    let keep: HashSet<K> = entries.iter().map(|(k, _)| *k).collect();
    let stale: Vec<K> = map.keys().filter_map(Result::ok).filter(|k| !keep.contains(k)).collect();
    for k in stale {
        let _ = map.remove(&k);
    }
    Ok(())
}

/// Writes the entries of `new` that `old` lacks or holds differently, then
/// removes the keys only `old` has: a set never passes through a state
/// that is neither (it is not read while being filled anyway).
fn diff_hash<K, V>(
    map: &mut HashMap<MapData, K, V>,
    old: &[(K, V)],
    new: &[(K, V)],
    name: &'static str,
) -> Result<(), HookError>
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod + PartialEq,
{
    let before: std::collections::HashMap<&K, &V> = old.iter().map(|(k, v)| (k, v)).collect();
    for (k, v) in new {
        if before.get(k) != Some(&v) {
            map.insert(*k, *v, 0).map_err(err(name))?;
        }
    }
    let keep: HashSet<&K> = new.iter().map(|(k, _)| k).collect();
    for (k, _) in old.iter().filter(|(k, _)| !keep.contains(k)) {
        let _ = map.remove(k);
    }
    Ok(())
}

/// `diff_hash` for a trie keyed by (prefix length, address).
fn diff_trie<A>(
    trie: &mut LpmTrie<MapData, A, SegmentEntries>,
    old: &[((u32, A), SegmentEntries)],
    new: &[((u32, A), SegmentEntries)],
    name: &'static str,
) -> Result<(), HookError>
where
    A: aya::Pod + Eq + std::hash::Hash,
{
    let before: std::collections::HashMap<&(u32, A), &SegmentEntries> = old.iter().map(|(k, v)| (k, v)).collect();
    for (k, v) in new {
        if before.get(k) != Some(&v) {
            trie.insert(&Key::new(k.0, k.1), *v, 0).map_err(err(name))?;
        }
    }
    let keep: HashSet<&(u32, A)> = new.iter().map(|(k, _)| k).collect();
    for (k, _) in old.iter().filter(|(k, _)| !keep.contains(k)) {
        let _ = trie.remove(&Key::new(k.0, k.1));
    }
    Ok(())
}

/// Writes every (prefix, value) to a trie, then removes prefixes not given.
fn sync_trie<A>(
    trie: &mut LpmTrie<MapData, A, SegmentEntries>,
    entries: impl Iterator<Item = (u32, A, SegmentEntries)>,
    name: &'static str,
) -> Result<(), HookError>
where
    A: aya::Pod + Eq + std::hash::Hash,
{
    let mut keep = HashSet::new();
    for (len, addr, v) in entries {
        trie.insert(&Key::new(len, addr), v, 0).map_err(err(name))?;
        keep.insert((len, addr));
    }
    let stale: Vec<Key<A>> =
        trie.keys().filter_map(Result::ok).filter(|k| !keep.contains(&(k.prefix_len(), k.data()))).collect();
    for k in stale {
        let _ = trie.remove(&k);
    }
    Ok(())
}

fn sum_counts(map: &PerCpuArray<MapData, u64>, set: u8, workload_id: u32) -> VerdictCounts {
    if workload_id > MAX_WORKLOADS {
        return VerdictCounts::default();
    }
    let slot =
        |v: u8| -> u64 { map.get(&counter_slot(set, workload_id, v), 0).map(|vals| vals.iter().sum()).unwrap_or(0) };
    VerdictCounts {
        allowed: slot(warden_common::VERDICT_ALLOWED),
        denied: slot(warden_common::VERDICT_DENIED),
        audited: slot(warden_common::VERDICT_AUDITED),
    }
}
