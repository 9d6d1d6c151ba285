//! Tests across the policy modules: error reporting, compilation, schema, fuzzing.
use super::{Config, Policy, load_str};

mod compile;
mod devices;
mod errors;
mod files;
mod fuzz;
mod gpu_resources;
mod load;
mod otlp_headers;
mod schema;
mod selectors;
mod sockets;

pub(super) const EXAMPLE: &str = include_str!("../../../../config/example.yaml");

/// Valid policies used by the compile tests; the schema must accept them all.
pub(super) const NESTED: &str = r#"version: 1
segments:
  - name: wide
    network:
      - cidr: 10.0.0.0/8
  - name: storage
    network:
      - cidr: 10.20.0.0/16
        ports: ["9000-9100", 443]
        protocol: tcp
  - name: bastion
    network:
      - cidr: 10.20.30.0/24
        ports: [22]
      - cidr: "::ffff:10.99.0.0/112"
        protocol: udp
  - name: v6
    network:
      - cidr: fd00:b::/48
        ports: [8443]
      - cidr: fd00:b:0:1::/64
"#;

pub(super) const MODES: &str = r#"version: 1
mode: enforce
defaultAction: deny
agent:
  events:
    logUnprotected: true
segments:
  - name: s-audit
    mode: audit
    network:
      - cidr: 10.1.0.0/16
  - name: s-plain
    network:
      - cidr: 10.2.0.0/16
        ports: [443, 8000-8100]
  - name: s-other
    network:
      - cidr: 10.3.0.0/16
workloads:
  - name: w-audit
    mode: audit
    selector:
      cgroup: a/*
  - name: w-plain
    selector:
      cgroup: [b/*, /c/**]
allow:
  - workload: w-plain
    segment: s-audit
  - workloads: [w-plain]
    segments: [s-plain]
    ports: [443, "8000-8010"]
    protocol: tcp
    mode: audit
  - workload: w-audit
    segment: s-plain
    mode: enforce
"#;

/// File segments: network-only (1), paths-only (2), both (3), nested audit (4).
pub(super) const FILES: &str = r#"version: 1
mode: enforce
agent:
  files:
    backend: fanotify
segments:
  - name: net
    network: [{cidr: 10.0.0.0/8}]
  - name: datasets
    paths: [/mnt/datasets, /data/imagenet]
  - name: weights
    network:
      - cidr: 10.30.0.0/16
        ports: [443]
    paths: [/models]
  - name: scratch
    mode: audit
    paths: [/mnt/datasets/scratch]
workloads:
  - name: trainer
    selector: {cgroup: "training/*"}
  - name: inference
    mode: audit
    selector: {cgroup: "inference/*"}
  - name: batch
    selector: {cgroup: "batch/*"}
allow:
  - workload: trainer
    segments: [datasets, net]
    access: read
  - workload: trainer
    segment: weights
    ports: [443]
    access: read-write
  - workload: inference
    segment: weights
    access: read
  - workload: batch
    segment: datasets
    access: read
    mode: audit
"#;

/// Device segments: GPUs 0-3 with the control nodes (2), GPUs 4-5 in audit (3),
/// RDMA nodes only (4), a disk next to file paths (5); ids follow the file.
pub(super) const DEVICES: &str = r#"version: 1
mode: enforce
agent:
  devices:
    procRoot: /host/proc
    kubeletSocket: /run/kubelet/pod-resources.sock
    criSocket: /run/containerd/containerd.sock
    gpuResource: example.com/gpu
    refreshMs: 2000
segments:
  - name: net
    network: [{cidr: 10.0.0.0/8}]
  - name: gpus-a
    devices:
      gpus: [0, 1, 2, 3]
  - name: gpus-b
    mode: audit
    devices:
      gpus: [4, 5]
      nvidiaControl: false
  - name: rdma
    devices:
      paths: ["/dev/infiniband/uverbs*", /dev/infiniband/rdma_cm]
  - name: weights
    paths: [/models]
    devices:
      paths: [/dev/nvme1n1]
workloads:
  - name: trainer
    selector: {cgroup: "training/*"}
  - name: inference
    mode: audit
    selector: {cgroup: "inference/*"}
  - name: batch
    selector: {cgroup: "batch/*"}
allow:
  - workload: trainer
    segments: [gpus-a, rdma]
    gpus: [1, 3, 5]
  - workload: trainer
    segment: gpus-b
    access: read
  - workload: inference
    segment: gpus-a
    gpus: assigned
    access: read-write
  - workload: batch
    segments: [gpus-b, net]
    ports: [443]
    mode: enforce
  - workload: batch
    segment: weights
    access: read
"#;

/// Compiled names as plain strings, to compare with literals.
pub(super) fn names(v: &[crate::name::Name]) -> Vec<&str> {
    v.iter().map(|n| &**n).collect()
}

/// The policy proper of a file that must load.
pub(super) fn ok(text: &str) -> Policy {
    config(text).policy
}

/// The whole file (`agent:` settings and policy) that must load.
pub(super) fn config(text: &str) -> Config {
    match load_str(text, "p.yaml") {
        Ok(c) => c,
        Err(e) => panic!("policy should load:\n{e}"),
    }
}

/// Error lines as displayed, for exact assertions.
pub(super) fn errs(text: &str) -> Vec<String> {
    match load_str(text, "p.yaml") {
        Ok(_) => panic!("policy should fail:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}
