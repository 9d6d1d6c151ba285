//! Decision tables: pure functions of what the policy maps hold. The kernel
//! hooks call them with map lookups, the agent with its compiled policy, so
//! both decide by one table, tested here on the host.
//!
//! Lookups the kernel makes only on some paths (the segment's mode, a
//! container's assigned GPUs) are passed as closures and stay lazy.
use crate::{
    AllowValue, DEFAULT_DENY, DeviceAllowValue, FileAllowValue, GPU_NONE, GPUS_ASSIGNED, GpuSet, MAX_ALLOW_PORTS,
    MAX_SEGMENT_ENTRIES, MODE_AUDIT, RULE_DEFAULT, SEGMENT_NONE, SegmentEntries, Settings, SocketGrant,
    VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED,
};

/// The verdict of a refused access under a mode (`MODE_*`).
#[inline(always)]
pub const fn deny_or_audit(mode: u8) -> u8 {
    if mode == MODE_AUDIT { VERDICT_AUDITED } else { VERDICT_DENIED }
}

/// File decision once the segment is known. `entry`: the (workload,
/// segment) `FILE_ALLOW` entry, `None` for an unidentified process (no
/// lookup) or a pair without one. `want`: `ACCESS_*` bits needed.
///
/// - an entry granting every wanted bit: allowed by its rule;
/// - an entry granting less: denied or audited per the entry's mode, with its rule;
/// - no entry: denied or audited per the segment's mode, no rule.
#[inline(always)]
pub fn file_verdict(entry: Option<&FileAllowValue>, want: u8, segment_mode: impl FnOnce() -> u8) -> (u8, u32) {
    match entry {
        Some(a) if a.access & want == want => (VERDICT_ALLOWED, a.rule_id),
        Some(a) => (deny_or_audit(a.deny_mode), a.rule_id),
        None => (deny_or_audit(segment_mode()), RULE_DEFAULT),
    }
}

/// Device decision for a node of a protected segment. `entry` as for
/// [`file_verdict`] (`DEVICE_ALLOW`); `gpu`: the node's GPU index or
/// `GPU_NONE`; `want`: `DEV_ACC_*` bits asked for; `assigned`: the
/// container's kubelet-assigned GPUs, asked only for `GPUS_ASSIGNED` rules.
///
/// Allowed by the entry's rule when it grants every wanted bit and, for a
/// GPU node, that GPU; otherwise as [`file_verdict`].
#[inline(always)]
pub fn device_verdict<'a>(
    entry: Option<&DeviceAllowValue>,
    gpu: u16,
    want: u8,
    assigned: impl FnOnce() -> Option<&'a GpuSet>,
    segment_mode: impl FnOnce() -> u8,
) -> (u8, u32) {
    let Some(a) = entry else { return (deny_or_audit(segment_mode()), RULE_DEFAULT) };
    let gpu_ok = gpu == GPU_NONE
        || if a.gpus_from == GPUS_ASSIGNED {
            assigned().is_some_and(|s| s.contains(gpu))
        } else {
            a.gpus.contains(gpu)
        };
    if gpu_ok && a.access & want == want {
        (VERDICT_ALLOWED, a.rule_id)
    } else {
        (deny_or_audit(a.deny_mode), a.rule_id)
    }
}

/// The segment of a destination: the first entry of its longest matching
/// prefix that matches protocol (`PROTO_*` bit) and port, or `SEGMENT_NONE`.
#[inline(always)]
pub fn match_segment(entries: Option<&SegmentEntries>, proto: u8, port: u16) -> u16 {
    let Some(e) = entries else { return SEGMENT_NONE };
    let n = e.count as usize;
    // Bounded by the array (the verifier needs a constant bound), not `count`.
    for i in 0..MAX_SEGMENT_ENTRIES {
        if i >= n {
            break;
        }
        if e.entries[i].matches(proto, port) {
            return e.entries[i].segment_id;
        }
    }
    SEGMENT_NONE
}

/// Decision on creating a guarded socket (`kind`: a `SOCK_GRANT_*` bit).
/// `grant`: the workload's `SOCKET_GRANTS` entry (`None` if unreadable):
/// allowed by its rule when it grants the kind, otherwise denied or
/// audited per its mode (enforce without an entry).
#[inline(always)]
pub fn socket_verdict(grant: Option<&SocketGrant>, kind: u8) -> (u8, u32) {
    match grant {
        Some(g) if g.grants & kind != 0 => (VERDICT_ALLOWED, g.rule_id),
        Some(g) => (deny_or_audit(g.deny_mode), RULE_DEFAULT),
        None => (VERDICT_DENIED, RULE_DEFAULT),
    }
}

/// Network decision for a flow to a destination in no segment: the default
/// action (allowed, or denied/audited per the default mode), no rule.
#[inline(always)]
pub const fn unprotected_verdict(settings: &Settings) -> (u8, u32) {
    if settings.default_action == DEFAULT_DENY {
        (deny_or_audit(settings.default_mode), RULE_DEFAULT)
    } else {
        (VERDICT_ALLOWED, RULE_DEFAULT)
    }
}

/// Network decision for a flow to a protected segment. `entry` as for
/// [`file_verdict`] (`ALLOW`): allowed by the rule of its first port window
/// matching protocol and port; no window matches: denied or audited per
/// the entry's mode, with its deny rule; no entry: per the segment's mode.
#[inline(always)]
pub fn net_verdict(entry: Option<&AllowValue>, proto: u8, port: u16, segment_mode: impl FnOnce() -> u8) -> (u8, u32) {
    let Some(a) = entry else { return (deny_or_audit(segment_mode()), RULE_DEFAULT) };
    let n = a.count as usize;
    for i in 0..MAX_ALLOW_PORTS {
        if i >= n {
            break;
        }
        if a.ports[i].matches(proto, port) {
            return (VERDICT_ALLOWED, a.ports[i].rule_id);
        }
    }
    (deny_or_audit(a.deny_mode), a.deny_rule_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ACCESS_READ, ACCESS_WRITE, AllowPorts, DEFAULT_ALLOW, DEV_ACC_MKNOD, DEV_ACC_READ, DEV_ACC_WRITE, GPUS_LISTED,
        MODE_ENFORCE, PROTO_ANY, PROTO_TCP, PROTO_UDP, SegmentEntry,
    };

    /// Entry, want, segment mode → verdict, rule.
    type FileRow = (Option<FileAllowValue>, u8, u8, (u8, u32));
    /// Entry, node's GPU, want, container's assigned GPUs, segment mode → verdict, rule.
    type DeviceRow = (Option<DeviceAllowValue>, u16, u8, Option<GpuSet>, u8, (u8, u32));
    /// Entry, protocol, port, segment mode → verdict, rule.
    type NetRow = (Option<AllowValue>, u8, u16, u8, (u8, u32));

    const A: (u8, u32) = (VERDICT_AUDITED, 0);
    const D: (u8, u32) = (VERDICT_DENIED, 0);

    #[test]
    fn modes() {
        assert_eq!(deny_or_audit(MODE_ENFORCE), VERDICT_DENIED);
        assert_eq!(deny_or_audit(MODE_AUDIT), VERDICT_AUDITED);
        // Unknown modes fail closed.
        assert_eq!(deny_or_audit(7), VERDICT_DENIED);
    }

    #[test]
    fn file_table() {
        const R: u8 = ACCESS_READ;
        const RW: u8 = ACCESS_READ | ACCESS_WRITE;
        let read = |deny_mode| FileAllowValue { access: R, deny_mode, _pad: [0; 2], rule_id: 3 };
        let rw = FileAllowValue { access: RW, deny_mode: MODE_ENFORCE, _pad: [0; 2], rule_id: 5 };
        let none = |deny_mode| FileAllowValue { access: 0, deny_mode, _pad: [0; 2], rule_id: 9 };
        #[rustfmt::skip]
        let table: [FileRow; 14] = [
            // entry, want, segment mode → verdict, rule
            (None, R, MODE_ENFORCE, D),
            (None, RW, MODE_ENFORCE, D),
            (None, R, MODE_AUDIT, A),
            (None, RW, MODE_AUDIT, A),
            (Some(read(MODE_ENFORCE)), R, MODE_AUDIT, (VERDICT_ALLOWED, 3)),
            (Some(read(MODE_ENFORCE)), RW, MODE_AUDIT, (VERDICT_DENIED, 3)),
            (Some(read(MODE_AUDIT)), RW, MODE_ENFORCE, (VERDICT_AUDITED, 3)),
            (Some(rw), R, MODE_ENFORCE, (VERDICT_ALLOWED, 5)),
            (Some(rw), RW, MODE_ENFORCE, (VERDICT_ALLOWED, 5)),
            (Some(rw), ACCESS_WRITE, MODE_AUDIT, (VERDICT_ALLOWED, 5)),
            (Some(none(MODE_ENFORCE)), R, MODE_AUDIT, (VERDICT_DENIED, 9)),
            (Some(none(MODE_AUDIT)), R, MODE_ENFORCE, (VERDICT_AUDITED, 9)),
            (Some(none(MODE_AUDIT)), RW, MODE_ENFORCE, (VERDICT_AUDITED, 9)),
            // Nothing wanted is granted by any entry.
            (Some(none(MODE_ENFORCE)), 0, MODE_ENFORCE, (VERDICT_ALLOWED, 9)),
        ];
        for (i, (entry, want, mode, expect)) in table.into_iter().enumerate() {
            assert_eq!(file_verdict(entry.as_ref(), want, || mode), expect, "row {i}");
        }
    }

    #[test]
    fn segment_mode_is_read_only_without_entry() {
        let entry = FileAllowValue { access: ACCESS_READ, deny_mode: MODE_ENFORCE, _pad: [0; 2], rule_id: 1 };
        let never = || -> u8 { panic!("segment mode read although an entry decides") };
        assert_eq!(file_verdict(Some(&entry), ACCESS_WRITE, never), (VERDICT_DENIED, 1));
        let dev = DeviceAllowValue { rule_id: 1, ..Default::default() };
        assert_eq!(device_verdict(Some(&dev), GPU_NONE, DEV_ACC_READ, || None, never), (VERDICT_DENIED, 1));
        let net = AllowValue { deny_rule_id: 1, ..Default::default() };
        assert_eq!(net_verdict(Some(&net), PROTO_TCP, 1, never), (VERDICT_DENIED, 1));
    }

    fn gpus(list: &[u16]) -> GpuSet {
        let mut s = GpuSet::default();
        for g in list {
            s.insert(*g);
        }
        s
    }

    #[test]
    fn device_table() {
        const R: u8 = DEV_ACC_READ;
        const RW: u8 = DEV_ACC_READ | DEV_ACC_WRITE;
        const ALL: u8 = RW | DEV_ACC_MKNOD;
        let listed = |access, list: &[u16]| DeviceAllowValue {
            access,
            deny_mode: MODE_ENFORCE,
            gpus_from: GPUS_LISTED,
            _pad: 0,
            rule_id: 4,
            gpus: gpus(list),
        };
        let assigned = DeviceAllowValue { access: ALL, gpus_from: GPUS_ASSIGNED, rule_id: 6, ..Default::default() };
        let audit_read = DeviceAllowValue { access: R, deny_mode: MODE_AUDIT, rule_id: 8, ..Default::default() };
        let node_gpus = gpus(&[1, 200]);
        #[rustfmt::skip]
        let table: [DeviceRow; 16] = [
            // entry, node's gpu, want, container's assigned GPUs, segment mode → verdict, rule
            (None, GPU_NONE, R, None, MODE_ENFORCE, D),
            (None, 0, R, Some(node_gpus), MODE_AUDIT, A),
            (Some(listed(R, &[])), GPU_NONE, R, None, MODE_AUDIT, (VERDICT_ALLOWED, 4)),
            (Some(listed(R, &[])), GPU_NONE, RW, None, MODE_AUDIT, (VERDICT_DENIED, 4)),
            (Some(listed(ALL, &[])), GPU_NONE, DEV_ACC_MKNOD, None, MODE_ENFORCE, (VERDICT_ALLOWED, 4)),
            (Some(listed(RW, &[0, 3])), 3, RW, None, MODE_ENFORCE, (VERDICT_ALLOWED, 4)),
            (Some(listed(RW, &[0, 3])), 2, R, None, MODE_ENFORCE, (VERDICT_DENIED, 4)),
            (Some(listed(RW, &[0, 3])), 3, ALL, None, MODE_ENFORCE, (VERDICT_DENIED, 4)),
            (Some(listed(RW, &[253])), 253, R, None, MODE_ENFORCE, (VERDICT_ALLOWED, 4)),
            // Assigned: the container's set decides, the entry's list is ignored.
            (Some(assigned), 1, RW, Some(node_gpus), MODE_ENFORCE, (VERDICT_ALLOWED, 6)),
            (Some(assigned), 200, R, Some(node_gpus), MODE_ENFORCE, (VERDICT_ALLOWED, 6)),
            (Some(assigned), 2, R, Some(node_gpus), MODE_AUDIT, (VERDICT_DENIED, 6)),
            (Some(assigned), 1, R, None, MODE_ENFORCE, (VERDICT_DENIED, 6)),
            (Some(assigned), GPU_NONE, R, None, MODE_ENFORCE, (VERDICT_ALLOWED, 6)),
            (Some(audit_read), GPU_NONE, RW, None, MODE_ENFORCE, (VERDICT_AUDITED, 8)),
            (Some(audit_read), 0, R, None, MODE_ENFORCE, (VERDICT_AUDITED, 8)),
        ];
        for (i, (entry, gpu, want, given, mode, expect)) in table.into_iter().enumerate() {
            assert_eq!(device_verdict(entry.as_ref(), gpu, want, || given.as_ref(), || mode), expect, "row {i}");
        }
    }

    #[test]
    fn assigned_gpus_read_only_for_assigned_rules() {
        let listed = DeviceAllowValue { access: DEV_ACC_READ, gpus: gpus(&[0]), rule_id: 2, ..Default::default() };
        let never = || -> Option<&'static GpuSet> { panic!("assignment read for a listed rule") };
        assert_eq!(device_verdict(Some(&listed), 0, DEV_ACC_READ, never, || 0), (VERDICT_ALLOWED, 2));
    }

    fn entry(segment_id: u16, proto_mask: u8, port_lo: u16, port_hi: u16) -> SegmentEntry {
        SegmentEntry { segment_id, proto_mask, _pad: 0, port_lo, port_hi }
    }

    #[test]
    fn segment_match() {
        let mut e = SegmentEntries { count: 3, ..Default::default() };
        e.entries[0] = entry(7, PROTO_TCP, 443, 443);
        e.entries[1] = entry(8, PROTO_UDP, 0, 65535);
        e.entries[2] = entry(9, PROTO_ANY, 1000, 2000);
        // Beyond `count`: never read.
        e.entries[3] = entry(10, PROTO_ANY, 0, 65535);
        let cases = [
            (PROTO_TCP, 443, 7),
            (PROTO_UDP, 443, 8),
            (PROTO_TCP, 1500, 9),
            (PROTO_UDP, 1500, 8),
            (PROTO_TCP, 80, SEGMENT_NONE),
            (0, 443, SEGMENT_NONE),
            (PROTO_TCP, 2000, 9),
            (PROTO_TCP, 2001, SEGMENT_NONE),
        ];
        for (proto, port, want) in cases {
            assert_eq!(match_segment(Some(&e), proto, port), want, "{proto} {port}");
        }
        assert_eq!(match_segment(None, PROTO_TCP, 443), SEGMENT_NONE);
        // A count larger than the array is bounded by it.
        let full = SegmentEntries { count: 99, entries: [entry(3, PROTO_TCP, 1, 1); MAX_SEGMENT_ENTRIES], _pad: 0 };
        assert_eq!(match_segment(Some(&full), PROTO_TCP, 1), 3);
        assert_eq!(match_segment(Some(&full), PROTO_TCP, 2), SEGMENT_NONE);
    }

    #[test]
    fn unprotected_table() {
        let s = |default_action, default_mode| Settings { default_action, default_mode, ..Default::default() };
        assert_eq!(unprotected_verdict(&s(DEFAULT_ALLOW, MODE_ENFORCE)), (VERDICT_ALLOWED, RULE_DEFAULT));
        assert_eq!(unprotected_verdict(&s(DEFAULT_ALLOW, MODE_AUDIT)), (VERDICT_ALLOWED, RULE_DEFAULT));
        assert_eq!(unprotected_verdict(&s(DEFAULT_DENY, MODE_ENFORCE)), (VERDICT_DENIED, RULE_DEFAULT));
        assert_eq!(unprotected_verdict(&s(DEFAULT_DENY, MODE_AUDIT)), (VERDICT_AUDITED, RULE_DEFAULT));
    }

    fn ports(rule_id: u32, proto_mask: u8, port_lo: u16, port_hi: u16) -> AllowPorts {
        AllowPorts { rule_id, proto_mask, _pad: 0, port_lo, port_hi, _pad2: 0 }
    }

    #[test]
    fn net_table() {
        let mut two = AllowValue { count: 2, deny_mode: MODE_ENFORCE, deny_rule_id: 11, ..Default::default() };
        two.ports[0] = ports(1, PROTO_TCP, 443, 443);
        two.ports[1] = ports(2, PROTO_ANY, 8000, 8100);
        // Beyond `count`: never read.
        two.ports[2] = ports(3, PROTO_ANY, 0, 65535);
        let audit = AllowValue { count: 0, deny_mode: MODE_AUDIT, deny_rule_id: 12, ..Default::default() };
        #[rustfmt::skip]
        let table: [NetRow; 9] = [
            // entry, proto, port, segment mode → verdict, rule
            (None, PROTO_TCP, 443, MODE_ENFORCE, D),
            (None, PROTO_UDP, 53, MODE_AUDIT, A),
            (Some(two), PROTO_TCP, 443, MODE_AUDIT, (VERDICT_ALLOWED, 1)),
            (Some(two), PROTO_UDP, 443, MODE_AUDIT, (VERDICT_DENIED, 11)),
            (Some(two), PROTO_UDP, 8050, MODE_AUDIT, (VERDICT_ALLOWED, 2)),
            (Some(two), PROTO_TCP, 8101, MODE_AUDIT, (VERDICT_DENIED, 11)),
            (Some(two), PROTO_TCP, 22, MODE_ENFORCE, (VERDICT_DENIED, 11)),
            (Some(audit), PROTO_TCP, 443, MODE_ENFORCE, (VERDICT_AUDITED, 12)),
            (Some(audit), 0, 443, MODE_ENFORCE, (VERDICT_AUDITED, 12)),
        ];
        for (i, (entry, proto, port, mode, expect)) in table.into_iter().enumerate() {
            assert_eq!(net_verdict(entry.as_ref(), proto, port, || mode), expect, "row {i}");
        }
    }
}
