//! What kubelet's assignment gives each container, in device terms: whole
//! GPUs by minor (a time-sliced replica is its GPU; a MIG device needs its
//! parent GPU too) and MIG capability minors. The kernel sees one GPU set
//! per container cgroup; capabilities enter it through the bits `mig`
//! lends them.
use std::collections::{BTreeSet, HashMap};

use warden_common::GpuSet;

use super::mig::MigSlots;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerGrant {
    /// GPU minors (0..=253).
    pub gpus: BTreeSet<u16>,
    /// MIG capability minors (its GPU instances and compute instances).
    pub caps: BTreeSet<u32>,
}

/// Container id → what it may open.
pub type Grants = HashMap<String, ContainerGrant>;

impl ContainerGrant {
    /// The kernel's set for this container under `slots`, and the
    /// capabilities left out because no bit is bound to them (yet): those
    /// stay denied.
    pub fn gpu_set(&self, slots: &MigSlots) -> (GpuSet, Vec<u32>) {
        let mut set = GpuSet::default();
        for g in &self.gpus {
            set.insert(*g);
        }
        let mut unbound = Vec::new();
        for c in &self.caps {
            match slots.slot(*c) {
                Some(bit) => set.insert(bit),
                None => unbound.push(*c),
            }
        }
        (set, unbound)
    }

    pub fn is_empty(&self) -> bool {
        self.gpus.is_empty() && self.caps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_use_their_bits() {
        let mut slots = MigSlots::default();
        slots.bind(&BTreeSet::from([21, 22]), &GpuSet::default());
        let g = ContainerGrant { gpus: BTreeSet::from([0]), caps: BTreeSet::from([21, 22, 30]) };
        let (set, unbound) = g.gpu_set(&slots);
        let bits: Vec<u16> = (0..256).filter(|b| set.contains(*b)).collect();
        assert_eq!(bits, [0, slots.slot(22).unwrap(), slots.slot(21).unwrap()]);
        assert_eq!(unbound, [30], "a capability with no bit is left out, so denied");
    }
}
