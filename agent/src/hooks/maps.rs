//! Typed handles on the kernel maps: compiled policy in, counters out.
use std::collections::HashSet;

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
};
use warden_common::{
    AllowKey, AllowValue, DeviceAllowValue, DeviceKey, DeviceSegment, FileAllowValue, GpuSet, InodeKey, MAX_WORKLOADS,
    STAT_SLOTS, SegmentEntries, SegmentInfo, Settings, VERDICT_SLOTS,
};

use super::HookError;
use crate::policy::CompiledPolicy;

pub struct PolicyMaps {
    cgroups: HashMap<MapData, u64, u32>,
    v4: LpmTrie<MapData, [u8; 4], SegmentEntries>,
    v6: LpmTrie<MapData, [u8; 16], SegmentEntries>,
    segment_info: Array<MapData, SegmentInfo>,
    allow: HashMap<MapData, AllowKey, AllowValue>,
    settings: Array<MapData, Settings>,
    counters: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    file_roots: HashMap<MapData, InodeKey, u32>,
    file_devs: HashMap<MapData, u64, u8>,
    file_allow: HashMap<MapData, AllowKey, FileAllowValue>,
    file_counters: PerCpuArray<MapData, u64>,
    device_segments: HashMap<MapData, DeviceKey, DeviceSegment>,
    device_allow: HashMap<MapData, AllowKey, DeviceAllowValue>,
    device_assigned: HashMap<MapData, u64, GpuSet>,
    device_counters: PerCpuArray<MapData, u64>,
}

/// Per-verdict decision counts of one workload id.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VerdictCounts {
    pub allowed: u64,
    pub denied: u64,
    pub audited: u64,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, HookError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(HookError::Map(name, "missing from object".into()))?;
    T::try_from(map).map_err(|e| HookError::Map(name, e.to_string()))
}

fn err(name: &'static str) -> impl Fn(aya::maps::MapError) -> HookError {
    move |e| HookError::Map(name, e.to_string())
}

impl PolicyMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, HookError> {
        Ok(Self {
            cgroups: take(ebpf, "CGROUP_WORKLOADS")?,
            v4: take(ebpf, "SEGMENTS_V4")?,
            v6: take(ebpf, "SEGMENTS_V6")?,
            segment_info: take(ebpf, "SEGMENT_INFO")?,
            allow: take(ebpf, "ALLOW")?,
            settings: take(ebpf, "SETTINGS")?,
            counters: take(ebpf, "COUNTERS")?,
            stats: take(ebpf, "STATS")?,
            file_roots: take(ebpf, "FILE_ROOTS")?,
            file_devs: take(ebpf, "FILE_DEVS")?,
            file_allow: take(ebpf, "FILE_ALLOW")?,
            file_counters: take(ebpf, "FILE_COUNTERS")?,
            device_segments: take(ebpf, "DEVICE_SEGMENTS")?,
            device_allow: take(ebpf, "DEVICE_ALLOW")?,
            device_assigned: take(ebpf, "DEVICE_ASSIGNED")?,
            device_counters: take(ebpf, "DEVICE_COUNTERS")?,
        })
    }

    /// Writes a compiled policy, then removes entries it no longer has.
    pub fn apply(&mut self, p: &CompiledPolicy) -> Result<(), HookError> {
        self.settings.set(0, p.settings, 0).map_err(err("SETTINGS"))?;
        for (id, info) in &p.segment_info {
            self.segment_info.set(*id, *info, 0).map_err(err("SEGMENT_INFO"))?;
        }
        sync_hash(&mut self.allow, &p.allow, "ALLOW")?;
        sync_hash(&mut self.file_allow, &p.file_allow, "FILE_ALLOW")?;
        sync_hash(&mut self.device_allow, &p.device_allow, "DEVICE_ALLOW")?;
        sync_trie(&mut self.v4, p.v4.iter().map(|(k, v)| (k.prefix_len, k.addr, *v)), "SEGMENTS_V4")?;
        sync_trie(&mut self.v6, p.v6.iter().map(|(k, v)| (k.prefix_len, k.addr, *v)), "SEGMENTS_V6")?;
        Ok(())
    }

    /// Maps a cgroup to a workload (or removes it: unidentified).
    pub fn set_cgroup(&mut self, cgroup_id: u64, workload: Option<u32>) -> Result<(), HookError> {
        match workload {
            Some(w) => self.cgroups.insert(cgroup_id, w, 0).map_err(err("CGROUP_WORKLOADS")),
            None => match self.cgroups.remove(&cgroup_id) {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(err("CGROUP_WORKLOADS")(e)),
            },
        }
    }

    /// Segment roots by identity, for the in-kernel file hooks.
    pub fn set_file_roots(&mut self, roots: &[(InodeKey, u32)]) -> Result<(), HookError> {
        for (k, value) in roots {
            self.file_roots.insert(*k, *value, 0).map_err(err("FILE_ROOTS"))?;
        }
        let devs: HashSet<u64> = roots.iter().map(|(k, _)| k.dev).collect();
        for d in &devs {
            self.file_devs.insert(*d, 1, 0).map_err(err("FILE_DEVS"))?;
        }
        let stale: Vec<u64> = self.file_devs.keys().filter_map(Result::ok).filter(|d| !devs.contains(d)).collect();
        for d in stale {
            let _ = self.file_devs.remove(&d);
        }
        let keep: HashSet<InodeKey> = roots.iter().map(|(k, _)| *k).collect();
        let stale: Vec<InodeKey> =
            self.file_roots.keys().filter_map(Result::ok).filter(|k| !keep.contains(k)).collect();
        for k in stale {
            let _ = self.file_roots.remove(&k);
        }
        Ok(())
    }

    /// Protected device nodes (resolved on this node).
    pub fn set_device_nodes(&mut self, nodes: &[(DeviceKey, DeviceSegment)]) -> Result<(), HookError> {
        sync_hash(&mut self.device_segments, nodes, "DEVICE_SEGMENTS")
    }

    /// The GPUs assigned to each container cgroup; others are removed.
    pub fn set_assigned(&mut self, assigned: &[(u64, GpuSet)]) -> Result<(), HookError> {
        sync_hash(&mut self.device_assigned, assigned, "DEVICE_ASSIGNED")
    }

    /// Per-verdict device decisions.
    pub fn device_counts(&self, workload_id: u32) -> VerdictCounts {
        sum_counts(&self.device_counters, workload_id)
    }

    /// Per-verdict file decisions of the in-kernel backend.
    pub fn file_counts(&self, workload_id: u32) -> VerdictCounts {
        sum_counts(&self.file_counters, workload_id)
    }

    pub fn cgroup_entries(&self) -> usize {
        self.cgroups.keys().count()
    }

    /// Sums the per-CPU network decision counters of a workload id.
    pub fn counts(&self, workload_id: u32) -> VerdictCounts {
        sum_counts(&self.counters, workload_id)
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

fn sum_counts(map: &PerCpuArray<MapData, u64>, workload_id: u32) -> VerdictCounts {
    if workload_id > MAX_WORKLOADS {
        return VerdictCounts::default();
    }
    let slot = |v: u8| -> u64 {
        map.get(&(workload_id * VERDICT_SLOTS + v as u32), 0).map(|vals| vals.iter().sum()).unwrap_or(0)
    };
    VerdictCounts {
        allowed: slot(warden_common::VERDICT_ALLOWED),
        denied: slot(warden_common::VERDICT_DENIED),
        audited: slot(warden_common::VERDICT_AUDITED),
    }
}
