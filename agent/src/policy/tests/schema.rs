//! `config/policy.schema.json` must agree with the reader on valid policies
//! and reject obviously invalid ones.
use serde_json::Value;

use super::super::error::Diag;
use super::super::yaml;
use super::selectors::SELECTORS;
use super::{DEVICES, EXAMPLE, FILES, MODES, NESTED, ok};

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
                 events: {jsonl: /var/log/w.jsonl, logUnprotected: true}\n  ringBufferBytes: 65536\n  \
                 kubernetes: {apiServer: \"http://127.0.0.1:8001\", tokenFile: /run/token}\n  slurm: {scontrol: /usr/bin/scontrol}\n";
    let paths_only =
        "version: 1\nagent: {files: {backend: lsm}}\nsegments: [{name: s, paths: [/a, /a/b, \"/x y/.z\"]}]\n";
    let devices_only = "version: 1\nagent: {devices: {}}\nsegments:\n  - {name: all, devices: {gpus: all}}\n  \
                        - {name: ctl, devices: {nvidiaControl: false, paths: [/dev/kvm, \"/dev/sd?\", \"/dev/nvme[0-3]n1\"]}}\n\
                        workloads: [{name: w, selector: {cgroup: w}}]\n\
                        allow: [{workload: w, segments: [all, ctl], gpus: [0, 253], access: read-write, mode: audit}]\n";
    let control_only = "version: 1\nsegments: [{name: c, devices: {nvidiaControl: true}}]\n";
    let streaming = "version: 1\nagent:\n  metrics: {address: \"[::1]:9100\"}\n  events:\n    jsonl: off\n    \
                     rotate: {maxBytes: 4096, keep: 1}\n    allowed: each\n    summaryIntervalMs: 100\n    otlp:\n      \
                     endpoint: https://otel.example:4317\n      caFile: /etc/ca.pem\n      certFile: /etc/c.pem\n      \
                     keyFile: /etc/k.pem\n      headers: {authorization: \"Bearer x\", x-tenant: gpu}\n      \
                     resource: {k8s.cluster.name: a}\n      batchSize: 1\n      concurrency: 2\n      queueSize: 1\n      \
                     timeoutMs: 100\n";
    let sockets = "version: 1\nsegments: [{name: s, network: [{cidr: 10.0.0.0/8}]}]\n\
                   workloads: [{name: w, selector: {cgroup: w}}]\n\
                   allow: [{workload: w, sockets: [raw, packet]}, {workload: w, segment: s, sockets: [raw]}]\n";
    let metrics_off =
        "version: 1\nagent: {metrics: {address: \"off\"}, events: {otlp: {endpoint: \"http://127.0.0.1:4317\"}}}\n";
    for text in [
        EXAMPLE,
        NESTED,
        MODES,
        FILES,
        DEVICES,
        SELECTORS,
        minimal,
        lists,
        agent,
        paths_only,
        devices_only,
        control_only,
        streaming,
        metrics_off,
        sockets,
    ] {
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
        "version: 1\nworkloads: [{name: w, selector: {cgroup: \"\"}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {cgroup: /}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {cgroup: \"../../*\"}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {cgroup: [a, x/../y]}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {cgroup: [a//b]}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {cgroup: ./a}}]\n",
        "version: 1\nworkloads: [{name: w}]\n",
        // Identity selectors.
        "version: 1\nworkloads: [{name: w, selector: {}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {namespace: []}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {podLabels: {matchExpressions: [{key: a, operator: In}]}}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {podLabels: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {podLabels: {matchLabels: {\"-a\": b}}}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {slurm: {job: 0}}}]\n",
        "version: 1\nworkloads: [{name: w, selector: {slurm: {}}}]\n",
        "version: 1\nagent: {kubernetes: {apiServer: cluster}}\n",
        "version: 1\nagent: {slurm: {scontrol: scontrol}}\n",
        "version: 1\nallow: [{workload: a, workloads: [b], segment: s}]\n",
        "version: 1\nallow: [{workload: a}]\n",
        "version: 1\nallow: [{workload: a, sockets: []}]\n",
        "version: 1\nallow: [{workload: a, sockets: [icmp]}]\n",
        "version: 1\nallow: [{workload: a, sockets: [raw, raw]}]\n",
        "version: 1\nallow: [{workload: a, segment: s, ports: [1, 2, 3, 4, 5]}]\n",
        "- version: 1\n",
        // Device segments and GPU rules.
        "version: 1\nsegments: [{name: s, devices: {}}]\n",
        "version: 1\nsegments: [{name: s, devices: {nvidiaControl: false}}]\n",
        "version: 1\nsegments: [{name: s, devices: {gpus: some}}]\n",
        "version: 1\nsegments: [{name: s, devices: {gpus: [254]}}]\n",
        "version: 1\nsegments: [{name: s, devices: {gpus: [-1]}}]\n",
        "version: 1\nsegments: [{name: s, devices: {gpus: []}}]\n",
        "version: 1\nsegments: [{name: s, devices: {gpus: [1, 1]}}]\n",
        "version: 1\nsegments: [{name: s, devices: {gpus: [\"1\"]}}]\n",
        "version: 1\nsegments: [{name: s, devices: {gpus: [0], nvidiaControl: \"yes\"}}]\n",
        "version: 1\nsegments: [{name: s, devices: {gpus: [0], gpu: [1]}}]\n",
        "version: 1\nsegments: [{name: s, devices: {paths: []}}]\n",
        "version: 1\nsegments: [{name: s, devices: {paths: [dev/x]}}]\n",
        "version: 1\nsegments: [{name: s, devices: {paths: [\"/dev/*/x\"]}}]\n",
        "version: 1\nsegments: [{name: s, devices: {paths: [/dev/]}}]\n",
        "version: 1\nsegments: [{name: s, devices: {paths: [/dev/../sda]}}]\n",
        "version: 1\nsegments: [{name: s, devices: [gpus]}]\n",
        "version: 1\nagent: {devices: {refreshMs: 50}}\n",
        "version: 1\nagent: {devices: {refreshMs: 600001}}\n",
        "version: 1\nagent: {devices: {procRoot: proc}}\n",
        "version: 1\nagent: {devices: {criSocket: run/c.sock}}\n",
        "version: 1\nagent: {devices: {gpuResource: \"\"}}\n",
        "version: 1\nagent: {devices: {refresh: 1000}}\n",
        // Events and metrics.
        "version: 1\nagent: {events: {jsonl: events.jsonl}}\n",
        "version: 1\nagent: {events: {allowed: some}}\n",
        "version: 1\nagent: {events: {summaryIntervalMs: 10}}\n",
        "version: 1\nagent: {events: {rotate: {maxBytes: 100}}}\n",
        "version: 1\nagent: {events: {rotate: {keep: 0}}}\n",
        "version: 1\nagent: {events: {otlp: {}}}\n",
        "version: 1\nagent: {events: {otlp: {endpoint: \"127.0.0.1:4317\"}}}\n",
        "version: 1\nagent: {events: {otlp: {endpoint: \"http://c:4317\", headers: {Authorization: x}}}}\n",
        "version: 1\nagent: {events: {otlp: {endpoint: \"http://c:4317\", batchSize: 0}}}\n",
        "version: 1\nagent: {events: {otlp: {endpoint: \"http://c:4317\", concurrency: 65}}}\n",
        "version: 1\nagent: {events: {otlp: {endpoint: \"http://c:4317\", caFile: ca.pem}}}\n",
        "version: 1\nagent: {events: {otlp: {endpoint: \"http://c:4317\", headersFile: h.yaml}}}\n",
        "version: 1\nagent: {events: {otlp: {endpoint: \"http://c:4317\", port: 1}}}\n",
        "version: 1\nagent: {metrics: {address: 9464}}\n",
        "version: 1\nagent: {metrics: {listen: \"127.0.0.1:1\"}}\n",
        "version: 1\nsegments: [{name: g, devices: {gpus: all}}]\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow: [{workload: w, segment: g, gpus: all}]\n",
        "version: 1\nsegments: [{name: g, devices: {gpus: all}}]\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow: [{workload: w, segment: g, gpus: [254]}]\n",
        "version: 1\nsegments: [{name: g, devices: {gpus: all}}]\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow: [{workload: w, segment: g, gpus: []}]\n",
        "version: 1\nsegments: [{name: g, devices: {gpus: all}}]\nworkloads: [{name: w, selector: {cgroup: w}}]\nallow: [{workload: w, segment: g, access: write}]\n",
    ];
    for text in invalid {
        assert!(!v.is_valid(&json(text)), "schema accepted:\n{text}");
        assert!(super::super::load_str(text, "x").is_err(), "reader accepted:\n{text}");
    }
}
