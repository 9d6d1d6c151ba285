//! File segments: reading, every new error, compiled `FILE_ALLOW` entries and
//! the userspace verdict table.
use std::path::{Path, PathBuf};

use warden_common::{
    ACCESS_READ, ACCESS_WRITE, AllowKey, FileAllowValue, MODE_AUDIT, MODE_ENFORCE, PROTO_ANY, VERDICT_ALLOWED,
    VERDICT_AUDITED, VERDICT_DENIED,
};

use super::super::{Access, FileRoot};
use super::{FILES, NESTED, config, errs, names, ok};
use crate::settings::FileBackend;

const R: u8 = ACCESS_READ;
const RW: u8 = ACCESS_READ | ACCESS_WRITE;

fn file_entry(access: u8, deny_mode: u8, rule_id: u32) -> FileAllowValue {
    FileAllowValue { access, deny_mode, _pad: [0; 2], rule_id }
}

fn keys<V>(list: &[(AllowKey, V)]) -> Vec<(u32, u16)> {
    list.iter().map(|(k, _)| (k.workload_id, k.segment_id)).collect()
}

#[test]
fn segments_with_paths_read_as_written() {
    assert_eq!(config(FILES).agent.files.backend, FileBackend::Fanotify);
    let p = ok(FILES);
    let paths: Vec<Vec<&Path>> =
        p.segments.iter().map(|s| s.paths.iter().map(|e| e.path.as_path()).collect()).collect();
    assert_eq!(paths[0], Vec::<&Path>::new());
    assert_eq!(paths[1], [Path::new("/mnt/datasets"), Path::new("/data/imagenet")]);
    assert_eq!(paths[2], [Path::new("/models")]);
    assert!(p.segments[1].network.is_empty());
    assert_eq!(p.segments[2].network.len(), 1);
    let origin = &p.segments[1].paths[1].origin;
    assert_eq!((origin.field.as_str(), origin.loc.line, origin.loc.column), ("segments[1].paths[1]", 10, 28));
    let access: Vec<Option<Access>> = p.allow.iter().map(|r| r.access).collect();
    assert_eq!(access, [Some(Access::Read), Some(Access::ReadWrite), Some(Access::Read), Some(Access::Read)]);
    assert_eq!(Access::ReadWrite.to_string(), "read-write");
    assert_eq!(Access::ReadWrite.bits(), RW);
    assert_eq!(Access::Read.bits(), R);
    // Backend defaults to auto; Display is the YAML keyword.
    assert_eq!(config("version: 1\n").agent.files.backend, FileBackend::Auto);
    assert_eq!(config("version: 1\nagent: {files: {}}\n").agent.files.backend, FileBackend::Auto);
    assert_eq!(config("version: 1\nagent: {files: {backend: lsm}}\n").agent.files.backend, FileBackend::Lsm);
    let shown: Vec<String> = [FileBackend::Auto, FileBackend::Lsm, FileBackend::Fanotify].map(|b| b.to_string()).into();
    assert_eq!(shown, ["auto", "lsm", "fanotify"]);
}

#[test]
fn compiled_roots_ids_and_backend() {
    let c = ok(FILES).compile();
    let root = |segment_id: u16, path: &str| FileRoot { segment_id, path: PathBuf::from(path) };
    assert_eq!(
        c.files,
        [root(2, "/mnt/datasets"), root(2, "/data/imagenet"), root(3, "/models"), root(4, "/mnt/datasets/scratch")]
    );
    assert!(c.has_file_segments());
    assert!(!ok(NESTED).compile().has_file_segments());
    // One id per segment, shared by network and paths; path-only segments have infos too.
    assert_eq!(names(&c.segments), ["net", "datasets", "weights", "scratch"]);
    let infos: Vec<(u32, u8)> = c.segment_info.iter().map(|(id, i)| (*id, i.mode)).collect();
    assert_eq!(infos, [(1, MODE_ENFORCE), (2, MODE_ENFORCE), (3, MODE_ENFORCE), (4, MODE_AUDIT)]);
    // Only `weights` (3) has network entries besides `net` (1).
    assert_eq!(c.v4.iter().map(|(_, v)| v.entries[0].segment_id).collect::<Vec<_>>(), [1, 3]);
}

#[test]
fn file_allow_entries_and_mode_precedence() {
    let c = ok(FILES).compile();
    assert_eq!(
        c.file_allow.iter().map(|(k, v)| ((k.workload_id, k.segment_id), *v)).collect::<Vec<_>>(),
        [
            // trainer -> datasets: rule 1, no mode anywhere: the global enforce.
            ((1, 2), file_entry(R, MODE_ENFORCE, 1)),
            // trainer -> weights: the mixed rule 2 (ports for the network part).
            ((1, 3), file_entry(RW, MODE_ENFORCE, 2)),
            // inference has `mode: audit`: deny-only entries for path segments without a rule...
            ((2, 2), file_entry(0, MODE_AUDIT, 0)),
            // ...and its mode for the rule without one.
            ((2, 3), file_entry(R, MODE_AUDIT, 3)),
            ((2, 4), file_entry(0, MODE_AUDIT, 0)),
            // batch -> datasets: the rule's own audit.
            ((3, 2), file_entry(R, MODE_AUDIT, 4)),
        ]
    );
    // Network pairs only for segments with network entries: never 2 or 4.
    assert_eq!(keys(&c.allow), [(1, 1), (1, 3), (2, 1), (2, 3)]);
    let (_, v) = c.allow[1];
    assert_eq!((v.count, v.deny_rule_id, v.ports[0].port_lo, v.ports[0].port_hi), (1, 2, 443, 443));
    // A rule without `ports` on a mixed segment grants its network part whole.
    let (_, v) = c.allow[3];
    assert_eq!((v.count, v.deny_mode, v.ports[0].proto_mask, v.ports[0].port_hi), (1, MODE_AUDIT, PROTO_ANY, 65535));
}

#[test]
fn file_verdict_table() {
    let c = ok(FILES).compile();
    type Case = (Option<u32>, u16, u8, (u8, u32), &'static str);
    let cases: &[Case] = &[
        (None, 2, R, (VERDICT_DENIED, 0), "unidentified, enforce segment"),
        (None, 4, R, (VERDICT_AUDITED, 0), "unidentified, audit segment"),
        (Some(1), 2, R, (VERDICT_ALLOWED, 1), "read rule, read"),
        (Some(1), 2, RW, (VERDICT_DENIED, 1), "read rule, write"),
        (Some(1), 3, R, (VERDICT_ALLOWED, 2), "read-write rule, read"),
        (Some(1), 3, RW, (VERDICT_ALLOWED, 2), "read-write rule, write"),
        (Some(1), 4, R, (VERDICT_AUDITED, 0), "no rule, audit segment (nested in datasets)"),
        (Some(3), 3, R, (VERDICT_DENIED, 0), "no rule, enforce segment"),
        (Some(3), 2, R, (VERDICT_ALLOWED, 4), "audit rule, read"),
        (Some(3), 2, RW, (VERDICT_AUDITED, 4), "audit rule, write"),
        (Some(2), 2, R, (VERDICT_AUDITED, 0), "workload mode, no rule"),
        (Some(2), 3, RW, (VERDICT_AUDITED, 3), "workload mode over the read rule"),
        (Some(2), 3, R, (VERDICT_ALLOWED, 3), "workload mode, allowed read"),
        (Some(1), 1, R, (VERDICT_DENIED, 0), "network-only segment"),
        (Some(1), 99, R, (VERDICT_DENIED, 0), "unknown segment: global mode"),
        (Some(1), 0, R, (VERDICT_DENIED, 0), "segment 0: global mode"),
        (Some(42), 2, R, (VERDICT_DENIED, 0), "stale workload id"),
    ];
    for &(workload, segment, want, expected, what) in cases {
        assert_eq!(c.file_verdict(workload, segment, want), expected, "{what}");
    }
}

#[test]
fn file_verdict_falls_back_to_the_global_mode() {
    let text = "version: 1\nmode: audit\nsegments:\n  - name: d\n    paths: [/d]\n  - name: e\n    mode: enforce\n    paths: [/e]\nworkloads:\n  - {name: w, selector: {cgroup: w}}\nallow:\n  - {workload: w, segment: d, access: read}\n";
    let c = ok(text).compile();
    let entries: Vec<FileAllowValue> = c.file_allow.iter().map(|(_, v)| *v).collect();
    assert_eq!(entries, [file_entry(R, MODE_AUDIT, 1)]);
    assert_eq!(c.file_verdict(None, 1, R), (VERDICT_AUDITED, 0));
    assert_eq!(c.file_verdict(None, 2, R), (VERDICT_DENIED, 0));
    assert_eq!(c.file_verdict(Some(1), 1, RW), (VERDICT_AUDITED, 1));
    assert_eq!(c.file_verdict(Some(1), 2, R), (VERDICT_DENIED, 0));
    assert_eq!(c.file_verdict(Some(1), 3, R), (VERDICT_AUDITED, 0));
}

#[test]
fn nested_paths_are_accepted() {
    // Inside another segment's tree, and inside the same segment's own tree.
    let text = "version: 1\nsegments:\n  - name: a\n    paths: [/data, /data/own/sub]\n  - name: b\n    paths: [/data/own]\n  - name: c\n    paths: [/data/own/sub/deeper, /database]\n";
    let c = ok(text).compile();
    let roots: Vec<(u16, &Path)> = c.files.iter().map(|r| (r.segment_id, r.path.as_path())).collect();
    assert_eq!(
        roots,
        [
            (1, Path::new("/data")),
            (1, Path::new("/data/own/sub")),
            (2, Path::new("/data/own")),
            (3, Path::new("/data/own/sub/deeper")),
            (3, Path::new("/database")),
        ]
    );
}

#[test]
fn access_is_required_for_paths() {
    let text = "version: 1\nsegments:\n  - name: d\n    paths: [/data]\n  - name: n\n    network: [{cidr: 10.0.0.0/8}]\nworkloads:\n  - {name: w, selector: {cgroup: w}}\n  - {name: v, selector: {cgroup: v}}\nallow:\n  - workload: w\n    segment: d\n  - workload: v\n    segments: [n, d]\n    ports: [443]\n";
    let reason = "`access` is required for segments with paths: read | read-write";
    assert_eq!(
        errs(text),
        [format!("p.yaml:11:5: allow[0].access: {reason}"), format!("p.yaml:13:5: allow[1].access: {reason}")]
    );
}

#[test]
fn access_without_paths_and_narrowing_without_network() {
    let text = "version: 1\nsegments:\n  - name: d\n    paths: [/data]\n  - name: n\n    network: [{cidr: 10.0.0.0/8}]\nworkloads:\n  - {name: w, selector: {cgroup: w}}\nallow:\n  - workload: w\n    segment: n\n    access: read\n  - workload: w\n    segment: d\n    access: read\n    ports: [443]\n  - workload: v\n    segments: [d]\n    protocol: tcp\n    access: read-write\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:12:13: allow[0].access: `access` only applies to segments with `paths` or `devices`, and none of this rule's segments has any",
            "p.yaml:16:12: allow[1].ports: `ports` only applies to segments with `network` entries, and none of this rule's segments has any",
            "p.yaml:17:15: allow[2].workload: unknown workload `v`; did you mean `w`?",
            "p.yaml:19:15: allow[2].protocol: `protocol` only applies to segments with `network` entries, and none of this rule's segments has any",
        ]
    );
}

#[test]
fn bad_access_values_and_unknown_segments_do_not_cascade() {
    let text = "version: 1\nsegments:\n  - name: d\n    paths: [/data]\nworkloads:\n  - {name: w, selector: {cgroup: w}}\n  - {name: v, selector: {cgroup: v}}\nallow:\n  - workload: w\n    segment: d\n    access: write\n  - workload: w\n    segments: [nope]\n    access: read\n    ports: [22]\n  - workload: v\n    segment: d\n    access: [read]\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:11:13: allow[0].access: invalid value `write`; expected one of: read, read-write",
            "p.yaml:13:16: allow[1].segments[0]: unknown segment `nope`",
            "p.yaml:18:13: allow[2].access: expected a string, found a list",
        ]
    );
}

#[test]
fn segments_left_empty_by_errors_do_not_cascade() {
    let text = "version: 1\nsegments:\n  - name: d\n    paths: [/]\n  - name: n\n    network: [{cidr: bad}]\nworkloads:\n  - {name: w, selector: {cgroup: w}}\nallow:\n  - workload: w\n    segment: d\n    access: read\n  - workload: w\n    segment: n\n    ports: [443]\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:4:13: segments[0].paths[0]: protecting / would lock the node; list the directories to protect",
            "p.yaml:6:22: segments[1].network[0].cidr: invalid CIDR `bad`; expected e.g. 10.20.0.0/16 or fd00:20::/48",
        ]
    );
}

#[test]
fn bad_paths() {
    let text = "version: 1\nsegments:\n  - name: a\n    paths:\n      - data/x\n      - /\n      - /mnt/data/\n      - /mnt//data\n      - /mnt/../etc\n      - /mnt/./data\n      - 7\n      - \"\"\n  - name: b\n    paths: []\n  - name: c\n    paths: /mnt\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:5:9: segments[0].paths[0]: `data/x` must be an absolute path",
            "p.yaml:6:9: segments[0].paths[1]: protecting / would lock the node; list the directories to protect",
            "p.yaml:7:9: segments[0].paths[2]: `/mnt/data/` has an empty component or a trailing `/`; write `/mnt/data`",
            "p.yaml:8:9: segments[0].paths[3]: `/mnt//data` has an empty component or a trailing `/`; write `/mnt/data`",
            "p.yaml:9:9: segments[0].paths[4]: `/mnt/../etc` must not contain `.` or `..` components; write the path it means",
            "p.yaml:10:9: segments[0].paths[5]: `/mnt/./data` must not contain `.` or `..` components; write the path it means",
            "p.yaml:11:9: segments[0].paths[6]: expected a string, found an integer (quote it to use it as a string)",
            "p.yaml:12:9: segments[0].paths[7]: must be a non-empty string without NUL characters",
            "p.yaml:14:12: segments[1].paths: must not be empty",
            "p.yaml:16:12: segments[2].paths: expected a list, found a string",
        ]
    );
}

#[test]
fn the_same_path_twice() {
    let text = "version: 1\nsegments:\n  - name: a\n    paths: [/data, /models, /data]\n  - name: b\n    network: [{cidr: 10.0.0.0/8}]\n    paths:\n      - /models\n      - /models/b\n";
    let tail = "a directory can belong to only one segment";
    assert_eq!(
        errs(text),
        [
            format!(
                "p.yaml:4:29: segments[0].paths[2]: `/data` is already listed at segments[0].paths[0] (line 4:13) (segment `a`); {tail}"
            ),
            format!(
                "p.yaml:8:9: segments[1].paths[0]: `/models` is already listed at segments[0].paths[1] (line 4:20) (segment `a`); {tail}"
            ),
        ]
    );
}

#[test]
fn path_root_limit() {
    let mut text = String::from("version: 1\nsegments:\n  - name: a\n    paths:\n");
    for i in 0..4096 {
        text += &format!("      - /d/{i}\n");
    }
    ok(&text); // exactly 4096 is fine
    text += "  - name: b\n    paths: [/e, /f]\n";
    assert_eq!(errs(&text), ["p.yaml:4102:13: segments[1].paths[0]: more than 4096 paths in all segments together"]);
}

#[test]
fn file_backend_setting() {
    let text = "version: 1\nagent:\n  files:\n    backend: ebpf\n    mode: x\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:4:14: agent.files.backend: invalid value `ebpf`; expected one of: auto, lsm, fanotify",
            "p.yaml:5:5: agent.files.mode: unknown key `mode`; allowed keys: backend",
        ]
    );
    assert_eq!(
        errs("version: 1\nagent: {files: lsm}\n"),
        ["p.yaml:2:16: agent.files: expected a mapping, found a string"]
    );
}
