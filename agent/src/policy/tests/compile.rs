use warden_common::{
    AllowKey, AllowPorts, AllowValue, DEFAULT_ALLOW, DEFAULT_DENY, Ipv4Key, Ipv6Key, MODE_AUDIT, MODE_ENFORCE,
    PROTO_ANY, PROTO_TCP, PROTO_UDP, SegmentEntries, SegmentEntry,
};

use super::{EXAMPLE, MODES, NESTED, config, names, ok};
use crate::policy::Facts;

fn entry(segment_id: u16, proto_mask: u8, port_lo: u16, port_hi: u16) -> SegmentEntry {
    SegmentEntry { segment_id, proto_mask, _pad: 0, port_lo, port_hi }
}

fn entries(list: &[SegmentEntry]) -> SegmentEntries {
    let mut v = SegmentEntries { count: list.len() as u32, ..Default::default() };
    v.entries[..list.len()].copy_from_slice(list);
    v
}

fn v4(a: [u8; 4], len: u32) -> Ipv4Key {
    Ipv4Key { prefix_len: len, addr: a }
}

#[test]
fn nested_prefixes_inherit_covering_entries_longest_first() {
    let c = ok(NESTED).compile();
    let wide = entry(1, PROTO_ANY, 0, 65535);
    let s443 = entry(2, PROTO_TCP, 443, 443);
    let s9000 = entry(2, PROTO_TCP, 9000, 9100);
    let ssh = entry(3, PROTO_ANY, 22, 22);
    let mapped = entry(3, PROTO_UDP, 0, 65535);
    assert_eq!(
        c.v4,
        vec![
            (v4([10, 0, 0, 0], 8), entries(&[wide])),
            // Own entries narrow-first (443 before 9000-9100), then the /8.
            (v4([10, 20, 0, 0], 16), entries(&[s443, s9000, wide])),
            (v4([10, 20, 30, 0], 24), entries(&[ssh, s443, s9000, wide])),
            // ::ffff:10.99.0.0/112 became IPv4 10.99.0.0/16.
            (v4([10, 99, 0, 0], 16), entries(&[mapped, wide])),
        ]
    );
}

#[test]
fn ipv6_keys_and_inheritance() {
    let c = ok(NESTED).compile();
    let mut a48 = [0u8; 16];
    a48[..4].copy_from_slice(&[0xfd, 0x00, 0x00, 0x0b]);
    let mut a64 = a48;
    a64[7] = 1;
    let p8443 = entry(4, PROTO_ANY, 8443, 8443);
    let all = entry(4, PROTO_ANY, 0, 65535);
    assert_eq!(
        c.v6,
        vec![
            (Ipv6Key { prefix_len: 48, addr: a48 }, entries(&[p8443])),
            (Ipv6Key { prefix_len: 64, addr: a64 }, entries(&[all, p8443])),
        ]
    );
}

#[test]
fn ids_names_and_labels() {
    let c = ok(EXAMPLE).compile();
    assert_eq!(
        names(&c.segments),
        ["object-store", "model-registry", "tenant-b", "metadata-api", "datasets", "model-weights", "gpus"]
    );
    assert_eq!(names(&c.workloads), ["trainer", "inference"]);
    assert_eq!(c.segment_name(1), Some("object-store"));
    assert_eq!(c.segment_name(4), Some("metadata-api"));
    assert_eq!(c.segment_name(0), None);
    assert_eq!(c.segment_name(6), Some("model-weights"));
    assert_eq!(c.segment_name(7), Some("gpus"));
    assert_eq!(c.segment_name(8), None);
    assert_eq!(c.workload_name(2), Some("inference"));
    assert_eq!(c.workload_name(0), None);
    assert_eq!(c.workload_name(3), None);
    assert_eq!(c.rule_label(1), Some("allow[0] trainer->object-store"));
    assert_eq!(c.rule_label(2), Some("allow[1] inference->model-registry"));
    assert_eq!(c.rule_label(0), None);
    assert_eq!(c.rule_label(4), Some("allow[3] trainer->model-weights"));
    assert_eq!(c.rule_label(6), Some("allow[5] trainer->gpus"));
    assert_eq!(c.rule_label(7), None);
    assert_eq!(c.rules.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    // Path-only and device-only segments get ids and infos like network ones.
    assert_eq!(c.segment_info.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(c.devices.iter().map(|d| d.segment_id).collect::<Vec<_>>(), [7]);
    // The trainer's GPU rule: GPU 0 only, default access; inference has no device entry.
    let dev: Vec<(u32, u16, u32, bool, bool)> = c
        .device_allow
        .iter()
        .map(|(k, v)| (k.workload_id, k.segment_id, v.rule_id, v.gpus.contains(0), v.gpus.contains(1)))
        .collect();
    assert_eq!(dev, [(1, 7, 6, true, false)]);
    assert_eq!(c.segment_info[1].1.mode, MODE_AUDIT);
    assert_eq!(c.segment_info[0].1.mode, MODE_ENFORCE);
    assert_eq!(c.settings.default_action, DEFAULT_ALLOW);
    assert_eq!(c.settings.log_unprotected, 0);
    // The example's demo cgroups resolve as documented.
    assert_eq!(c.workload_for("training/job-7", &Facts::default()), Some(1));
    assert_eq!(c.workload_for("training/job-7/worker-0", &Facts::default()), Some(1));
    assert_eq!(c.workload_for("inference/llm", &Facts::default()), Some(2));
    assert_eq!(c.workload_for("", &Facts::default()), None);
    assert_eq!(c.workload_for("other", &Facts::default()), None);
}

fn allow_of(c: &super::super::CompiledPolicy, w: u32, s: u16) -> AllowValue {
    let key = AllowKey { workload_id: w, segment_id: s, _pad: 0 };
    c.allow.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap_or_else(|| panic!("no entry {w}/{s}"))
}

fn window(rule_id: u32, proto_mask: u8, port_lo: u16, port_hi: u16) -> AllowPorts {
    AllowPorts { rule_id, proto_mask, port_lo, port_hi, ..Default::default() }
}

#[test]
fn allow_windows_and_mode_precedence() {
    let c = ok(MODES).compile();
    assert_eq!(c.settings.default_action, DEFAULT_DENY);
    assert_eq!(c.settings.default_mode, MODE_ENFORCE);
    // `agent.events.logUnprotected` is a daemon setting: the kernel maps add it.
    assert!(config(MODES).agent.events.log_unprotected);
    assert_eq!(c.settings.log_unprotected, 0);
    // Unidentified / rule-less pairs: the segment's mode, else the global one.
    let modes: Vec<u8> = c.segment_info.iter().map(|(_, i)| i.mode).collect();
    assert_eq!(modes, [MODE_AUDIT, MODE_ENFORCE, MODE_ENFORCE]);

    // allow[0] w-plain -> s-audit: no ports = one all-ports window; mode from the segment.
    let v = allow_of(&c, 2, 1);
    assert_eq!((v.count, v.deny_mode, v.deny_rule_id), (1, MODE_AUDIT, 1));
    assert_eq!(v.ports[0], window(1, PROTO_ANY, 0, 65535));
    assert_eq!(v.ports[1], AllowPorts::default());

    // allow[1] w-plain -> s-plain: the rule's own windows and mode.
    let v = allow_of(&c, 2, 2);
    assert_eq!((v.count, v.deny_mode, v.deny_rule_id), (2, MODE_AUDIT, 2));
    assert_eq!(v.ports[0], window(2, PROTO_TCP, 443, 443));
    assert_eq!(v.ports[1], window(2, PROTO_TCP, 8000, 8010));

    // allow[2] w-audit -> s-plain: rule mode beats the workload's audit.
    let v = allow_of(&c, 1, 2);
    assert_eq!((v.count, v.deny_mode, v.deny_rule_id), (1, MODE_ENFORCE, 3));

    // w-audit has a mode, so its rule-less pairs get deny-only entries.
    for s in [1, 3] {
        let v = allow_of(&c, 1, s);
        assert_eq!(v, AllowValue { deny_mode: MODE_AUDIT, ..Default::default() });
    }
    // w-plain has no mode: no entry for s-other, the kernel falls back to SegmentInfo.
    let keys: Vec<(u32, u16)> = c.allow.iter().map(|(k, _)| (k.workload_id, k.segment_id)).collect();
    assert_eq!(keys, [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]);
}

#[test]
fn global_audit_and_workload_mode_over_segment_mode() {
    let text = r#"version: 1
mode: audit
segments:
  - name: s
    mode: enforce
    network: [{cidr: 10.0.0.0/8}]
  - name: t
    network: [{cidr: 10.1.0.0/16, protocol: udp}]
workloads:
  - name: w
    mode: audit
    selector: {cgroup: "w"}
  - name: x
    selector: {cgroup: "x"}
allow:
  - workload: w
    segment: s
  - workload: x
    segment: t
"#;
    let c = ok(text).compile();
    assert_eq!(c.settings.default_mode, MODE_AUDIT);
    // Rule without mode: workload's audit wins over the segment's enforce.
    assert_eq!(allow_of(&c, 1, 1).deny_mode, MODE_AUDIT);
    // Rule x -> t: no rule/workload/segment mode, so the global audit.
    let v = allow_of(&c, 2, 2);
    assert_eq!(v.deny_mode, MODE_AUDIT);
    assert_eq!(v.ports[0], window(2, PROTO_ANY, 0, 65535));
    assert_eq!(c.segment_info[0].1.mode, MODE_ENFORCE);
    assert_eq!(c.segment_info[1].1.mode, MODE_AUDIT);
    // /16 inside the /8 of another segment inherits its entry.
    assert_eq!(c.v4[1].1, entries(&[entry(2, PROTO_UDP, 0, 65535), entry(1, PROTO_ANY, 0, 65535)]));
}

#[test]
fn selector_file_order_and_inheritance_through_compiled_policy() {
    let text = r#"version: 1
workloads:
  - name: specific
    selector: {cgroup: "training/special"}
  - name: trainer
    selector: {cgroup: ["training/*", "jobs/**"]}
  - name: top-level
    selector: {cgroup: "*"}
"#;
    let c = ok(text).compile();
    assert_eq!(c.workload_for("training/special", &Facts::default()), Some(1));
    // Matched at `training/special` by two workloads: the first one wins.
    assert_eq!(c.workload_for("training/special/ctr", &Facts::default()), Some(1));
    assert_eq!(c.workload_for("training/other/ctr", &Facts::default()), Some(2));
    assert_eq!(c.workload_for("jobs/a/b/c", &Facts::default()), Some(2));
    assert_eq!(c.workload_for("training", &Facts::default()), Some(3));
    assert_eq!(c.workload_for("misc/deeper", &Facts::default()), Some(3));
    // globset's `*` also matches the empty path, i.e. the root itself.
    assert_eq!(c.workload_for("", &Facts::default()), Some(3));
}

#[test]
fn catch_all_double_star_matches_at_the_deepest_level() {
    // `**` matches every path itself, so it wins before ancestors are tried.
    let text = "version: 1\nworkloads:\n  - {name: a, selector: {cgroup: \"training/*\"}}\n  - {name: all, selector: {cgroup: \"**\"}}\n";
    let c = ok(text).compile();
    assert_eq!(c.workload_for("training/job", &Facts::default()), Some(1));
    assert_eq!(c.workload_for("training/job/ctr", &Facts::default()), Some(2));
    assert_eq!(c.workload_for("", &Facts::default()), Some(2));
}
