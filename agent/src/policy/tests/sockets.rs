//! `sockets:` in allow rules: raw and packet socket grants, their checks,
//! warnings and compiled table.
use warden_common::{MODE_AUDIT, MODE_ENFORCE, SOCK_GRANT_PACKET, SOCK_GRANT_RAW, SocketGrant};

use super::super::SocketKind;
use super::{config, errs, ok};

const GRANTS: &str = r#"version: 1
segments:
  - name: store
    network: [{cidr: 10.0.0.0/8}]
  - name: data
    paths: [/data]
workloads:
  - name: trainer
    selector: {cgroup: "t/*"}
  - name: netdiag
    mode: audit
    selector: {cgroup: "n/*"}
  - name: plain
    selector: {cgroup: "p/*"}
allow:
  - workload: trainer
    segment: store
  - workloads: [trainer, netdiag]
    sockets: [raw]
  - workload: netdiag
    sockets: [packet]
"#;

#[test]
fn grants_read_and_compile() {
    let p = ok(GRANTS);
    assert_eq!(p.allow[1].sockets, [SocketKind::Raw]);
    assert!(p.allow[1].segments.is_empty(), "a sockets-only rule names no segment");
    assert_eq!(p.allow[2].label(), "allow[2] netdiag sockets:packet");
    let c = p.compile();
    assert_eq!(c.settings.guard_sockets, 1, "network segments: raw and packet sockets are guarded");
    let grant = |grants, deny_mode, rule_id| SocketGrant { grants, deny_mode, _pad: [0; 2], rule_id };
    assert_eq!(
        c.socket_grants,
        [
            grant(0, MODE_ENFORCE, 0),                                // unidentified
            grant(SOCK_GRANT_RAW, MODE_ENFORCE, 2),                   // trainer
            grant(SOCK_GRANT_RAW | SOCK_GRANT_PACKET, MODE_AUDIT, 2), // netdiag, audit workload
            grant(0, MODE_ENFORCE, 0),                                // plain
        ]
    );
    // No network segment: nothing to reach around, nothing guarded.
    let files_only = ok("version: 1\nsegments: [{name: d, paths: [/d]}]\n").compile();
    assert_eq!(files_only.settings.guard_sockets, 0);
    assert_eq!(ok("version: 1\nmode: audit\n").compile().socket_grants, [grant(0, MODE_AUDIT, 0)]);
}

#[test]
fn a_grant_to_a_workload_denied_a_segment_is_warned_about() {
    let w = config(GRANTS).warnings;
    let lines: Vec<String> = w.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "p.yaml:19:14: allow[1].sockets: grants raw sockets to `netdiag`, which is denied segment store: \
             only the packet-level backstop judges what a raw socket sends them",
            "p.yaml:21:14: allow[2].sockets: grants packet sockets to `netdiag`, which is denied segment store: \
             a packet socket reaches them around every hook",
        ]
    );
    // trainer is allowed the only network segment: no warning for it.
    assert!(!lines.iter().any(|l| l.contains("`trainer`")), "{lines:?}");
}

#[test]
fn bad_grants_are_errors_with_positions() {
    let rule = |r: &str| format!("version: 1\nworkloads: [{{name: w, selector: {{cgroup: w}}}}]\nallow:\n  - {r}\n");
    assert_eq!(
        errs(&rule("{workload: w, sockets: [raw, icmp]}")),
        ["p.yaml:4:34: allow[0].sockets[1]: invalid value `icmp`; expected one of: raw, packet"]
    );
    assert_eq!(errs(&rule("{workload: w, sockets: []}")), ["p.yaml:4:28: allow[0].sockets: must not be empty"]);
    assert_eq!(
        errs(&rule("{workload: w, sockets: [raw, raw]}")),
        ["p.yaml:4:34: allow[0].sockets[1]: `raw` is listed twice"]
    );
    assert_eq!(
        errs(&rule("{workload: w, sockets: [raw], ports: [443]}")),
        ["p.yaml:4:42: allow[0].ports: `ports` applies to segments, and this rule names none (only `sockets`)"]
    );
    assert_eq!(
        errs(&rule("{workload: w}")),
        ["p.yaml:4:5: allow[0].segment: missing required key `segment` (or `segments`)"]
    );
}
