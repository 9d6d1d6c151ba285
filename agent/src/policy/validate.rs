//! Cross-item rules: unique names, resolvable references, segments that
//! don't contradict each other, rules that fit their segments (`access` for
//! paths, `ports`/`protocol` for network entries), one rule per (workload,
//! segment) pair, and the kernel maps' capacity limits.
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use warden_common::MAX_SEGMENT_ENTRIES;

use super::error::{Diag, Origin, quoted};
use super::model::{AllowRule, Policy, PortRange, Protocol, Segment, SocketKind, windows};
use super::names::hint;
use super::prefixes::{Own, Table, inherited, own_entries};
use super::select::Selector;

/// Entries of the `SEGMENTS_V4`/`SEGMENTS_V6` tries and the `ALLOW` hash
/// (sizes in `ebpf/src/maps.rs`).
pub const MAX_PREFIXES_PER_FAMILY: usize = 65536;
pub const MAX_ALLOW_ENTRIES: usize = 65536;
/// Entries of the `FILE_ALLOW` and `DEVICE_ALLOW` hashes.
pub const MAX_FILE_ALLOW_ENTRIES: usize = 65536;
pub const MAX_DEVICE_ALLOW_ENTRIES: usize = 65536;
/// Protected directory trees across all segments (the `FILE_ROOTS` hash).
pub const MAX_FILE_ROOTS: usize = 4096;

pub(crate) fn check(policy: &Policy, diag: &mut Diag) {
    unique_names(policy.segments.iter().map(|s| (&s.name, &s.origin)), "segment", diag);
    unique_names(policy.workloads.iter().map(|w| (&w.name, &w.origin)), "workload", diag);
    duplicate_entries(policy, diag);
    paths(policy, diag);
    gpus(policy, diag);
    let table = own_entries(policy);
    overlapping_segments(policy, &table, diag);
    prefix_limits(&table, diag);
    rules(policy, &table, diag);
    socket_grants(policy, diag);
    selectors(policy, diag);
}

/// A warning for each socket grant to a workload denied some network
/// segment: a packet socket reaches it around every hook, and a raw one
/// leaves only the packet-level backstop between them.
fn socket_grants(policy: &Policy, diag: &mut Diag) {
    let network: Vec<&str> =
        policy.segments.iter().filter(|s| !s.network.is_empty()).map(|s| s.name.as_str()).collect();
    for rule in policy.allow.iter().filter(|r| !r.sockets.is_empty()) {
        for w in &rule.workloads {
            let allowed = |s: &str| {
                policy
                    .allow
                    .iter()
                    .any(|r| r.workloads.iter().any(|x| x.name == w.name) && r.segments.iter().any(|x| x.name == s))
            };
            let denied: Vec<&str> = network.iter().copied().filter(|s| !allowed(s)).collect();
            if denied.is_empty() {
                continue;
            }
            let kinds: Vec<String> = rule.sockets.iter().map(ToString::to_string).collect();
            let why = if rule.sockets.contains(&SocketKind::Packet) {
                "a packet socket reaches them around every hook"
            } else {
                "only the packet-level backstop judges what a raw socket sends them"
            };
            let reason = format!(
                "grants {} sockets to `{}`, which is denied segment{} {}: {why}",
                kinds.join(" and "),
                w.name,
                if denied.len() == 1 { "" } else { "s" },
                denied.join(", ")
            );
            diag.warn(&rule.sockets_origin, reason);
        }
    }
}

fn unique_names<'p>(items: impl Iterator<Item = (&'p String, &'p Origin)>, kind: &str, diag: &mut Diag) {
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
        let mut seen = HashMap::new();
        for entry in &segment.network {
            let mut ports = entry.ports.clone();
            ports.sort();
            match seen.entry((entry.cidr, entry.protocol, ports)) {
                Entry::Occupied(first) => {
                    let first: &&Origin = first.get();
                    let reason = format!("`{}` duplicates {}", entry.cidr, first.describe());
                    diag.at_origin(&entry.origin, reason);
                }
                Entry::Vacant(slot) => {
                    slot.insert(&entry.origin);
                }
            }
        }
    }
}

/// The same path twice (in one segment or two), and the total limit. Nested
/// paths are fine: the deepest root governs.
fn paths(policy: &Policy, diag: &mut Diag) {
    let mut seen: HashMap<&Path, (&Origin, &str)> = HashMap::new();
    let mut count = 0usize;
    for segment in &policy.segments {
        for entry in &segment.paths {
            count += 1;
            if count == MAX_FILE_ROOTS + 1 {
                let reason = format!("more than {MAX_FILE_ROOTS} paths in all segments together");
                diag.at_origin(&entry.origin, reason);
            }
            match seen.entry(&entry.path) {
                Entry::Occupied(first) => {
                    let (origin, name) = *first.get();
                    let reason = format!(
                        "`{}` is already listed at {} (segment `{name}`); a directory can belong to only one segment",
                        entry.path.display(),
                        origin.describe()
                    );
                    diag.at_origin(&entry.origin, reason);
                }
                Entry::Vacant(slot) => {
                    slot.insert((&entry.origin, &segment.name));
                }
            }
        }
    }
}

/// Two segments claiming the same prefix for overlapping ports and protocols:
/// the kernel could only ever pick one of them.
fn overlapping_segments(policy: &Policy, table: &Table, diag: &mut Diag) {
    let mut reported: HashSet<(&str, usize)> = HashSet::new();
    for (net, owns) in table {
        if owns.len() > MAX_SEGMENT_ENTRIES {
            continue; // reported by prefix_limits; also keeps this loop cheap
        }
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
            let reason = format!("more than {MAX_PREFIXES_PER_FAMILY} distinct prefixes of this address family");
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
    let seg_index: HashMap<&str, usize> = seg_names.iter().enumerate().rev().map(|(i, n)| (*n, i)).collect();
    let wl_known: HashSet<&str> = wl_names.iter().copied().collect();
    let mut by_segment: Vec<Vec<&Own>> = vec![Vec::new(); policy.segments.len()];
    for own in table.values().flatten() {
        by_segment[own.seg].push(own);
    }
    let mut covered: HashMap<(&str, &str), &Origin> = HashMap::new();
    let mut pairs = Pairs::default();
    for rule in &policy.allow {
        for w in &rule.workloads {
            if !wl_known.contains(w.name.as_str()) {
                let hint = hint(&w.name, wl_names.iter().copied());
                diag.at_origin(&w.origin, format!("unknown workload {}{hint}", quoted(&w.name)));
            }
        }
        let mut known = Vec::new();
        for s in &rule.segments {
            let Some(&si) = seg_index.get(s.name.as_str()) else {
                let hint = hint(&s.name, seg_names.iter().copied());
                diag.at_origin(&s.origin, format!("unknown segment {}{hint}", quoted(&s.name)));
                continue;
            };
            let segment = &policy.segments[si];
            if !(segment.network.is_empty() && segment.paths.is_empty() && segment.devices.is_none()) {
                known.push(si); // else all its entries were invalid, and reported
            }
            never_matches(&policy.segments[si].name, &by_segment[si], rule, diag);
        }
        rule_fits_segments(policy, rule, &known, known.len() == rule.segments.len(), diag);
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
                if let Some(&si) = seg_index.get(s.name.as_str()) {
                    pairs.add(&policy.segments[si], &rule.origin, diag);
                }
            }
        }
    }
    // Workload-level modes add one entry per segment the workload has no rule for.
    for w in policy.workloads.iter().filter(|w| w.mode.is_some()) {
        for segment in policy.segments.iter().filter(|s| !covered.contains_key(&(w.name.as_str(), s.name.as_str()))) {
            pairs.add(segment, &w.origin, diag);
        }
    }
}

/// (workload, segment) pairs counted against the `ALLOW` and `FILE_ALLOW` maps.
#[derive(Default)]
struct Pairs {
    network: usize,
    files: usize,
    devices: usize,
}

impl Pairs {
    fn add(&mut self, segment: &Segment, origin: &Origin, diag: &mut Diag) {
        let counts = [
            (!segment.network.is_empty(), &mut self.network, MAX_ALLOW_ENTRIES, "network"),
            (!segment.paths.is_empty(), &mut self.files, MAX_FILE_ALLOW_ENTRIES, "file"),
            (segment.devices.is_some(), &mut self.devices, MAX_DEVICE_ALLOW_ENTRIES, "device"),
        ];
        for (applies, count, max, kind) in counts {
            if !applies {
                continue;
            }
            *count += 1;
            if *count == max + 1 {
                let reason = format!(
                    "more than {max} (workload, segment) pairs for {kind} segments \
                     (rules, plus one per segment for each workload with its own `mode`)"
                );
                diag.at_origin(origin, reason);
            }
        }
    }
}

/// `access` goes with paths, `ports`/`protocol` with network entries. `known`:
/// listed segments that exist and kept valid entries; `all_known`: all listed
/// ones are (else "none has X" could be a cascade of another error).
fn rule_fits_segments(policy: &Policy, rule: &AllowRule, known: &[usize], all_known: bool, diag: &mut Diag) {
    if rule.segments.is_empty() {
        // Only `sockets`: keys that narrow a segment grant have nothing to narrow.
        let written = [(&rule.narrowing_origin, rule.narrows()), (&rule.access_origin, rule.access.is_some())];
        let gpus = (&rule.gpus_origin, rule.gpus.is_some());
        for (origin, given) in written.into_iter().chain([gpus]) {
            if given {
                let key = origin.field.rsplit('.').next().unwrap_or_default();
                diag.at_origin(
                    origin,
                    format!("`{key}` applies to segments, and this rule names none (only `sockets`)"),
                );
            }
        }
        return;
    }
    let any_paths = known.iter().any(|&si| !policy.segments[si].paths.is_empty());
    let any_network = known.iter().any(|&si| !policy.segments[si].network.is_empty());
    let any_devices = known.iter().any(|&si| policy.segments[si].devices.is_some());
    let any_gpus = known.iter().any(|&si| policy.segments[si].devices.as_ref().is_some_and(|d| d.gpus_given));
    if rule.gpus.is_some() && !any_gpus && all_known {
        let reason = "`gpus` only applies to segments with `devices.gpus`, and none of this rule's segments has any";
        diag.at_origin(&rule.gpus_origin, reason);
    }
    // An `access` value that did not parse is already reported; its origin is the key's.
    let access_written = rule.access_origin.field != rule.origin.field;
    match (rule.access, any_paths) {
        (None, true) if !access_written => {
            diag.at(rule.origin.loc, &format!("{}.access", rule.origin.field), ACCESS_REQUIRED)
        }
        (Some(_), false) if all_known && !any_devices => diag.at_origin(
            &rule.access_origin,
            "`access` only applies to segments with `paths` or `devices`, and none of this rule's segments has any",
        ),
        _ => {}
    }
    if rule.narrows() && !any_network && all_known {
        let key = if rule.narrowing_origin.field.ends_with("ports") { "ports" } else { "protocol" };
        let reason = format!(
            "`{key}` only applies to segments with `network` entries, and none of this rule's segments has any"
        );
        diag.at_origin(&rule.narrowing_origin, reason);
    }
}

const ACCESS_REQUIRED: &str = "`access` is required for segments with paths: read | read-write";

/// A GPU index in two segments: which segment's rules apply would be ambiguous.
fn gpus(policy: &Policy, diag: &mut Diag) {
    // GPU → the first segment listing it; each later segment gets one error
    // per earlier segment it clashes with.
    let mut owner: HashMap<u16, &str> = HashMap::new();
    for s in &policy.segments {
        let Some(d) = &s.devices else { continue };
        let mut clashes: Vec<(&str, Vec<u16>)> = Vec::new();
        for gpu in d.gpus.as_ref().map(|g| g.indices()).unwrap_or_default() {
            let first = *owner.entry(gpu).or_insert(&s.name);
            if first == s.name {
                continue;
            }
            match clashes.iter_mut().find(|(name, _)| *name == first) {
                Some((_, gpus)) => gpus.push(gpu),
                None => clashes.push((first, vec![gpu])),
            }
        }
        for (first, gpus) in clashes {
            let shown: Vec<String> = gpus.iter().take(8).map(u16::to_string).collect();
            let more = if gpus.len() > 8 { format!(" and {} more", gpus.len() - 8) } else { String::new() };
            let (noun, verb) = if gpus.len() == 1 { ("GPU", "is") } else { ("GPUs", "are") };
            let reason = format!(
                "{noun} {}{more} {verb} already in segment `{first}`; a GPU belongs to one segment",
                shown.join(", ")
            );
            diag.at_origin(&d.origin, reason);
        }
    }
    let mut control: Option<&str> = None;
    for s in &policy.segments {
        if s.devices.as_ref().is_some_and(|d| d.nvidia_control) {
            match control {
                Some(first) => diag.at_origin(
                    &s.devices.as_ref().map(|d| d.origin.clone()).unwrap_or_else(|| s.origin.clone()),
                    format!(
                        "the NVIDIA control nodes are already in segment `{first}`; set `nvidiaControl: false` here"
                    ),
                ),
                None => control = Some(&s.name),
            }
        }
    }
}

/// A rule whose ports/protocol can never match any entry of the segment.
fn never_matches(segment: &str, entries: &[&Own], rule: &AllowRule, diag: &mut Diag) {
    if entries.is_empty() {
        return; // a segment without valid entries is already reported
    }
    let rule_proto = rule.protocol.mask();
    let rule_windows = windows(&rule.ports);
    let matches =
        entries.iter().any(|o| o.proto & rule_proto != 0 && rule_windows.iter().any(|w| w.overlaps(&o.window)));
    if matches {
        return;
    }
    // Name a few of the segment's windows; huge segments would flood the message.
    let (mut seen, mut theirs, mut more) = (HashSet::new(), Vec::new(), false);
    for o in entries {
        let text = describe(Protocol::from_mask(o.proto), &[o.window]);
        if seen.insert(text.clone()) {
            if theirs.len() < 8 {
                theirs.push(text);
            } else {
                more = true;
            }
        }
    }
    if more {
        theirs.push("...".into());
    }
    let reason = format!(
        "this rule ({}) can never match segment `{segment}`, which only covers: {}",
        describe(rule.protocol, &rule_windows),
        theirs.join("; ")
    );
    diag.at_origin(&rule.narrowing_origin, reason);
}

/// `tcp, ports 443, 8000-8100` / `any protocol, all ports`.
fn describe(proto: Protocol, windows: &[PortRange]) -> String {
    let proto = match proto {
        Protocol::Any => "any protocol".to_string(),
        p => p.to_string(),
    };
    if windows == [PortRange::ALL] {
        return format!("{proto}, all ports");
    }
    let ports: Vec<String> = windows.iter().map(ToString::to_string).collect();
    let noun = if ports.len() == 1 && windows[0].lo == windows[0].hi { "port" } else { "ports" };
    format!("{proto}, {noun} {}", ports.join(", "))
}

/// Builds the combined glob set once so a set too large to compile is an error here.
fn selectors(policy: &Policy, diag: &mut Diag) {
    let built = Selector::build(policy.selector_specs());
    if let (Err(e), Some(first)) = (built, policy.workloads.first()) {
        diag.at_origin(&first.origin, format!("workload selectors cannot be compiled: {e}"));
    }
}
