//! Cross-item rules: unique names, resolvable references, segments that
//! don't contradict each other, one rule per (workload, segment) pair, and
//! the kernel maps' capacity limits.
use std::collections::{HashMap, HashSet};

use warden_common::{MAX_ALLOW_PORTS, MAX_SEGMENT_ENTRIES};

use super::error::{Diag, Origin};
use super::model::{Policy, windows};
use super::names::hint;
use super::prefixes::{Own, Table, inherited, own_entries};
use super::select::Selector;

/// Entries of the `SEGMENTS_V4`/`SEGMENTS_V6` tries and the `ALLOW` hash
/// (sizes in `ebpf/src/maps.rs`).
pub const MAX_PREFIXES_PER_FAMILY: usize = 65536;
pub const MAX_ALLOW_ENTRIES: usize = 65536;

pub(crate) fn check(policy: &Policy, diag: &mut Diag) {
    unique_names(policy.segments.iter().map(|s| (&s.name, &s.origin)), "segment", diag);
    unique_names(policy.workloads.iter().map(|w| (&w.name, &w.origin)), "workload", diag);
    duplicate_entries(policy, diag);
    let table = own_entries(policy);
    overlapping_segments(policy, &table, diag);
    prefix_limits(&table, diag);
    rules(policy, &table, diag);
    selectors(policy, diag);
}

fn unique_names<'p>(
    items: impl Iterator<Item = (&'p String, &'p Origin)>,
    kind: &str,
    diag: &mut Diag,
) {
    let mut seen: HashMap<&str, &Origin> = HashMap::new();
    for (name, origin) in items {
        match seen.get(name.as_str()) {
            Some(first) => {
                let reason = format!("duplicate {kind} name `{name}` (first defined at {})", first.describe());
                diag.at_origin(origin, reason);
            }
            None => {
                seen.insert(name, origin);
            }
        }
    }
}

/// The same cidr, ports and protocol listed twice in one segment.
fn duplicate_entries(policy: &Policy, diag: &mut Diag) {
    for segment in &policy.segments {
        for (j, entry) in segment.network.iter().enumerate() {
            let mut ports = entry.ports.clone();
            ports.sort();
            let earlier = segment.network[..j].iter().find(|e| {
                let mut p = e.ports.clone();
                p.sort();
                e.cidr == entry.cidr && e.protocol == entry.protocol && p == ports
            });
            if let Some(first) = earlier {
                let reason = format!("`{}` duplicates {}", entry.cidr, first.origin.describe());
                diag.at_origin(&entry.origin, reason);
            }
        }
    }
}

/// Two segments claiming the same prefix for overlapping ports and protocols:
/// the kernel could only ever pick one of them.
fn overlapping_segments(policy: &Policy, table: &Table, diag: &mut Diag) {
    let mut reported: HashSet<(&str, usize)> = HashSet::new();
    for (net, owns) in table {
        for a in owns {
            for b in owns {
                let later = b.entry.origin.loc > a.entry.origin.loc;
                if a.seg == b.seg || !later || !a.overlaps(b) {
                    continue;
                }
                if !reported.insert((b.entry.origin.field.as_str(), a.seg)) {
                    continue;
                }
                let reason = format!(
                    "`{net}` of segment `{}` overlaps {} of segment `{}` on the same ports and protocol; \
                     a destination can belong to only one segment",
                    policy.segments[b.seg].name,
                    a.entry.origin.describe(),
                    policy.segments[a.seg].name,
                );
                diag.at_origin(&b.entry.origin, reason);
            }
        }
    }
}

fn first_origin<'p>(owns: &[Own<'p>]) -> &'p Origin {
    owns.iter().map(|o| &o.entry.origin).min_by_key(|o| o.loc).unwrap_or(&owns[0].entry.origin)
}

fn prefix_limits(table: &Table, diag: &mut Diag) {
    let (mut v4, mut v6) = (0usize, 0usize);
    for (net, owns) in table {
        let count = if net.addr().is_ipv4() { &mut v4 } else { &mut v6 };
        *count += 1;
        if *count == MAX_PREFIXES_PER_FAMILY + 1 {
            let reason = format!(
                "more than {MAX_PREFIXES_PER_FAMILY} distinct prefixes of this address family"
            );
            diag.at_origin(first_origin(owns), reason);
        }
        let n = inherited(table, net).len();
        if n > MAX_SEGMENT_ENTRIES {
            let reason = format!(
                "`{net}` needs {n} segment entries (its own port windows plus those of every \
                 covering prefix); at most {MAX_SEGMENT_ENTRIES} are supported"
            );
            diag.at_origin(first_origin(owns), reason);
        }
    }
}

fn rules(policy: &Policy, table: &Table, diag: &mut Diag) {
    let seg_names: Vec<&str> = policy.segments.iter().map(|s| s.name.as_str()).collect();
    let wl_names: Vec<&str> = policy.workloads.iter().map(|w| w.name.as_str()).collect();
    let mut covered: HashMap<(&str, &str), &Origin> = HashMap::new();
    let mut entries = 0usize;
    for rule in &policy.allow {
        for w in &rule.workloads {
            if !wl_names.contains(&w.name.as_str()) {
                let hint = hint(&w.name, wl_names.iter().copied());
                diag.at_origin(&w.origin, format!("unknown workload `{}`{hint}", w.name));
            }
        }
        for s in &rule.segments {
            let Some(si) = seg_names.iter().position(|n| *n == s.name) else {
                let hint = hint(&s.name, seg_names.iter().copied());
                diag.at_origin(&s.origin, format!("unknown segment `{}`{hint}", s.name));
                continue;
            };
            never_matches(policy, table, rule, si, diag);
        }
        for w in &rule.workloads {
            for s in &rule.segments {
                if let Some(first) = covered.get(&(w.name.as_str(), s.name.as_str())) {
                    let reason = format!(
                        "`{}` -> `{}` is already covered by {}; use one rule per pair and list all its ports there",
                        w.name,
                        s.name,
                        first.describe()
                    );
                    diag.at_origin(&rule.origin, reason);
                    continue;
                }
                covered.insert((&w.name, &s.name), &rule.origin);
                entries += 1;
                if entries == MAX_ALLOW_ENTRIES + 1 {
                    let reason = format!("more than {MAX_ALLOW_ENTRIES} (workload, segment) pairs");
                    diag.at_origin(&rule.origin, reason);
                }
            }
        }
    }
    // Workload-level modes add one entry per segment the workload has no rule for.
    for w in policy.workloads.iter().filter(|w| w.mode.is_some()) {
        let uncovered = seg_names.iter().filter(|s| !covered.contains_key(&(w.name.as_str(), **s))).count();
        let before = entries;
        entries += uncovered;
        if before <= MAX_ALLOW_ENTRIES && entries > MAX_ALLOW_ENTRIES {
            let reason = format!(
                "this workload's `mode` needs an entry per segment; with the rules that makes more \
                 than {MAX_ALLOW_ENTRIES} (workload, segment) pairs"
            );
            diag.at_origin(&w.origin, reason);
        }
    }
}

/// A rule whose ports/protocol can never match any entry of the segment.
fn never_matches(policy: &Policy, table: &Table, rule: &super::model::AllowRule, si: usize, diag: &mut Diag) {
    let segment = &policy.segments[si];
    if segment.network.is_empty() {
        return; // already reported as a bad segment
    }
    let rule_proto = rule.protocol.mask();
    let rule_windows = windows(&rule.ports);
    debug_assert!(rule_windows.len() <= MAX_ALLOW_PORTS);
    let seg_entries = table.values().flatten().filter(|o| o.seg == si);
    let matches = seg_entries.clone().any(|o| {
        o.proto & rule_proto != 0 && rule_windows.iter().any(|w| w.overlaps(&o.window))
    });
    if matches {
        return;
    }
    let mut theirs: Vec<String> = Vec::new();
    for o in seg_entries {
        let proto = crate::policy::model::Protocol::from_mask(o.proto);
        let text = format!("{proto} {}", o.window);
        if !theirs.contains(&text) {
            theirs.push(text);
        }
    }
    let ours: Vec<String> = rule_windows.iter().map(|w| w.to_string()).collect();
    let reason = format!(
        "{} {} can never match segment `{}` (it covers {})",
        rule.protocol,
        ours.join(", "),
        segment.name,
        theirs.join("; ")
    );
    diag.at_origin(&rule.narrowing_origin, reason);
}

/// Builds the combined glob set once so a set too large to compile is an error here.
fn selectors(policy: &Policy, diag: &mut Diag) {
    let built = Selector::build(
        policy.workloads.iter().enumerate().map(|(i, w)| ((i + 1) as u32, w.cgroup.as_slice())),
    );
    if let (Err(e), Some(first)) = (built, policy.workloads.first()) {
        diag.at_origin(&first.origin, format!("workload selectors cannot be compiled: {e}"));
    }
}
