//! The (workload, segment) allow tables every kind of segment compiles to.
use std::collections::{BTreeMap, HashMap};

use warden_common::AllowKey;

use super::model::{AllowRule, Policy, Segment};

/// One kernel allow table, sorted by (workload id, segment id): for each
/// pair of a segment of this `kind` that a rule covers, `grant(rule, rule
/// id, segment, deny mode)` from the first such rule (validation rejects a
/// second); for the pairs no rule covers, an entry carrying only the
/// workload's own `mode`, which would otherwise fall back to the segment's.
/// The deny mode is the first set of: rule, workload, segment, global.
pub(super) fn allow_table<V>(
    policy: &Policy,
    kind: impl Fn(&Segment) -> bool,
    grant: impl Fn(&AllowRule, u32, &Segment, u8) -> V,
    mode_only: impl Fn(u8) -> V,
) -> Vec<(AllowKey, V)> {
    let mut table: BTreeMap<(u32, u16), V> = BTreeMap::new();
    for (rule_id, rule, wi, si) in rule_pairs(policy) {
        let segment = &policy.segments[si];
        let key = ((wi + 1) as u32, (si + 1) as u16);
        if !kind(segment) || table.contains_key(&key) {
            continue;
        }
        let mode = rule.mode.or(policy.workloads[wi].mode).or(segment.mode).unwrap_or(policy.mode);
        table.insert(key, grant(rule, rule_id, segment, mode.kernel()));
    }
    for (wi, w) in policy.workloads.iter().enumerate() {
        let Some(mode) = w.mode else { continue };
        for (si, _) in policy.segments.iter().enumerate().filter(|(_, s)| kind(s)) {
            table.entry(((wi + 1) as u32, (si + 1) as u16)).or_insert_with(|| mode_only(mode.kernel()));
        }
    }
    table.into_iter().map(|((workload_id, segment_id), v)| (AllowKey { workload_id, segment_id, _pad: 0 }, v)).collect()
}

/// Every (rule id, rule, workload index, segment index) an allow rule covers,
/// names resolved to their first definition; unknown names are skipped
/// (validation reports them).
pub(super) fn rule_pairs(policy: &Policy) -> Vec<(u32, &AllowRule, usize, usize)> {
    let seg_ids: HashMap<&str, usize> =
        policy.segments.iter().enumerate().rev().map(|(i, s)| (s.name.as_str(), i)).collect();
    let wl_ids: HashMap<&str, usize> =
        policy.workloads.iter().enumerate().rev().map(|(i, w)| (w.name.as_str(), i)).collect();
    let mut out = Vec::new();
    for (r, rule) in policy.allow.iter().enumerate() {
        for w in &rule.workloads {
            let Some(&wi) = wl_ids.get(w.name.as_str()) else { continue };
            for s in &rule.segments {
                let Some(&si) = seg_ids.get(s.name.as_str()) else { continue };
                out.push(((r + 1) as u32, rule, wi, si));
            }
        }
    }
    out
}
