//! Every error kind, with exact position, field path and reason.
use warden_common::{MAX_SEGMENTS, MAX_WORKLOADS};

use super::errs;

#[test]
fn yaml_syntax_error_uses_the_parser_marker() {
    let text = "version: 1\nsegments:\n  - name: a\n  bad\n";
    assert_eq!(errs(text), ["p.yaml:5:1: document: YAML syntax error: simple key expect ':'"]);
}

#[test]
fn anchors_and_aliases_are_rejected() {
    let text = "version: 1\nsegments: &s []\nworkloads: *s\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:2:14: document: anchors and aliases are not supported",
            "p.yaml:3:12: document: anchors and aliases are not supported",
        ]
    );
}

#[test]
fn empty_or_non_mapping_documents() {
    let empty = "p.yaml:1:1: document: the policy is empty; it needs at least `version: 1`";
    assert_eq!(errs(""), [empty]);
    assert_eq!(errs("# nothing yet\n"), [empty]);
    assert_eq!(errs("~\n"), [empty]);
    assert_eq!(
        errs("- a\n- b\n"),
        ["p.yaml:1:1: document: the policy must be a mapping (`version: 1`, ...), found a list"]
    );
    assert_eq!(
        errs("just text\n"),
        ["p.yaml:1:1: document: the policy must be a mapping (`version: 1`, ...), found a string"]
    );
}

#[test]
fn unknown_keys_list_the_allowed_ones() {
    let text = "version: 1\nmod: audit\nsegments:\n  - name: s\n    network:\n      - cidr: 10.0.0.0/8\n        port: [1]\n    path: [/dev]\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:2:1: mod: unknown key `mod` (did you mean `mode`?); allowed keys: version, mode, defaultAction, agent, segments, workloads, allow",
            "p.yaml:7:9: segments[0].network[0].port: unknown key `port` (did you mean `ports`?); allowed keys: cidr, ports, protocol",
            "p.yaml:8:5: segments[0].path: unknown key `path` (did you mean `paths`?); allowed keys: name, description, mode, network, paths, devices",
        ]
    );
}

#[test]
fn duplicate_and_non_string_keys() {
    assert_eq!(
        errs("version: 1\nmode: audit\nmode: enforce\n"),
        ["p.yaml:3:1: mode: duplicate key (first given at line 2:1)"]
    );
    assert_eq!(errs("version: 1\n[a]: 1\n"), ["p.yaml:2:1: document: mapping keys must be strings"]);
}

#[test]
fn wrong_types() {
    let text =
        "version: \"1\"\nmode: 1\nsegments:\n  - name: 123\n    network: {cidr: 10.0.0.0/8}\nworkloads: {}\nallow: x\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:1:10: version: expected an integer, found a string",
            "p.yaml:2:7: mode: expected a string, found an integer (quote it to use it as a string)",
            "p.yaml:4:11: segments[0].name: expected a string, found an integer (quote it to use it as a string)",
            "p.yaml:5:14: segments[0].network: expected a list, found a mapping",
            "p.yaml:6:12: workloads: expected a list, found a mapping",
            "p.yaml:7:8: allow: expected a list, found a string",
        ]
    );
}

#[test]
fn missing_required_fields_point_at_the_parent_mapping() {
    let text = "mode: audit\nsegments:\n  - description: x\n  - name: s\n    network:\n      - ports: [1]\nworkloads:\n  - name: w\n  - name: v\n    selector: {}\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:1:1: version: missing required key `version`",
            "p.yaml:3:5: segments[0].name: missing required key `name`",
            "p.yaml:3:5: segments[0].network: missing required key `network` (or `paths`, or `devices`)",
            "p.yaml:6:9: segments[1].network[0].cidr: missing required key `cidr`",
            "p.yaml:8:5: workloads[0].selector: missing required key `selector`",
            "p.yaml:10:15: workloads[1].selector: an empty selector matches nothing; give one of: cgroup, namespace, podLabels, serviceAccount, container, image, slurm, unit",
        ]
    );
}

#[test]
fn bad_version() {
    assert_eq!(errs("version: 3\n"), ["p.yaml:1:10: version: unsupported version 3; this agent understands version 1"]);
}

#[test]
fn bad_and_duplicate_names() {
    let text = "version: 1\nsegments:\n  - name: Store\n    network: [{cidr: 10.0.0.0/8}]\n  - name: store\n    network: [{cidr: 10.1.0.0/16}]\n  - name: store\n    network: [{cidr: 10.2.0.0/16}]\nworkloads:\n  - {name: w, selector: {cgroup: a}}\n  - {name: w, selector: {cgroup: b}}\n  - {name: -x, selector: {cgroup: c}}\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:3:11: segments[0].name: invalid name `Store`: use 1-63 characters from a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit",
            "p.yaml:7:11: segments[2].name: duplicate segment name `store` (first defined at segments[1].name (line 5:11))",
            "p.yaml:11:12: workloads[1].name: duplicate workload name `w` (first defined at workloads[0].name (line 10:12))",
            "p.yaml:12:12: workloads[2].name: invalid name `-x`: use 1-63 characters from a-z, 0-9, `-`, `_`, `.`, starting with a letter or digit",
        ]
    );
}

#[test]
fn bad_cidrs_and_host_bits() {
    let text = "version: 1\nsegments:\n  - name: s\n    network:\n      - cidr: 10.20.1.0/16\n      - cidr: 10.0.0.0/33\n      - cidr: fd00::1/64\n      - cidr: 300.1.1.1\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:5:15: segments[0].network[0].cidr: host bits set in `10.20.1.0/16`; did you mean 10.20.0.0/16?",
            "p.yaml:6:15: segments[0].network[1].cidr: invalid CIDR `10.0.0.0/33`; expected e.g. 10.20.0.0/16 or fd00:20::/48",
            "p.yaml:7:15: segments[0].network[2].cidr: host bits set in `fd00::1/64`; did you mean fd00::/64?",
            "p.yaml:8:15: segments[0].network[3].cidr: invalid CIDR `300.1.1.1`; expected e.g. 10.20.0.0/16 or fd00:20::/48",
        ]
    );
}

#[test]
fn bad_ports_and_protocol() {
    let text = "version: 1\nsegments:\n  - name: s\n    network:\n      - cidr: 10.0.0.0/8\n        ports: [0, 70000, \"9100-9000\", abc, 443, 443, 1.5, [1]]\n        protocol: icmp\n      - cidr: 10.1.0.0/16\n        ports: []\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:6:17: segments[0].network[0].ports[0]: port 0 is out of range 1-65535",
            "p.yaml:6:20: segments[0].network[0].ports[1]: port 70000 is out of range 1-65535",
            "p.yaml:6:27: segments[0].network[0].ports[2]: port range 9100-9000 is reversed; write 9000-9100",
            "p.yaml:6:40: segments[0].network[0].ports[3]: expected a port (1-65535) or a range \"low-high\", found a string",
            "p.yaml:6:50: segments[0].network[0].ports[5]: port 443 is listed twice",
            "p.yaml:6:55: segments[0].network[0].ports[6]: expected a port (1-65535) or a range \"low-high\", found a number",
            "p.yaml:6:60: segments[0].network[0].ports[7]: expected a port (1-65535) or a range \"low-high\", found a list",
            "p.yaml:7:19: segments[0].network[0].protocol: invalid value `icmp`; expected one of: tcp, udp, any",
            "p.yaml:9:16: segments[0].network[1].ports: must not be empty",
        ]
    );
}

#[test]
fn bad_modes() {
    let text = "version: 1\nmode: block\ndefaultAction: drop\nsegments:\n  - name: s\n    mode: Audit\n    network: [{cidr: 10.0.0.0/8}]\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:2:7: mode: invalid value `block`; expected one of: enforce, audit",
            "p.yaml:3:16: defaultAction: invalid value `drop`; expected one of: allow, deny",
            "p.yaml:6:11: segments[0].mode: invalid value `Audit`; expected one of: enforce, audit",
        ]
    );
}

#[test]
fn agent_settings() {
    let text = "version: 1\nagent:\n  cgroupRoot: ../x\n  socket: run/w.sock\n  nodeName: \"\"\n  events:\n    jsonl: 5\n    logUnprotected: yes\n    extra: 1\n  ringBufferBytes: 100000\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:3:15: agent.cgroupRoot: must stay inside the cgroup2 mount (no `..`)",
            "p.yaml:4:11: agent.socket: `run/w.sock` must be an absolute path",
            "p.yaml:5:13: agent.nodeName: must be a non-empty string without NUL characters",
            "p.yaml:7:12: agent.events.jsonl: expected a string, found an integer (quote it to use it as a string)",
            "p.yaml:8:21: agent.events.logUnprotected: expected true or false, found a string",
            "p.yaml:9:5: agent.events.extra: unknown key `extra`; allowed keys: jsonl, rotate, logUnprotected, allowed, summaryIntervalMs, otlp",
            "p.yaml:10:20: agent.ringBufferBytes: 100000 must be a power of two between 65536 (64 KiB) and 1073741824 (1 GiB)",
        ]
    );
    assert_eq!(
        errs("version: 1\nagent: {ringBufferBytes: 2147483648}\n"),
        [
            "p.yaml:2:26: agent.ringBufferBytes: 2147483648 must be a power of two between 65536 (64 KiB) and 1073741824 (1 GiB)"
        ]
    );
}

#[test]
fn unknown_references_suggest_close_names() {
    let text = "version: 1\nsegments:\n  - name: object-store\n    network: [{cidr: 10.0.0.0/8}]\nworkloads:\n  - {name: trainer, selector: {cgroup: a}}\nallow:\n  - workload: trainr\n    segments: [object-stor, zzz]\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:8:15: allow[0].workload: unknown workload `trainr`; did you mean `trainer`?",
            "p.yaml:9:16: allow[0].segments[0]: unknown segment `object-stor`; did you mean `object-store`?",
            "p.yaml:9:29: allow[0].segments[1]: unknown segment `zzz`",
        ]
    );
}

#[test]
fn rule_needs_exactly_one_of_each_form() {
    let text = "version: 1\nallow:\n  - workload: a\n    workloads: [b]\n    segment: s\n    segments: [t]\n  - ports: [1]\n  - workloads: [a, a]\n    segments: []\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:4:16: allow[0].workloads: give either `workload` or `workloads`, not both",
            "p.yaml:6:15: allow[0].segments: give either `segment` or `segments`, not both",
            "p.yaml:7:5: allow[1].workload: missing required key `workload` (or `workloads`)",
            "p.yaml:7:5: allow[1].segment: missing required key `segment` (or `segments`)",
            "p.yaml:8:20: allow[2].workloads[1]: `a` is listed twice",
            "p.yaml:9:15: allow[2].segments: must not be empty",
        ]
    );
}

#[test]
fn empty_lists_where_not_allowed() {
    let text = "version: 1\nsegments:\n  - name: s\n    network: []\nworkloads:\n  - name: w\n    selector:\n      cgroup: []\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:4:14: segments[0].network: must not be empty",
            "p.yaml:8:15: workloads[0].selector.cgroup: must not be empty",
        ]
    );
}

#[test]
fn invalid_globs() {
    let text = "version: 1\nworkloads:\n  - name: w\n    selector:\n      cgroup: [\"a/[b\", ok/*, \"/x/{a\"]\n  - name: v\n    selector:\n      cgroup: 7\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:5:16: workloads[0].selector.cgroup[0]: invalid glob `a/[b`: unclosed character class; missing ']'",
            "p.yaml:5:30: workloads[0].selector.cgroup[2]: invalid glob `/x/{a`: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
            "p.yaml:8:15: workloads[1].selector.cgroup: expected a string, found an integer (quote it to use it as a string)",
        ]
    );
}

#[test]
fn segments_contradicting_on_the_same_prefix() {
    // b's 400-500 (any protocol) and its mapped-IPv6 entry overlap a's tcp 443; 80/udp does not.
    let text = "version: 1\nsegments:\n  - name: a\n    network:\n      - cidr: 10.0.0.0/16\n        ports: [443, 80]\n        protocol: tcp\n  - name: b\n    network:\n      - cidr: 10.0.0.0/16\n        ports: [\"400-500\"]\n      - cidr: 10.0.0.0/16\n        ports: [80]\n        protocol: udp\n      - cidr: \"::ffff:10.0.0.0/112\"\n        ports: [\"440-450\"]\n";
    let tail = "of segment `a` on the same ports and protocol; a destination can belong to only one segment";
    assert_eq!(
        errs(text),
        [
            format!(
                "p.yaml:10:15: segments[1].network[0].cidr: `10.0.0.0/16` of segment `b` overlaps segments[0].network[0].cidr (line 5:15) {tail}"
            ),
            format!(
                "p.yaml:15:15: segments[1].network[2].cidr: `10.0.0.0/16` of segment `b` overlaps segments[0].network[0].cidr (line 5:15) {tail}"
            ),
        ]
    );
}

#[test]
fn duplicate_entry_in_one_segment() {
    // Same ports in another order is a duplicate; a different protocol is not.
    let text = "version: 1\nsegments:\n  - name: a\n    network:\n      - cidr: 10.0.0.0/16\n        ports: [443, 80]\n      - cidr: 10.1.0.0/16\n      - cidr: 10.0.0.0/16\n        ports: [80, 443]\n      - cidr: 10.0.0.0/16\n        ports: [80, 443]\n        protocol: tcp\n";
    assert_eq!(
        errs(text),
        ["p.yaml:8:15: segments[0].network[2].cidr: `10.0.0.0/16` duplicates segments[0].network[0].cidr (line 5:15)"]
    );
}

#[test]
fn two_rules_for_one_pair() {
    let text = "version: 1\nsegments:\n  - name: s\n    network: [{cidr: 10.0.0.0/8, ports: [443, 22]}]\n  - name: t\n    network: [{cidr: 10.1.0.0/16}]\nworkloads:\n  - {name: a, selector: {cgroup: a}}\n  - {name: b, selector: {cgroup: b}}\nallow:\n  - workloads: [a, b]\n    segment: s\n    ports: [443]\n  - workload: b\n    segments: [t, s]\n  - workload: a\n    segment: s\n    ports: [22]\n";
    let tail = "is already covered by allow[0] (line 11:5); use one rule per pair and list all its ports there";
    assert_eq!(
        errs(text),
        [format!("p.yaml:14:5: allow[1]: `b` -> `s` {tail}"), format!("p.yaml:16:5: allow[2]: `a` -> `s` {tail}")]
    );
}

#[test]
fn rule_port_limit_and_narrowing_that_never_matches() {
    let text = "version: 1\nsegments:\n  - name: s\n    network: [{cidr: 10.0.0.0/8, ports: [443], protocol: tcp}]\nworkloads:\n  - {name: a, selector: {cgroup: a}}\n  - {name: b, selector: {cgroup: b}}\n  - {name: c, selector: {cgroup: c}}\n  - {name: d, selector: {cgroup: d}}\nallow:\n  - workload: a\n    segment: s\n    ports: [22, \"8000-9000\"]\n  - workload: b\n    segment: s\n    protocol: udp\n  - workload: c\n    segment: s\n    ports: [1, 2, 3, 4, 5]\n  - workload: d\n    segment: s\n    ports: [\"400-500\"]\n    protocol: any\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:13:12: allow[0].ports: this rule (any protocol, ports 22, 8000-9000) can never match segment `s`, which only covers: tcp, port 443",
            "p.yaml:16:15: allow[1].protocol: this rule (udp, all ports) can never match segment `s`, which only covers: tcp, port 443",
            "p.yaml:19:12: allow[2].ports: 5 port windows; a rule can have at most 4 (use ranges like \"8000-8100\")",
        ]
    );
}

#[test]
fn too_many_entries_for_a_prefix_after_inheritance() {
    let text = "version: 1\nsegments:\n  - name: a\n    network:\n      - cidr: 10.0.0.0/8\n        ports: [1, 2, 3, 4, 5]\n      - cidr: 10.1.0.0/16\n        ports: [6, 7, 8]\n  - name: b\n    network:\n      - cidr: 10.1.2.0/24\n        ports: [9]\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:11:15: segments[1].network[0].cidr: `10.1.2.0/24` needs 9 segment entries (its own port windows plus those of every covering prefix); at most 8 are supported"
        ]
    );
    // Exactly 8 is fine.
    super::ok(&text.replace("ports: [9]", "ports: [8]").replace("[6, 7, 8]", "[6, 7]"));
}

#[test]
fn too_many_workloads_and_segments() {
    let mut text = String::from("version: 1\nsegments:\n");
    for i in 0..=MAX_SEGMENTS {
        let (hi, lo) = (i / 256, i % 256);
        text += &format!("  - {{name: s{i}, network: [{{cidr: 10.{hi}.{lo}.0/24}}]}}\n");
    }
    text += "workloads:\n";
    for i in 0..=MAX_WORKLOADS {
        text += &format!("  - {{name: w{i}, selector: {{cgroup: w{i}}}}}\n");
    }
    let line = MAX_SEGMENTS as usize + 5; // 2 header lines, 4097 segments, `workloads:`
    assert_eq!(
        errs(&text),
        [
            "p.yaml:3:3: segments: 4097 entries; at most 4096 are supported".to_string(),
            format!("p.yaml:{line}:3: workloads: 4097 entries; at most 4096 are supported"),
        ]
    );
}

#[test]
fn all_errors_are_collected_in_file_order() {
    let text = "version: 2\nsegments:\n  - name: s\n    network: [{cidr: 10.0.0.1/8}]\nallow:\n  - workload: nobody\n    segment: s\nmode: x\n";
    let lines: Vec<String> = errs(text).iter().map(|e| e.split(": ").next().unwrap().to_string()).collect();
    assert_eq!(lines, ["p.yaml:1:10", "p.yaml:4:22", "p.yaml:6:15", "p.yaml:8:7"]);
    let e = super::super::load_str(text, "p.yaml").unwrap_err();
    assert_eq!(e.0[2].field, "allow[0].workload");
    assert_eq!((e.0[2].line, e.0[2].column), (6, 15));
    assert_eq!(e.to_string().lines().count(), 4);
}

#[test]
fn error_flood_is_capped() {
    let mut text = String::from("version: 1\nsegments:\n  - name: s\n    network:\n");
    for _ in 0..1005 {
        text += "      - cidr: bad\n";
    }
    let e = errs(&text);
    assert_eq!(e.len(), 1001);
    assert_eq!(
        e[999],
        "p.yaml:1004:15: segments[0].network[999].cidr: invalid CIDR `bad`; expected e.g. 10.20.0.0/16 or fd00:20::/48"
    );
    assert_eq!(e[1000], "p.yaml: document: 5 more errors not shown");
}

#[test]
fn events_and_metrics_errors_name_the_field() {
    let text = "version: 1\nagent:\n  events:\n    otlp:\n      endpoint: collector:4317\n      certFile: /c.pem\n      headers: {X-Bad: v}\n      concurrency: 0\n  metrics:\n    address: localhost\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:5:17: agent.events.otlp.endpoint: `collector:4317`: expected an http:// or https:// URL (e.g. http://127.0.0.1:4317)",
            "p.yaml:6:17: agent.events.otlp.certFile: TLS files need an https:// endpoint",
            "p.yaml:6:17: agent.events.otlp.certFile: certFile and keyFile go together (mutual TLS)",
            "p.yaml:7:17: agent.events.otlp.headers.X-Bad: header names are lower-case letters, digits, `-`, `_`, `.` (not grpc-*)",
            "p.yaml:8:20: agent.events.otlp.concurrency: 0 is out of range (1..=64)",
            "p.yaml:10:14: agent.metrics.address: `localhost`: expected IP:port (e.g. 127.0.0.1:9464) or off",
        ]
    );
}

#[test]
fn cgroup_globs_stay_below_the_root() {
    let text = "version: 1\nworkloads:\n  - name: a\n    selector: {cgroup: \"\"}\n  - name: b\n    selector:\n      cgroup: \"../../*\"\n  - name: c\n    selector:\n      cgroup: [\"/\", \"a/../../b\", \"x//y\", \"./x\", \"{..,x}/y\", \".[.]/z\", \"/training/*\", \".\"]\n";
    let root = "would select agent.cgroupRoot itself, and so every cgroup below it (write `**` if that is meant)";
    let up = "has a `..` component, which would reach outside agent.cgroupRoot; globs select cgroups below it";
    let inert = "has an empty or `.` component, which no cgroup path has";
    assert_eq!(
        errs(text),
        [
            format!("p.yaml:4:24: workloads[0].selector.cgroup: empty glob: it {root}"),
            format!("p.yaml:7:15: workloads[1].selector.cgroup: `../../*` {up}"),
            format!("p.yaml:10:16: workloads[2].selector.cgroup[0]: `/` {root}"),
            format!("p.yaml:10:21: workloads[2].selector.cgroup[1]: `a/../../b` {up}"),
            format!("p.yaml:10:34: workloads[2].selector.cgroup[2]: `x//y` {inert}; write `x/y`"),
            format!("p.yaml:10:42: workloads[2].selector.cgroup[3]: `./x` {inert}; write `x`"),
            format!("p.yaml:10:49: workloads[2].selector.cgroup[4]: `{{..,x}}/y` {up}"),
            format!("p.yaml:10:61: workloads[2].selector.cgroup[5]: `.[.]/z` {up}"),
            format!("p.yaml:10:86: workloads[2].selector.cgroup[7]: `.` {inert}"),
        ]
    );
    // A leading `/` is habit, not a path from the filesystem root.
    super::ok("version: 1\nworkloads: [{name: w, selector: {cgroup: [/training/*, \"jobs/**/\", \"a..b/*\"]}}]\n");
}

#[test]
fn long_values_are_echoed_cut_with_their_length() {
    let x = "x".repeat(100_000);
    let key = "k".repeat(200);
    let nines = "9".repeat(100_000);
    let text = format!(
        "version: 1\nmode: {x}\n{key}: 1\nsegments:\n  - name: s\n    network: [{{cidr: 10.0.0.0/8, ports: [{nines}]}}]\n"
    );
    let e = errs(&text);
    let (x60, k60, k120, n60) = ("x".repeat(60), "k".repeat(60), "k".repeat(120), "9".repeat(60));
    assert_eq!(
        e,
        [
            format!("p.yaml:2:7: mode: invalid value `{x60}…` (100000 chars); expected one of: enforce, audit"),
            format!(
                "p.yaml:3:1: {k120}… (200 chars): unknown key `{k60}…` (200 chars); allowed keys: version, mode, \
                 defaultAction, agent, segments, workloads, allow"
            ),
            format!("p.yaml:6:42: segments[0].network[0].ports[0]: port {n60}… (100000 chars) is out of range 1-65535"),
        ]
    );
    assert!(e.iter().all(|l| l.len() < 400), "{e:?}");
}

#[test]
fn control_characters_are_named_where_they_are() {
    // Raw in the file: the parser would take a NUL for the end of input
    // and silently drop the rest (here the segment's `network`).
    let raw = "version: 1\nsegments:\n  - name: ab\0c\n    network: [{cidr: 10.0.0.0/8}]\n# \0 \x1b\n";
    let tail = "a policy file is text, with no control characters but tab and line breaks";
    assert_eq!(
        errs(raw),
        [
            format!("p.yaml:3:13: file: contains a NUL byte; {tail}"),
            format!("p.yaml:5:3: file: contains a NUL byte; {tail}"),
            format!("p.yaml:5:5: file: contains control character U+001B; {tail}"),
        ]
    );
    // Escaped in a quoted string: the value itself carries it.
    let quoted = "version: 1\nsegments:\n  - name: \"ab\\0c\"\n    description: \"tab\\there\\nnext\"\n    network: [{cidr: 10.0.0.0/8}]\n  - name: \"x\\ey\"\n    paths: [\"/a\\0b\"]\n";
    assert_eq!(
        errs(quoted),
        [
            "p.yaml:3:11: segments[0].name: contains a NUL byte",
            "p.yaml:6:11: segments[1].name: contains control character U+001B",
            "p.yaml:7:13: segments[1].paths[0]: contains a NUL byte",
        ]
    );
}

#[test]
fn integers_too_long_for_64_bits_are_out_of_range() {
    let big = "99999999999999999999999";
    let text = format!(
        "version: {big}\nagent:\n  ringBufferBytes: {big}\n  devices: {{refreshMs: -{big}}}\n  \
         events: {{otlp: {{endpoint: \"http://c:4317\", batchSize: 0x1ffffffffffffffff}}}}\nsegments:\n  \
         - name: s\n    network: [{{cidr: 10.0.0.0/8, ports: [{big}, \"{big}-1\"]}}]\n  - name: g\n    \
         devices: {{gpus: [{big}]}}\nworkloads:\n  - name: w\n    selector: {{slurm: {{job: {big}}}}}\n"
    );
    assert_eq!(
        errs(&text),
        [
            format!("p.yaml:1:10: version: unsupported version {big}; this agent understands version 1"),
            format!(
                "p.yaml:3:20: agent.ringBufferBytes: {big} must be a power of two between 65536 (64 KiB) and 1073741824 (1 GiB)"
            ),
            format!("p.yaml:4:24: agent.devices.refreshMs: -{big} must be between 100 and 600000 (ms)"),
            "p.yaml:5:57: agent.events.otlp.batchSize: 0x1ffffffffffffffff is out of range (1..=10000)".to_string(),
            format!("p.yaml:8:42: segments[0].network[0].ports[0]: port {big} is out of range 1-65535"),
            format!("p.yaml:8:67: segments[0].network[0].ports[1]: port {big} is out of range 1-65535"),
            format!("p.yaml:10:22: segments[1].devices.gpus[0]: GPU index {big} is out of range 0-253"),
            format!("p.yaml:13:29: workloads[0].selector.slurm.job: {big} is not a Slurm job id (1..=4294967295)"),
        ]
    );
}
