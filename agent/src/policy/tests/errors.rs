use super::errs;

#[test]
fn show() {
    let docs: &[&str] = &[
"mode: audit\nsegments:\n  - description: x\n",
"version: 1\nallow:\n  - ports: [1]\n",
"version: 1\nsegments:\n  - name: a\n    network:\n      - cidr: 10.0.0.0/16\n        ports: [443, 80]\n        protocol: tcp\n  - name: b\n    network:\n      - cidr: 10.0.0.0/16\n        ports: [\"400-500\"]\n      - cidr: 10.0.0.0/16\n        ports: [80]\n        protocol: udp\n      - cidr: \"::ffff:10.0.0.0/112\"\n        ports: [\"440-450\"]\n",
"version: 1\nsegments:\n  - name: a\n    network:\n      - cidr: 10.0.0.0/16\n        ports: [443, 80]\n      - cidr: 10.1.0.0/16\n      - cidr: 10.0.0.0/16\n        ports: [80, 443]\n      - cidr: 10.0.0.0/16\n        ports: [80, 443]\n        protocol: tcp\n",
"version: 1\nsegments:\n  - name: s\n    network: [{cidr: 10.0.0.0/8, ports: [443, 22]}]\n  - name: t\n    network: [{cidr: 10.1.0.0/16}]\nworkloads:\n  - {name: a, selector: {cgroup: a}}\n  - {name: b, selector: {cgroup: b}}\nallow:\n  - workloads: [a, b]\n    segment: s\n    ports: [443]\n  - workload: b\n    segments: [t, s]\n  - workload: a\n    segment: s\n    ports: [22]\n",
"version: 1\nsegments:\n  - name: s\n    network: [{cidr: 10.0.0.0/8, ports: [443], protocol: tcp}]\nworkloads:\n  - {name: a, selector: {cgroup: a}}\n  - {name: b, selector: {cgroup: b}}\n  - {name: c, selector: {cgroup: c}}\nallow:\n  - workload: a\n    segment: s\n    ports: [22, \"8000-9000\"]\n  - workload: b\n    segment: s\n    protocol: udp\n  - workload: c\n    segment: s\n    ports: [1, 2, 3, 4, 5]\n",
"version: 1\nsegments:\n  - name: a\n    network:\n      - cidr: 10.0.0.0/8\n        ports: [1, 2, 3, 4, 5]\n      - cidr: 10.1.0.0/16\n        ports: [6, 7, 8]\n      - cidr: 10.1.2.0/24\n        ports: [9]\n",
"version: 1\nagent:\n  cgroupRoot: ../x\n  socket: run/w.sock\n  nodeName: \"\"\n  events:\n    jsonl: 5\n    logUnprotected: yes\n    extra: 1\n  ringBufferBytes: 100000\n",
"version: 1\nagent: {ringBufferBytes: 2147483648}\nmode: audit\nmode: enforce\n",
"version: 1\nsegments: &s []\nworkloads: *s\n",
"version: 1\n[a]: 1\n",
"version: 1\nsegments: 5\nworkloads: {}\nallow: x\n",
];
    for d in docs {
        eprintln!("-----\n{d}=>");
        match super::super::load_str(d, "p.yaml") { Ok(_) => eprintln!("OK"), Err(e) => eprintln!("{e}") }
    }
    let _ = errs;
}
