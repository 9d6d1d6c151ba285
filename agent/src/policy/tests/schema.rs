//! `config/policy.schema.json` must agree with the reader on valid policies
//! and reject obviously invalid ones.
use serde_json::Value;

use super::super::error::Diag;
use super::super::yaml;
use super::{EXAMPLE, FILES, MODES, NESTED, ok};

const SCHEMA: &str = include_str!("../../../../config/policy.schema.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

fn json(text: &str) -> Value {
    let mut diag = Diag::new("s.yaml");
    let node = yaml::parse(text, &mut diag).expect("YAML parses");
    assert!(diag.is_empty());
    node.to_json()
}

#[test]
fn accepts_every_valid_policy() {
    let v = validator();
    let minimal = "version: 1\n";
    let lists = "version: 1\nsegments: []\nworkloads:\nallow: []\n";
    let agent = "version: 1\nagent:\n  cgroupRoot: /\n  nodeName: n1\n  socket: /run/w.sock\n  \
                 events: {jsonl: /var/log/w.jsonl, logUnprotected: true}\n  ringBufferBytes: 65536\n";
    let paths_only =
        "version: 1\nagent: {files: {backend: lsm}}\nsegments: [{name: s, paths: [/a, /a/b, \"/x y/.z\"]}]\n";
    for text in [EXAMPLE, NESTED, MODES, FILES, minimal, lists, agent, paths_only] {
        ok(text); // the reader agrees
        let instance = json(text);
        let problems: Vec<String> = v.iter_errors(&instance).map(|e| e.to_string()).collect();
        assert!(problems.is_empty(), "schema rejected a valid policy: {problems:?}\n{text}");
    }
}

#[test]
fn rejects_invalid_policies() {
    let v = validator();
    let invalid = [
        "mode: audit\n",                                // no version
        "version: 2\n",                                 // bad version
        "version: 1\nextra: 1\n",                       // unknown key
        "version: 1\nmode: block\n",                    // bad mode
        "version: 1\nagent: {ringBufferBytes: 5000}\n", // not a power of two
        "version: 1\nagent: {socket: run/w.sock}\n",    // relative socket
        "version: 1\nsegments: [{name: Bad, network: [{cidr: 10.0.0.0/8}]}]\n",
        "version: 1\nsegments: [{name: s, network: []}]\n",
        "version: 1\nsegments: [{name: s, network: [{cidr: 10.0.0.0/8, ports: [0]}]}]\n",
        "version: 1\nsegments: [{name: s, network: [{cidr: 10.0.0.0/8, protocol: icmp}]}]\n",
        "version: 1\nsegments: [{name: s}]\n", // neither network nor paths
        "version: 1\nsegments: [{name: s, paths: []}]\n",
        "version: 1\nsegments: [{name: s, paths: [/]}]\n",
        "version: 1\nsegments: [{name: s, paths: [data]}]\n",
        "version: 1\nsegments: [{name: s, paths: [/data/]}]\n",
        "version: 1\nsegments: [{name: s, paths: [/a//b]}]\n",
        "version: 1\nsegments: [{name: s, paths: [/a/../b]}]\n",
        "version: 1\nsegments: [{name: s, paths: [/a/.]}]\n",
        "version: 1\nsegments: [{name: s, paths: [/a], pathz: [/b]}]\n",
        "version: 1\nagent: {files: {backend: ebpf}}\n",
        "version: 1\nsegments: [{name: s, paths: [/a]}]\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow: [{workload: w, segment: s, access: write}]\n",
        "version: 1\nworkloads: [{name: w, selector: {cgroup: []}}]\n",
        "version: 1\nworkloads: [{name: w}]\n",
        "version: 1\nallow: [{workload: a, workloads: [b], segment: s}]\n",
        "version: 1\nallow: [{workload: a}]\n",
        "version: 1\nallow: [{workload: a, segment: s, ports: [1, 2, 3, 4, 5]}]\n",
        "- version: 1\n",
    ];
    for text in invalid {
        assert!(!v.is_valid(&json(text)), "schema accepted:\n{text}");
        assert!(super::super::load_str(text, "x").is_err(), "reader accepted:\n{text}");
    }
}
