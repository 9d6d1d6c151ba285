//! Per-prefix segment entries, shared by validation (limits, overlaps) and
//! compilation (trie values).
//!
//! An LPM trie lookup only returns the longest stored prefix, so the value of
//! each prefix must also carry the entries of every shorter prefix covering
//! it: own entries first (narrower port windows first), then each covering
//! prefix from longest to shortest.
use std::collections::BTreeMap;

use ipnet::IpNet;

use super::model::{NetworkEntry, Policy, PortRange, windows};

/// One (segment, window, protocol) entry written for a prefix.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Own<'p> {
    /// Segment index (id - 1).
    pub seg: usize,
    pub entry: &'p NetworkEntry,
    pub window: PortRange,
    pub proto: u8,
}

impl Own<'_> {
    pub fn overlaps(&self, other: &Own) -> bool {
        self.proto & other.proto != 0 && self.window.overlaps(&other.window)
    }
}

pub(crate) type Table<'p> = BTreeMap<IpNet, Vec<Own<'p>>>;

/// Own entries of every distinct prefix, each list sorted narrow-first
/// (stable, so equal widths keep file order).
pub(crate) fn own_entries(policy: &Policy) -> Table<'_> {
    let mut table: Table = BTreeMap::new();
    for (seg, segment) in policy.segments.iter().enumerate() {
        for entry in &segment.network {
            for window in windows(&entry.ports) {
                let own = Own { seg, entry, window, proto: entry.protocol.mask() };
                table.entry(entry.cidr).or_default().push(own);
            }
        }
    }
    for list in table.values_mut() {
        list.sort_by_key(|o| o.window.hi - o.window.lo);
    }
    table
}

/// Entries the trie value of `net` must carry, in scan order.
pub(crate) fn inherited<'t, 'p>(table: &'t Table<'p>, net: &IpNet) -> Vec<&'t Own<'p>> {
    let mut out: Vec<&Own> = table.get(net).map(|v| v.iter().collect()).unwrap_or_default();
    let mut cur = *net;
    while let Some(parent) = cur.supernet() {
        if let Some(list) = table.get(&parent) {
            out.extend(list.iter());
        }
        cur = parent;
    }
    out
}
