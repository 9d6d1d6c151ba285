//! Device segments and GPU rules: reading, `agent.devices`, every new error,
//! and the compiled `DEVICE_ALLOW` entries.
use std::path::{Path, PathBuf};

use warden_common::{
    AllowKey, DEV_ACC_MKNOD, DEV_ACC_READ, DEV_ACC_WRITE, DeviceAllowValue, GPUS_ASSIGNED, GPUS_LISTED, GpuSet,
    MODE_AUDIT, MODE_ENFORCE,
};

use super::super::{Access, GpuSelection, RuleGpus, device_access};
use super::{DEVICES, FILES, config, errs, names, ok};
use crate::settings::{DEFAULT_CRI_SOCKETS, DevicesConfig};

const R: u8 = DEV_ACC_READ;
const RWM: u8 = DEV_ACC_READ | DEV_ACC_WRITE | DEV_ACC_MKNOD;

fn gpus(list: &[u16]) -> GpuSet {
    let mut set = GpuSet::default();
    for g in list {
        set.insert(*g);
    }
    set
}

fn grant(access: u8, deny_mode: u8, gpus_from: u8, rule_id: u32, listed: &[u16]) -> DeviceAllowValue {
    DeviceAllowValue { access, deny_mode, gpus_from, _pad: 0, rule_id, gpus: gpus(listed) }
}

/// A pair without a rule that only carries the workload's mode.
fn deny_only(deny_mode: u8) -> DeviceAllowValue {
    DeviceAllowValue { deny_mode, ..Default::default() }
}

fn device_allow(text: &str) -> Vec<((u32, u16), DeviceAllowValue)> {
    ok(text).compile().device_allow.iter().map(|(k, v)| ((k.workload_id, k.segment_id), *v)).collect()
}

/// One device segment `g` with GPUs 0-3 and one workload `w`; `rule` is
/// appended under `allow:` (and may set modes via `extra` top-level lines).
fn gpu_policy(extra: &str, rule: &str) -> String {
    format!(
        "version: 1\n{extra}segments:\n  - name: g\n    devices: {{gpus: [0, 1, 2, 3]}}\nworkloads:\n  - {{name: w, selector: {{cgroup: w}}}}\nallow:\n  - workload: w\n    segment: g\n{rule}"
    )
}

#[test]
fn device_segments_read_as_written() {
    let d = &config(DEVICES).agent.devices;
    let p = ok(DEVICES);
    assert_eq!(d.proc_root, Path::new("/host/proc"));
    assert_eq!(d.kubelet_socket, Path::new("/run/kubelet/pod-resources.sock"));
    assert_eq!(d.cri_socket.as_deref(), Some(Path::new("/run/containerd/containerd.sock")));
    assert_eq!(d.gpu_resources, ["example.com/gpu"]);
    assert_eq!(d.refresh_ms, 2000);

    assert!(p.segments[0].devices.is_none());
    let a = p.segments[1].devices.as_ref().unwrap();
    assert_eq!(a.gpus, Some(GpuSelection::Indices(vec![0, 1, 2, 3])));
    assert!(a.nvidia_control, "nvidiaControl defaults to true when gpus are given");
    assert!(a.paths.is_empty());
    // The origin is the `devices` mapping, i.e. its first key.
    assert_eq!((a.origin.field.as_str(), a.origin.loc.line, a.origin.loc.column), ("segments[1].devices", 15, 7));
    let b = p.segments[2].devices.as_ref().unwrap();
    assert_eq!(b.gpus, Some(GpuSelection::Indices(vec![4, 5])));
    assert!(!b.nvidia_control);
    let rdma = p.segments[3].devices.as_ref().unwrap();
    assert_eq!(rdma.gpus, None);
    assert!(!rdma.nvidia_control, "nvidiaControl defaults to false without gpus");
    let patterns: Vec<&Path> = rdma.paths.iter().map(|e| e.pattern.as_path()).collect();
    assert_eq!(patterns, [Path::new("/dev/infiniband/uverbs*"), Path::new("/dev/infiniband/rdma_cm")]);
    let origin = &rdma.paths[1].origin;
    assert_eq!((origin.field.as_str(), origin.loc.line, origin.loc.column), ("segments[3].devices.paths[1]", 23, 42));
    // Paths and devices in one segment.
    let weights = &p.segments[4];
    assert_eq!(weights.paths[0].path, Path::new("/models"));
    assert_eq!(weights.devices.as_ref().unwrap().paths[0].pattern, Path::new("/dev/nvme1n1"));

    let rule_gpus: Vec<Option<RuleGpus>> = p.allow.iter().map(|r| r.gpus.clone()).collect();
    assert_eq!(rule_gpus, [Some(RuleGpus::Listed(vec![1, 3, 5])), None, Some(RuleGpus::Assigned), None, None]);
    let origin = &p.allow[0].gpus_origin;
    assert_eq!((origin.field.as_str(), origin.loc.line, origin.loc.column), ("allow[0].gpus", 39, 11));
    // Without `gpus`, its origin is the rule's.
    assert_eq!(p.allow[1].gpus_origin, p.allow[1].origin);
    let access: Vec<Option<Access>> = p.allow.iter().map(|r| r.access).collect();
    assert_eq!(access, [None, Some(Access::Read), Some(Access::ReadWrite), None, Some(Access::Read)]);

    // `all`, quoted keywords and explicit nvidiaControl.
    let text = "version: 1\nsegments:\n  - name: g\n    devices: {gpus: \"all\", nvidiaControl: false}\n  - name: c\n    devices: {nvidiaControl: true}\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow:\n  - {workload: w, segment: g, gpus: \"assigned\"}\n";
    let p = ok(text);
    let g = p.segments[0].devices.as_ref().unwrap();
    assert_eq!(g.gpus, Some(GpuSelection::All));
    assert_eq!(GpuSelection::All.indices(), (0..254).collect::<Vec<u16>>());
    assert!(!g.nvidia_control);
    let c = p.segments[1].devices.as_ref().unwrap();
    assert_eq!((c.gpus.as_ref(), c.nvidia_control), (None, true));
    assert_eq!(p.allow[0].gpus, Some(RuleGpus::Assigned));
}

#[test]
fn agent_devices_defaults() {
    let defaults = DevicesConfig {
        proc_root: PathBuf::from("/proc"),
        kubelet_socket: PathBuf::from("/var/lib/kubelet/pod-resources/kubelet.sock"),
        cri_socket: None,
        gpu_resources: vec!["nvidia.com/gpu".into(), "nvidia.com/gpu.shared".into(), "nvidia.com/mig-*".into()],
        cdi_spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
        refresh_ms: 5000,
    };
    assert_eq!(DevicesConfig::default(), defaults);
    assert_eq!(config("version: 1\n").agent.devices, defaults);
    assert_eq!(config("version: 1\nagent: {devices: {}}\n").agent.devices, defaults);
    assert_eq!(config("version: 1\nagent: {devices: {refreshMs: 100}}\n").agent.devices.refresh_ms, 100);
    assert_eq!(config("version: 1\nagent: {devices: {refreshMs: 600000}}\n").agent.devices.refresh_ms, 600000);
    let only_cri = config("version: 1\nagent: {devices: {criSocket: /run/crio/crio.sock}}\n").agent.devices;
    assert_eq!(only_cri, DevicesConfig { cri_socket: Some(PathBuf::from(DEFAULT_CRI_SOCKETS[1])), ..defaults.clone() });
    assert_eq!(
        DEFAULT_CRI_SOCKETS,
        ["/run/containerd/containerd.sock", "/run/crio/crio.sock", "/run/k3s/containerd/containerd.sock"]
    );
    let c = ok(FILES).compile();
    assert!(!c.has_device_segments());
    assert!(c.devices.is_empty() && c.device_allow.is_empty());
}

#[test]
fn compiled_device_segments() {
    let p = ok(DEVICES);
    let c = p.compile();
    assert!(c.has_device_segments());
    assert!(c.uses_assigned_gpus());
    let ids: Vec<u16> = c.devices.iter().map(|d| d.segment_id).collect();
    assert_eq!(ids, [2, 3, 4, 5]);
    for d in &c.devices {
        assert_eq!(Some(&d.spec), p.segments[d.segment_id as usize - 1].devices.as_ref());
    }
    assert_eq!(names(&c.segments), ["net", "gpus-a", "gpus-b", "rdma", "weights"]);
    // Device-only segments have infos (for unidentified processes) like any other.
    let infos: Vec<(u32, u8)> = c.segment_info.iter().map(|(id, i)| (*id, i.mode)).collect();
    assert_eq!(infos, [(1, MODE_ENFORCE), (2, MODE_ENFORCE), (3, MODE_AUDIT), (4, MODE_ENFORCE), (5, MODE_ENFORCE)]);
    let labels: Vec<&str> = (1..=5).map(|id| c.rule_label(id).unwrap()).collect();
    assert_eq!(
        labels,
        [
            "allow[0] trainer->gpus-a,rdma",
            "allow[1] trainer->gpus-b",
            "allow[2] inference->gpus-a",
            "allow[3] batch->gpus-b,net",
            "allow[4] batch->weights",
        ]
    );
    // Network pairs only for `net`; file pairs only for `weights`.
    let keys = |list: &[(AllowKey, _)]| list.iter().map(|(k, _)| (k.workload_id, k.segment_id)).collect::<Vec<_>>();
    assert_eq!(keys(&c.allow), [(2, 1), (3, 1)]);
    let file_keys: Vec<(u32, u16)> = c.file_allow.iter().map(|(k, _)| (k.workload_id, k.segment_id)).collect();
    assert_eq!(file_keys, [(2, 5), (3, 5)]);
}

#[test]
fn device_allow_entries() {
    assert_eq!(
        device_allow(DEVICES),
        [
            // trainer -> gpus-a: listed GPUs 1 and 3; 5 is not in the segment. No access: read-write-mknod.
            ((1, 2), grant(RWM, MODE_ENFORCE, GPUS_LISTED, 1, &[1, 3])),
            // trainer -> gpus-b: read; the segment's audit mode.
            ((1, 3), grant(R, MODE_AUDIT, GPUS_LISTED, 2, &[4, 5])),
            // trainer -> rdma (same rule): no GPUs there, so none listed.
            ((1, 4), grant(RWM, MODE_ENFORCE, GPUS_LISTED, 1, &[])),
            // inference -> gpus-a: kubelet's assignment; the workload's audit.
            ((2, 2), grant(RWM, MODE_AUDIT, GPUS_ASSIGNED, 3, &[])),
            // inference has `mode: audit`: deny-only entries for the other device segments.
            ((2, 3), deny_only(MODE_AUDIT)),
            ((2, 4), deny_only(MODE_AUDIT)),
            ((2, 5), deny_only(MODE_AUDIT)),
            // batch -> gpus-b: no `gpus` = every GPU of the segment; the rule's enforce beats the segment's audit.
            ((3, 3), grant(RWM, MODE_ENFORCE, GPUS_LISTED, 4, &[4, 5])),
            // batch -> weights: `access: read` covers its device nodes too.
            ((3, 5), grant(R, MODE_ENFORCE, GPUS_LISTED, 5, &[])),
        ]
    );
}

#[test]
fn access_bits_read_read_write_and_omitted() {
    assert_eq!(device_access(Some(Access::Read)), DEV_ACC_READ);
    assert_eq!(device_access(Some(Access::ReadWrite)), RWM);
    assert_eq!(device_access(None), RWM);
    assert_eq!(RWM, 7);
    for (rule, access) in [("", RWM), ("    access: read\n", R), ("    access: read-write\n", RWM)] {
        let list = device_allow(&gpu_policy("", rule));
        assert_eq!(list, [((1, 1), grant(access, MODE_ENFORCE, GPUS_LISTED, 1, &[0, 1, 2, 3]))], "{rule}");
    }
}

#[test]
fn gpu_sets_all_listed_assigned_and_dropped() {
    // `gpus: all` without `gpus` on the rule: all 256 bits (the 254 GPUs,
    // and the bits MIG capabilities borrow).
    let text = "version: 1\nsegments:\n  - name: g\n    devices: {gpus: all}\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow: [{workload: w, segment: g}]\n";
    let (_, v) = device_allow(text)[0];
    assert_eq!(v.gpus.bits, [u64::MAX; 4]);
    assert!(v.gpus.contains(253) && v.gpus.contains(254) && v.gpus.contains(255));
    // High indices land in the right words.
    let text = text.replace("gpus: all", "gpus: [0, 63, 64, 130, 253]");
    let (_, v) = device_allow(&text)[0];
    assert_eq!(v.gpus, gpus(&[0, 63, 64, 130, 253]));
    assert_eq!(v.gpus.bits, [1 | 1 << 63, 1, 1 << 2, 1 << 61]);
    // Listed: only those of the segment remain; none left grants no GPU (but keeps the entry).
    let (_, v) = device_allow(&gpu_policy("", "    gpus: [3, 9, 1]\n"))[0];
    assert_eq!((v.gpus, v.gpus_from, v.access), (gpus(&[1, 3]), GPUS_LISTED, RWM));
    let (_, v) = device_allow(&gpu_policy("", "    gpus: [9, 200]\n"))[0];
    assert_eq!((v.gpus, v.gpus_from, v.rule_id), (GpuSet::default(), GPUS_LISTED, 1));
    // Assigned: the set stays empty, the kernel reads the container's assignment.
    let c = ok(&gpu_policy("", "    gpus: assigned\n    access: read\n")).compile();
    assert_eq!(c.device_allow[0].1, grant(R, MODE_ENFORCE, GPUS_ASSIGNED, 1, &[]));
    assert!(c.uses_assigned_gpus());
    assert!(!ok(&gpu_policy("", "    gpus: [0]\n")).compile().uses_assigned_gpus());
    // One rule, two GPU segments: each keeps its own share of the list.
    let text = "version: 1\nsegments:\n  - name: a\n    devices: {gpus: [0, 1]}\n  - name: b\n    devices: {gpus: [2, 3], nvidiaControl: false}\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow:\n  - workload: w\n    segments: [a, b]\n    gpus: [1, 2]\n";
    assert_eq!(
        device_allow(text),
        [
            ((1, 1), grant(RWM, MODE_ENFORCE, GPUS_LISTED, 1, &[1])),
            ((1, 2), grant(RWM, MODE_ENFORCE, GPUS_LISTED, 1, &[2])),
        ]
    );
}

#[test]
fn device_deny_mode_precedence() {
    // Global audit when nothing else says.
    let (_, v) = device_allow(&gpu_policy("mode: audit\n", ""))[0];
    assert_eq!(v.deny_mode, MODE_AUDIT);
    // Segment audit over the global enforce; segment enforce over the global audit.
    let seg = |global: &str, seg_mode: &str| {
        let text = gpu_policy(global, "").replace("  - name: g\n", &format!("  - name: g\n    mode: {seg_mode}\n"));
        device_allow(&text)[0].1.deny_mode
    };
    assert_eq!(seg("", "audit"), MODE_AUDIT);
    assert_eq!(seg("mode: audit\n", "enforce"), MODE_ENFORCE);
    // Workload mode over the segment's; rule mode over the workload's.
    let text = "version: 1\nsegments:\n  - name: a\n    mode: enforce\n    devices: {gpus: [0]}\n  - name: b\n    mode: audit\n    devices: {paths: [/dev/fuse]}\n  - name: c\n    devices: {paths: [/dev/kvm]}\nworkloads:\n  - {name: w, mode: audit, selector: {cgroup: w}}\n  - {name: x, mode: enforce, selector: {cgroup: x}}\n  - {name: y, selector: {cgroup: y}}\nallow:\n  - {workload: w, segment: a}\n  - {workload: x, segment: b}\n  - {workload: w, segment: b, mode: enforce}\n  - {workload: y, segments: [a, b]}\n";
    assert_eq!(
        device_allow(text),
        [
            ((1, 1), grant(RWM, MODE_AUDIT, GPUS_LISTED, 1, &[0])),
            ((1, 2), grant(RWM, MODE_ENFORCE, GPUS_LISTED, 3, &[])),
            ((1, 3), deny_only(MODE_AUDIT)),
            ((2, 1), deny_only(MODE_ENFORCE)),
            ((2, 2), grant(RWM, MODE_ENFORCE, GPUS_LISTED, 2, &[])),
            ((2, 3), deny_only(MODE_ENFORCE)),
            // y has no mode: the segments' own, and no entries for segments without a rule.
            ((3, 1), grant(RWM, MODE_ENFORCE, GPUS_LISTED, 4, &[0])),
            ((3, 2), grant(RWM, MODE_AUDIT, GPUS_LISTED, 4, &[])),
        ]
    );
}

#[test]
fn a_gpu_in_two_segments() {
    let text = "version: 1\nsegments:\n  - name: a\n    devices:\n      gpus: [0, 1]\n  - name: b\n    devices:\n      nvidiaControl: false\n      gpus: [2, 1]\n  - name: c\n    devices: {gpus: all, nvidiaControl: false}\n";
    let tail = "a GPU belongs to one segment";
    assert_eq!(
        errs(text),
        [
            // Reported at the `devices` mapping (its first key), once per clashing pair of segments.
            format!("p.yaml:8:7: segments[1].devices: GPU 1 is already in segment `a`; {tail}"),
            format!("p.yaml:11:14: segments[2].devices: GPUs 0, 1 are already in segment `a`; {tail}"),
            format!("p.yaml:11:14: segments[2].devices: GPU 2 is already in segment `b`; {tail}"),
        ]
    );
    // Disjoint sets are fine; `all` in one segment leaves room for none elsewhere.
    ok(
        "version: 1\nsegments:\n  - {name: a, devices: {gpus: [0, 1]}}\n  - {name: b, devices: {gpus: [2], nvidiaControl: false}}\n",
    );
    assert_eq!(
        errs(
            "version: 1\nsegments:\n  - {name: a, devices: {gpus: [253]}}\n  - {name: b, devices: {gpus: all, nvidiaControl: false}}\n"
        ),
        [format!("p.yaml:4:24: segments[1].devices: GPU 253 is already in segment `a`; {tail}")]
    );
}

#[test]
fn nvidia_control_nodes_in_two_segments() {
    // Implied by `gpus` (b) or explicit (c); `nvidiaControl: false` (d) opts out.
    let text = "version: 1\nsegments:\n  - name: a\n    devices: {nvidiaControl: true}\n  - name: b\n    devices:\n      gpus: [1]\n  - name: c\n    devices: {paths: [/dev/fuse], nvidiaControl: true}\n  - name: d\n    devices: {gpus: [2], nvidiaControl: false}\n";
    let tail = "set `nvidiaControl: false` here";
    assert_eq!(
        errs(text),
        [
            format!("p.yaml:7:7: segments[1].devices: the NVIDIA control nodes are already in segment `a`; {tail}"),
            format!("p.yaml:9:14: segments[2].devices: the NVIDIA control nodes are already in segment `a`; {tail}"),
        ]
    );
}

#[test]
fn gpus_on_a_rule_whose_segments_have_no_gpus() {
    let text = "version: 1\nsegments:\n  - name: n\n    network: [{cidr: 10.0.0.0/8}]\n  - name: d\n    paths: [/data]\n  - name: r\n    devices: {paths: [/dev/infiniband/uverbs0], nvidiaControl: true}\n  - name: g\n    devices: {gpus: [0], nvidiaControl: false}\nworkloads:\n  - {name: w, selector: {cgroup: w}}\n  - {name: v, selector: {cgroup: v}}\nallow:\n  - workload: w\n    segment: n\n    gpus: [0]\n  - workload: w\n    segments: [d, r]\n    access: read\n    gpus: assigned\n  - workload: v\n    segments: [r, g]\n    gpus: [0]\n  - workload: v\n    segments: [n, nope]\n    gpus: [0]\n";
    let reason = "`gpus` only applies to segments with `devices.gpus`, and none of this rule's segments has any";
    assert_eq!(
        errs(text),
        [
            format!("p.yaml:17:11: allow[0].gpus: {reason}"),
            format!("p.yaml:21:11: allow[1].gpus: {reason}"),
            // allow[2]: one segment with GPUs is enough. allow[3]: no cascade from the unknown segment.
            "p.yaml:26:19: allow[3].segments[1]: unknown segment `nope`".to_string(),
        ]
    );
}

#[test]
fn access_needs_paths_or_devices() {
    let text = "version: 1\nsegments:\n  - name: n\n    network: [{cidr: 10.0.0.0/8}]\n  - name: g\n    devices: {gpus: [0]}\n  - name: both\n    paths: [/models]\n    devices: {paths: [/dev/nvme1n1]}\nworkloads:\n  - {name: w, selector: {cgroup: w}}\n  - {name: v, selector: {cgroup: v}}\n  - {name: x, selector: {cgroup: x}}\nallow:\n  - workload: w\n    segment: n\n    access: read\n  - workload: v\n    segments: [n, g]\n    access: read\n  - workload: w\n    segment: both\n  - workload: x\n    segment: g\n    ports: [443]\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:17:13: allow[0].access: `access` only applies to segments with `paths` or `devices`, and none of this rule's segments has any",
            // allow[1]: a device segment makes `access` fine. allow[2]: paths still require it.
            "p.yaml:21:5: allow[2].access: `access` is required for segments with paths: read | read-write",
            "p.yaml:25:12: allow[3].ports: `ports` only applies to segments with `network` entries, and none of this rule's segments has any",
        ]
    );
}

#[test]
fn a_segment_needs_network_paths_or_devices() {
    let text = "version: 1\nsegments:\n  - name: a\n    mode: audit\n  - name: b\n    devices: {nvidiaControl: true}\n";
    assert_eq!(
        errs(text),
        ["p.yaml:3:5: segments[0].network: missing required key `network` (or `paths`, or `devices`)"]
    );
    // A `devices` that is not a mapping is reported once, and rules on it don't cascade.
    let text = "version: 1\nsegments:\n  - name: g\n    devices: [gpus]\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow:\n  - {workload: w, segment: g, gpus: [0], access: read}\n";
    assert_eq!(errs(text), ["p.yaml:4:14: segments[0].devices: expected a mapping, found a list"]);
}

#[test]
fn devices_listing_nothing() {
    let reason = "lists no devices: give `gpus`, `nvidiaControl: true` or `paths`";
    let text = "version: 1\nsegments:\n  - name: a\n    devices: {}\n  - name: b\n    devices:\n      nvidiaControl: false\n  - name: c\n    devices: {paths: []}\n";
    assert_eq!(
        errs(text),
        [
            format!("p.yaml:4:14: segments[0].devices: {reason}"),
            format!("p.yaml:7:7: segments[1].devices: {reason}"),
            // An empty `paths` is reported as such, not twice.
            "p.yaml:9:22: segments[2].devices.paths: must not be empty".to_string(),
        ]
    );
}

#[test]
fn bad_gpu_values() {
    // Each segment keeps another device so only the bad value is reported (see the ignored test below).
    let text = "version: 1\nsegments:\n  - name: a\n    devices:\n      nvidiaControl: true\n      gpus: some\n  - name: b\n    devices:\n      nvidiaControl: false\n      paths: [/dev/fuse]\n      gpus: []\n  - name: c\n    devices:\n      nvidiaControl: false\n      gpus: [0, 254, -1, 0, \"2\", 1.5, 3]\n  - name: d\n    devices:\n      nvidiaControl: false\n      paths: [/dev/kvm]\n      gpus: 4\n  - name: e\n    devices:\n      nvidiaControl: false\n      paths: [/dev/vfio/vfio]\n      gpus: {all: true}\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:6:13: segments[0].devices.gpus: expected `all` or a list of GPU indices, found `some`",
            "p.yaml:11:13: segments[1].devices.gpus: must not be empty",
            "p.yaml:15:17: segments[2].devices.gpus[1]: GPU index 254 is out of range 0-253",
            "p.yaml:15:22: segments[2].devices.gpus[2]: GPU index -1 is out of range 0-253",
            "p.yaml:15:26: segments[2].devices.gpus[3]: GPU 0 is listed twice",
            "p.yaml:15:29: segments[2].devices.gpus[4]: expected an integer, found a string",
            "p.yaml:15:34: segments[2].devices.gpus[5]: expected an integer, found a number",
            "p.yaml:20:13: segments[3].devices.gpus: expected `all` or a list of GPU indices, found `4`",
            "p.yaml:25:13: segments[4].devices.gpus: expected a list, found a mapping",
        ]
    );
    assert_eq!(
        errs("version: 1\nsegments:\n  - name: g\n    devices: {gpus: [4], nvidiaControl: \"false\"}\n"),
        ["p.yaml:4:41: segments[0].devices.nvidiaControl: expected true or false, found a string"]
    );
    // The same values on a rule; `all` is a segment keyword, rules say `assigned`.
    let rules = "version: 1\nsegments:\n  - name: g\n    devices: {gpus: all}\nworkloads:\n  - {name: w, selector: {cgroup: w}}\n  - {name: v, selector: {cgroup: v}}\n  - {name: x, selector: {cgroup: x}}\nallow:\n  - workload: w\n    segment: g\n    gpus: all\n  - workload: v\n    segment: g\n    gpus: [253, 254, 253]\n  - workload: x\n    segment: g\n    gpus: []\n";
    assert_eq!(
        errs(rules),
        [
            "p.yaml:12:11: allow[0].gpus: expected `assigned` or a list of GPU indices, found `all`",
            "p.yaml:15:17: allow[1].gpus[1]: GPU index 254 is out of range 0-253",
            "p.yaml:15:22: allow[1].gpus[2]: GPU 253 is listed twice",
            "p.yaml:18:11: allow[2].gpus: must not be empty",
        ]
    );
}

/// An invalid `gpus` value (or `nvidiaControl`) is reported once, with no
/// follow-on errors that only restate it.
#[test]
fn invalid_gpu_values_do_not_cascade() {
    let seg = |devices: &str| format!("version: 1\nsegments:\n  - name: g\n    devices:\n{devices}");
    // parse.rs `devices()`: "lists no devices" is decided on the parsed `gpus`, not on the key.
    assert_eq!(
        errs(&seg("      gpus: some\n")),
        ["p.yaml:5:13: segments[0].devices.gpus: expected `all` or a list of GPU indices, found `some`"]
    );
    assert_eq!(errs(&seg("      gpus: []\n")), ["p.yaml:5:13: segments[0].devices.gpus: must not be empty"]);
    // parse.rs `gpu_indices()`: "lists no GPU" after every index was already reported.
    assert_eq!(
        errs(&seg("      gpus: [254]\n")),
        ["p.yaml:5:14: segments[0].devices.gpus[0]: GPU index 254 is out of range 0-253"]
    );
    // parse.rs `devices()`: an invalid `nvidiaControl` counts as `true`.
    let text = "version: 1\nsegments:\n  - name: a\n    devices: {paths: [/dev/fuse], nvidiaControl: maybe}\n  - name: b\n    devices: {gpus: [0]}\n";
    assert_eq!(errs(text), ["p.yaml:4:50: segments[0].devices.nvidiaControl: expected true or false, found a string"]);
    // validate.rs `rule_fits_segments()`: a segment whose `gpus` did not parse still counts as known.
    let text = "version: 1\nsegments:\n  - name: g\n    devices: {gpus: some, nvidiaControl: true}\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow:\n  - {workload: w, segment: g, gpus: [0]}\n";
    assert_eq!(
        errs(text),
        ["p.yaml:4:21: segments[0].devices.gpus: expected `all` or a list of GPU indices, found `some`"]
    );
}

/// Every GPU clash is reported, each against the segment that listed the GPU first.
#[test]
fn every_gpu_clash_names_the_first_segment() {
    let text = "version: 1\nsegments:\n  - {name: a, devices: {gpus: [0], nvidiaControl: false}}\n  - {name: b, devices: {gpus: [0, 1], nvidiaControl: false}}\n  - {name: c, devices: {gpus: [1], nvidiaControl: false}}\n  - {name: d, devices: {gpus: [0], nvidiaControl: false}}\n";
    let tail = "a GPU belongs to one segment";
    // `all` clashes with `a` on GPU 0; GPU 200 of `f` must still be reported against `e`.
    let all = "version: 1\nsegments:\n  - {name: a, devices: {gpus: [0], nvidiaControl: false}}\n  - {name: e, devices: {gpus: all, nvidiaControl: false}}\n  - {name: f, devices: {gpus: [200], nvidiaControl: false}}\n";
    assert_eq!(
        errs(all),
        [
            format!("p.yaml:4:24: segments[1].devices: GPU 0 is already in segment `a`; {tail}"),
            format!("p.yaml:5:24: segments[2].devices: GPU 200 is already in segment `e`; {tail}"),
        ]
    );
    assert_eq!(
        errs(text),
        [
            format!("p.yaml:4:24: segments[1].devices: GPU 0 is already in segment `a`; {tail}"),
            format!("p.yaml:5:24: segments[2].devices: GPU 1 is already in segment `b`; {tail}"),
            format!("p.yaml:6:24: segments[3].devices: GPU 0 is already in segment `a`; {tail}"),
        ]
    );
}

#[test]
fn agent_devices_settings() {
    let text = "version: 1\nagent:\n  devices:\n    procRoot: proc\n    kubeletSocket: k.sock\n    criSocket: 5\n    gpuResource: \"\"\n    refreshMs: 50\n    refresh: 1\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:4:15: agent.devices.procRoot: `proc` must be an absolute path",
            "p.yaml:5:20: agent.devices.kubeletSocket: `k.sock` must be an absolute path",
            "p.yaml:6:16: agent.devices.criSocket: expected a string, found an integer (quote it to use it as a string)",
            "p.yaml:7:18: agent.devices.gpuResource: must be a non-empty string without NUL characters",
            "p.yaml:8:16: agent.devices.refreshMs: 50 must be between 100 and 600000 (ms)",
            "p.yaml:9:5: agent.devices.refresh: unknown key `refresh` (did you mean `refreshMs`?); allowed keys: procRoot, kubeletSocket, criSocket, gpuResource, gpuResources, cdiSpecDirs, refreshMs",
        ]
    );
    assert_eq!(
        errs("version: 1\nagent: {devices: {refreshMs: 600001, criSocket: run/c.sock}}\n"),
        [
            "p.yaml:2:30: agent.devices.refreshMs: 600001 must be between 100 and 600000 (ms)",
            "p.yaml:2:49: agent.devices.criSocket: `run/c.sock` must be an absolute path",
        ]
    );
    assert_eq!(
        errs("version: 1\nagent: {devices: {refreshMs: \"5000\"}}\n"),
        ["p.yaml:2:30: agent.devices.refreshMs: expected an integer, found a string"]
    );
    assert_eq!(
        errs("version: 1\nagent:\n  devices: [procRoot]\n"),
        ["p.yaml:3:12: agent.devices: expected a mapping, found a list"]
    );
}

#[test]
fn unknown_keys_in_devices() {
    let text = "version: 1\nsegments:\n  - name: g\n    devices:\n      gpus: [0]\n      nvidiaControll: false\n      path: [/dev/fuse]\nallow:\n  - workload: w\n    segment: g\n    gpu: [0]\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:6:7: segments[0].devices.nvidiaControll: unknown key `nvidiaControll` (did you mean `nvidiaControl`?); allowed keys: gpus, nvidiaControl, paths",
            "p.yaml:7:7: segments[0].devices.path: unknown key `path` (did you mean `paths`?); allowed keys: gpus, nvidiaControl, paths",
            "p.yaml:9:15: allow[0].workload: unknown workload `w`",
            "p.yaml:11:5: allow[0].gpu: unknown key `gpu` (did you mean `gpus`?); allowed keys: workload, workloads, segment, segments, ports, protocol, access, gpus, mode, sockets",
        ]
    );
    assert_eq!(
        errs("version: 1\nagent:\n  devices:\n    kubeletSock: /k.sock\n"),
        [
            "p.yaml:4:5: agent.devices.kubeletSock: unknown key `kubeletSock` (did you mean `kubeletSocket`?); allowed keys: procRoot, kubeletSocket, criSocket, gpuResource, gpuResources, cdiSpecDirs, refreshMs"
        ]
    );
    assert_eq!(
        errs("version: 1\nagent:\n  device: {}\n"),
        [
            "p.yaml:3:3: agent.device: unknown key `device` (did you mean `devices`?); allowed keys: cgroupRoot, socket, nodeName, events, ringBufferBytes, files, devices, kubernetes, slurm, metrics"
        ]
    );
}

#[test]
fn device_path_patterns() {
    let text = "version: 1\nsegments:\n  - name: d\n    devices:\n      paths:\n        - dev/x\n        - /dev/*/x\n        - \"/dev/[\"\n        - /dev/\n        - /dev/../sda\n        - /\n        - 7\n        - \"\"\n  - name: e\n    devices: {paths: /dev/fuse}\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:6:11: segments[0].devices.paths[0]: `dev/x` must be an absolute path",
            "p.yaml:7:11: segments[0].devices.paths[1]: `/dev/*/x`: wildcards are only supported in the last component",
            "p.yaml:8:11: segments[0].devices.paths[2]: invalid pattern `/dev/[`: unclosed character class; missing ']'",
            "p.yaml:9:11: segments[0].devices.paths[3]: `/dev/` has an empty component or a trailing `/`; write `/dev`",
            "p.yaml:10:11: segments[0].devices.paths[4]: `/dev/../sda` must not contain `.` or `..` components; write the path it means",
            "p.yaml:11:11: segments[0].devices.paths[5]: protecting / would lock the node; list the directories to protect",
            "p.yaml:12:11: segments[0].devices.paths[6]: expected a string, found an integer (quote it to use it as a string)",
            "p.yaml:13:11: segments[0].devices.paths[7]: must be a non-empty string without NUL characters",
            "p.yaml:15:22: segments[1].devices.paths: expected a list, found a string",
        ]
    );
    // Wildcards in the last component, plain nodes, and no wildcard in directories.
    let good = "version: 1\nsegments:\n  - name: d\n    devices:\n      paths: [/dev/nvidia-caps/nvidia-cap*, \"/dev/sd?\", \"/dev/nvme[0-3]n1\", /dev/kvm, \"/dev/*\"]\n";
    let p = ok(good);
    let patterns: Vec<&Path> =
        p.segments[0].devices.as_ref().unwrap().paths.iter().map(|e| e.pattern.as_path()).collect();
    assert_eq!(
        patterns,
        [
            Path::new("/dev/nvidia-caps/nvidia-cap*"),
            Path::new("/dev/sd?"),
            Path::new("/dev/nvme[0-3]n1"),
            Path::new("/dev/kvm"),
            Path::new("/dev/*"),
        ]
    );
    assert_eq!(
        errs("version: 1\nsegments: [{name: d, devices: {paths: [\"/dev/[ab]/x\", \"/dev/s?/x\"]}}]\n"),
        [
            "p.yaml:2:40: segments[0].devices.paths[0]: `/dev/[ab]/x`: wildcards are only supported in the last component",
            "p.yaml:2:55: segments[0].devices.paths[1]: `/dev/s?/x`: wildcards are only supported in the last component",
        ]
    );
}
