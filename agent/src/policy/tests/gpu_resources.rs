//! `agent.devices.gpuResources` / `gpuResource` / `cdiSpecDirs`, and the GPU
//! indices a policy names (which MIG capabilities may not borrow).
use std::path::PathBuf;

use super::{config, errs, ok};

#[test]
fn resource_lists_and_the_single_form() {
    let d = config("version: 1\nagent:\n  devices:\n    gpuResources: [nvidia.com/gpu, \"nvidia.com/mig-*\"]\n    cdiSpecDirs: [/run/cdi]\n").agent.devices;
    assert_eq!(d.gpu_resources, ["nvidia.com/gpu", "nvidia.com/mig-*"]);
    assert_eq!(d.cdi_spec_dirs, [PathBuf::from("/run/cdi")]);
    let d = config("version: 1\nagent: {devices: {gpuResource: example.com/gpu}}\n").agent.devices;
    assert_eq!(d.gpu_resources, ["example.com/gpu"]);
}

#[test]
fn bad_resource_names_say_why() {
    let text = "version: 1\nagent:\n  devices:\n    gpuResources:\n      - gpu\n      - Nvidia.com/gpu\n      - nvidia.com/gpu/x\n      - kubernetes.io/gpu\n      - \"nvidia.*/gpu\"\n      - nvidia.com/gpu\n";
    assert_eq!(
        errs(text),
        [
            "p.yaml:5:9: agent.devices.gpuResources[0]: `gpu`: no `/`: expected <domain>/<name> (e.g. nvidia.com/gpu; `*` allowed in the name)",
            "p.yaml:6:9: agent.devices.gpuResources[1]: `Nvidia.com/gpu`: `Nvidia.com` is not a DNS domain: expected <domain>/<name> (e.g. nvidia.com/gpu; `*` allowed in the name)",
            "p.yaml:7:9: agent.devices.gpuResources[2]: `nvidia.com/gpu/x`: `gpu/x` is not a resource name: expected <domain>/<name> (e.g. nvidia.com/gpu; `*` allowed in the name)",
            "p.yaml:8:9: agent.devices.gpuResources[3]: `kubernetes.io/gpu`: the kubernetes.io domain holds no extended resources",
            "p.yaml:9:9: agent.devices.gpuResources[4]: `nvidia.*/gpu`: `nvidia.*` is not a DNS domain: expected <domain>/<name> (e.g. nvidia.com/gpu; `*` allowed in the name)",
        ]
    );
    assert_eq!(
        errs("version: 1\nagent: {devices: {gpuResource: nvidia.com}}\n"),
        [
            "p.yaml:2:32: agent.devices.gpuResource: `nvidia.com`: no `/`: expected <domain>/<name> (e.g. nvidia.com/gpu; `*` allowed in the name)"
        ]
    );
    assert_eq!(
        errs("version: 1\nagent: {devices: {gpuResource: a.com/x, gpuResources: [a.com/y]}}\n"),
        ["p.yaml:2:55: agent.devices.gpuResources: give gpuResource or gpuResources, not both"]
    );
    assert_eq!(
        errs("version: 1\nagent: {devices: {gpuResources: [], cdiSpecDirs: [etc/cdi]}}\n"),
        [
            "p.yaml:2:33: agent.devices.gpuResources: must not be empty",
            "p.yaml:2:51: agent.devices.cdiSpecDirs[0]: `etc/cdi` must be an absolute path",
        ]
    );
}

#[test]
fn indices_a_policy_names_are_reserved() {
    let text = "version: 1\nsegments:\n  - name: all\n    devices: {gpus: all}\n  - name: rdma\n    devices: {paths: [/dev/x]}\n\
                workloads: [{name: w, selector: {cgroup: w}}, {name: v, selector: {cgroup: v}}]\n\
                allow:\n  - {workload: w, segment: all, gpus: [7, 3]}\n  - {workload: v, segment: all, gpus: assigned}\n";
    let c = ok(text).compile();
    assert_eq!(c.devices[0].reserved, [3, 7]);
    assert!(c.devices[1].reserved.is_empty());
    let listed = "version: 1\nsegments: [{name: g, devices: {gpus: [0, 1]}}]\n";
    assert_eq!(ok(listed).compile().devices[0].reserved, [0, 1]);
}
