//! Workload selectors by identity: reading, errors, and matching.
use std::collections::BTreeMap;

use super::{errs, ok};
use crate::policy::{Facts, LabelOp};

pub(super) const SELECTORS: &str = r#"version: 1
segments:
  - name: weights
    paths: [/models]
workloads:
  - name: trainer
    selector:
      namespace: [ml-training, "team-*"]
      podLabels:
        matchLabels: {app: trainer}
        matchExpressions:
          - {key: tier, operator: In, values: [gpu, "a100"]}
          - {key: canary, operator: DoesNotExist}
      serviceAccount: trainer
      container: main
      image: "nvcr.io/nvidia/pytorch:*"
  - name: batch
    selector:
      slurm: {user: alice, account: [ml, research], partition: gpu}
  - name: job-7
    selector:
      slurm: {job: [7, 8]}
  - name: dcgm
    selector:
      unit: "nvidia-*.service"
  - name: scoped
    selector:
      cgroup: "kubepods/**"
      namespace: inference
allow:
  - workloads: [trainer, batch]
    segment: weights
    access: read
"#;

#[test]
fn every_selector_kind_is_read() {
    let p = ok(SELECTORS);
    let t = &p.workloads[0].meta;
    assert_eq!(t.namespace, ["ml-training", "team-*"]);
    let labels = t.pod_labels.as_ref().unwrap();
    assert_eq!(labels.match_labels, [("app".to_string(), "trainer".to_string())]);
    assert_eq!(labels.match_expressions.len(), 2);
    assert_eq!(
        (labels.match_expressions[0].op, &labels.match_expressions[0].values[..]),
        (LabelOp::In, &["gpu".to_string(), "a100".to_string()][..])
    );
    assert_eq!(
        (t.service_account.as_slice(), t.container.as_slice()),
        (&["trainer".to_string()][..], &["main".to_string()][..])
    );
    assert!(p.workloads[0].cgroup.is_empty());
    let b = &p.workloads[1].meta;
    assert_eq!((b.slurm_user.len(), b.slurm_account.len(), b.slurm_partition.len()), (1, 2, 1));
    assert_eq!(p.workloads[2].meta.slurm_job, [7, 8]);
    assert_eq!(p.workloads[3].meta.unit, ["nvidia-*.service"]);
    assert_eq!(p.workloads[4].cgroup, ["kubepods/**"]);
    assert!(p.workloads[0].meta.needs_pod_metadata() && !p.workloads[0].meta.needs_slurm_metadata());
    assert!(p.workloads[1].meta.needs_slurm_metadata() && !p.workloads[2].meta.needs_slurm_metadata());
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn all_criteria_must_hold_and_unknown_facts_never_match() {
    let c = ok(SELECTORS).compile();
    let l = labels(&[("app", "trainer"), ("tier", "gpu")]);
    let trainer = Facts {
        namespace: Some("team-vision"),
        pod_labels: Some(&l),
        service_account: Some("trainer"),
        container: Some("main"),
        image: Some("nvcr.io/nvidia/pytorch:24.05-py3"),
        ..Default::default()
    };
    let path = "kubepods.slice/x";
    assert_eq!(c.workload_for(path, &trainer), Some(1));
    // Each criterion on its own can fail the match.
    let canary = labels(&[("app", "trainer"), ("tier", "gpu"), ("canary", "1")]);
    let wrong = [
        Facts { namespace: Some("default"), ..trainer },
        Facts { pod_labels: Some(&canary), ..trainer },
        Facts { service_account: Some("default"), ..trainer },
        Facts { container: Some("sidecar"), ..trainer },
        Facts { image: Some("docker.io/pytorch:1"), ..trainer },
        // Not known yet (no metadata): fail closed.
        Facts { namespace: None, ..trainer },
        Facts { pod_labels: None, ..trainer },
        Facts { image: None, ..trainer },
    ];
    for f in wrong {
        assert_eq!(c.workload_for(path, &f), None, "{f:?}");
    }
    assert_eq!(c.workload_for(path, &Facts::default()), None);
}

#[test]
fn slurm_units_and_cgroup_scoped_selectors() {
    let c = ok(SELECTORS).compile();
    let alice = Facts {
        slurm_job: Some(42),
        slurm_user: Some("alice"),
        slurm_account: Some("research"),
        slurm_partition: Some("gpu"),
        ..Default::default()
    };
    assert_eq!(c.workload_for("slurm/job_42", &alice), Some(2));
    assert_eq!(c.workload_for("slurm/job_42", &Facts { slurm_partition: Some("cpu"), ..alice }), None);
    // Job 7 matches by id alone, even before scontrol answers.
    assert_eq!(c.workload_for("slurm/job_7", &Facts { slurm_job: Some(7), ..Default::default() }), Some(3));
    let unit = Facts { unit: Some("nvidia-dcgm.service"), ..Default::default() };
    assert_eq!(c.workload_for("system.slice/nvidia-dcgm.service", &unit), Some(4));
    // `cgroup` and `namespace` together: both must hold.
    let inference = Facts { namespace: Some("inference"), ..Default::default() };
    assert_eq!(c.workload_for("kubepods/pod1/ctr", &inference), Some(5));
    assert_eq!(c.workload_for("other/pod1/ctr", &inference), None);
}

#[test]
fn identity_workloads_beat_ancestors_globs_but_not_own_level_file_order() {
    let text = r#"version: 1
workloads:
  - name: tree
    selector: {cgroup: "kubepods/*"}
  - name: ml
    selector: {namespace: ml}
  - name: exact
    selector: {cgroup: "kubepods/pod1/ctr"}
"#;
    let c = ok(text).compile();
    let ml = Facts { namespace: Some("ml"), ..Default::default() };
    // `tree` matched only the ancestor kubepods/pod1: `ml` judges the cgroup itself.
    assert_eq!(c.workload_for("kubepods/pod1/ctr", &ml), Some(2));
    assert_eq!(c.workload_for("kubepods/pod1/ctr", &Facts::default()), Some(3));
    // At the cgroup's own level, file order decides.
    assert_eq!(c.workload_for("kubepods/pod1", &ml), Some(1));
}

#[test]
fn selector_errors_name_the_field() {
    let text = r#"version: 1
workloads:
  - name: a
    selector:
      namespace: ML
      podLabels:
        matchLabels: {"-bad": x, ok: "a b"}
        matchExpressions:
          - {key: tier, operator: In}
          - {key: tier, operator: Exists, values: [x]}
          - {key: tier, operator: Maybe}
  - name: b
    selector:
      slurm: {job: 0}
  - name: c
    selector:
      slurm: {}
  - name: d
    selector:
      unit: "a[" 
      slurm: {usr: x}
"#;
    assert_eq!(
        errs(text),
        [
            "p.yaml:5:18: workloads[0].selector.namespace: `ML` is not a valid namespace: must be lower-case alphanumeric or `-`, in dot-separated parts",
            "p.yaml:7:31: workloads[0].selector.podLabels.matchLabels.-bad: label key `-bad`: must be alphanumeric, `-`, `_` or `.`, starting and ending alphanumeric",
            "p.yaml:7:38: workloads[0].selector.podLabels.matchLabels.ok: label value `a b`: must be alphanumeric, `-`, `_` or `.`, starting and ending alphanumeric",
            "p.yaml:9:13: workloads[0].selector.podLabels.matchExpressions[0].values: `In` and `NotIn` need a non-empty `values` list",
            "p.yaml:10:51: workloads[0].selector.podLabels.matchExpressions[1].values: `Exists` and `DoesNotExist` take no `values`",
            "p.yaml:11:35: workloads[0].selector.podLabels.matchExpressions[2].operator: invalid value `Maybe`; expected one of: In, NotIn, Exists, DoesNotExist",
            "p.yaml:14:20: workloads[1].selector.slurm.job: 0 is not a Slurm job id (1..=4294967295)",
            "p.yaml:17:14: workloads[2].selector.slurm: give at least one of `user`, `account`, `partition`, `job`",
            "p.yaml:20:13: workloads[3].selector.unit: invalid glob `a[`: unclosed character class; missing ']'",
            "p.yaml:21:15: workloads[3].selector.slurm.usr: unknown key `usr` (did you mean `user`?); allowed keys: user, account, partition, job",
        ]
    );
}
