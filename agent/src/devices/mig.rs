//! MIG capability nodes in device segments.
//!
//! The cgroup/dev hook decides a GPU node by one bit of a 256-bit GPU set
//! (`DeviceSegment::gpu`, checked against the rule's or the container's
//! `GpuSet`). A MIG capability (`/dev/nvidia-caps/nvidia-cap<M>`, one per
//! GPU instance and per compute instance) must be granted per container, not
//! per GPU: two containers on one GPU must not open each other's instance.
//! So each existing capability borrows a bit that names no GPU: not a GPU
//! minor the driver reports, not an index the policy names (`reserved`),
//! highest first (255 and 254 are never GPUs). A container's set holds its
//! parent GPU's bit and its two capabilities' bits.
//!
//! A bit must never mean two capabilities to one reader. The kernel's
//! tables and `DEVICE_ASSIGNED` are written at different moments, so a
//! binding, once made, is kept while its capability exists, and a released
//! bit stays unused until an assignment computed without it is in the
//! kernel (`assignment_written`). Capabilities that do not exist yet are
//! still protected, with a bit no set holds (`NO_SLOT`): nobody opens them.
use std::collections::{BTreeMap, BTreeSet};

use warden_common::{GPU_NONE, GpuSet};

/// Bits a GPU set has.
const SET_BITS: u16 = 256;

/// A `DeviceSegment::gpu` no `GpuSet` contains (`contains` is false from
/// 256 up) and that is not `GPU_NONE` (which every rule grants).
pub const NO_SLOT: u16 = 0xfffe;
const _: () = assert!(NO_SLOT >= SET_BITS && NO_SLOT != GPU_NONE);

/// Capability minor → borrowed bit, kept across reads of the driver.
#[derive(Clone, Debug, Default)]
pub struct MigSlots {
    bound: BTreeMap<u32, u16>,
    /// Released bits and the generation they were released in.
    cooling: BTreeMap<u16, u64>,
    generation: u64,
}

impl MigSlots {
    pub const fn new() -> Self {
        MigSlots { bound: BTreeMap::new(), cooling: BTreeMap::new(), generation: 0 }
    }

    /// Binds every minor of `wanted` (existing capabilities) to a bit
    /// outside `reserved`, keeping bindings that stay valid and releasing
    /// the others. Returns the binding of `wanted`; minors left out found
    /// no free bit.
    pub fn bind(&mut self, wanted: &BTreeSet<u32>, reserved: &GpuSet) -> BTreeMap<u32, u16> {
        let stale: Vec<u32> = self
            .bound
            .iter()
            .filter(|(minor, slot)| !wanted.contains(minor) || reserved.contains(**slot))
            .map(|(m, _)| *m)
            .collect();
        if !stale.is_empty() {
            self.generation += 1;
        }
        for minor in stale {
            if let Some(slot) = self.bound.remove(&minor) {
                self.cooling.insert(slot, self.generation);
            }
        }
        let mut used: BTreeSet<u16> = self.bound.values().copied().collect();
        used.extend(self.cooling.keys());
        for minor in wanted {
            if self.bound.contains_key(minor) {
                continue;
            }
            let Some(slot) = (0..SET_BITS).rev().find(|s| !reserved.contains(*s) && !used.contains(s)) else { break };
            used.insert(slot);
            self.bound.insert(*minor, slot);
        }
        wanted.iter().filter_map(|m| self.bound.get(m).map(|s| (*m, *s))).collect()
    }

    pub fn slot(&self, minor: u32) -> Option<u16> {
        self.bound.get(&minor).copied()
    }

    /// The generation to pass to `assignment_written` for sets computed now.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Container sets computed at `generation` are in the kernel: bits
    /// released by then are free again.
    pub fn assignment_written(&mut self, generation: u64) {
        self.cooling.retain(|_, released| *released > generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(bits: &[u16]) -> GpuSet {
        let mut s = GpuSet::default();
        for b in bits {
            s.insert(*b);
        }
        s
    }

    fn minors(m: &[u32]) -> BTreeSet<u32> {
        m.iter().copied().collect()
    }

    #[test]
    fn borrows_free_bits_highest_first() {
        let mut s = MigSlots::default();
        let b = s.bind(&minors(&[12, 13, 21]), &set(&[0, 1, 255]));
        assert_eq!(b, BTreeMap::from([(12, 254), (13, 253), (21, 252)]));
        // Stable across reads.
        assert_eq!(s.bind(&minors(&[12, 13, 21]), &set(&[0, 1, 255])), b);
        assert_eq!(s.slot(13), Some(253));
        assert!(!GpuSet { bits: [u64::MAX; 4] }.contains(NO_SLOT), "no set, not even a full one, holds NO_SLOT");
    }

    #[test]
    fn released_bits_wait_for_the_assignment() {
        let mut s = MigSlots::default();
        s.bind(&minors(&[12, 13]), &GpuSet::default()); // 12→255, 13→254
        let g0 = s.generation();
        // Instance 12 destroyed, 30 created: 30 must not take 255 yet.
        let b = s.bind(&minors(&[13, 30]), &GpuSet::default());
        assert_eq!(b, BTreeMap::from([(13, 254), (30, 253)]));
        // An assignment computed before the release does not free it.
        s.assignment_written(g0);
        assert_eq!(s.bind(&minors(&[13, 30, 31]), &GpuSet::default())[&31], 252);
        // One computed after does.
        s.assignment_written(s.generation());
        assert_eq!(s.bind(&minors(&[13, 30, 31, 40]), &GpuSet::default())[&40], 255);
    }

    #[test]
    fn a_newly_reserved_bit_is_given_up() {
        let mut s = MigSlots::default();
        s.bind(&minors(&[12]), &GpuSet::default());
        assert_eq!(s.slot(12), Some(255));
        let b = s.bind(&minors(&[12]), &set(&[255]));
        assert_eq!(b[&12], 254);
    }

    #[test]
    fn running_out_leaves_minors_unbound() {
        let mut s = MigSlots::default();
        let reserved = set(&(0..254).collect::<Vec<u16>>());
        let b = s.bind(&minors(&[1, 2, 3]), &reserved);
        assert_eq!(b, BTreeMap::from([(1, 255), (2, 254)]));
        assert_eq!(s.slot(3), None);
    }
}
