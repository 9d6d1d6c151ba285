use std::path::Path;

use sha2::{Digest, Sha256};

use super::super::{Access, Config, DefaultAction, GpuSelection, Mode, RuleGpus, load_file};
use super::{EXAMPLE, config, ok};
use crate::settings::FileBackend;

#[test]
fn example_loads_with_its_settings() {
    let a = config(EXAMPLE).agent;
    let p = ok(EXAMPLE);
    assert_eq!(p.version, 1);
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.default_action, DefaultAction::Allow);
    assert_eq!(a.cgroup_root, "warden-demo");
    assert_eq!(a.socket, Path::new("/run/warden/warden.sock"));
    assert_eq!(a.node_name, None);
    assert_eq!(a.events.jsonl, "-");
    assert!(!a.events.log_unprotected);
    assert_eq!(a.ring_buffer_bytes, 4 << 20);
    let names: Vec<&str> = p.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["object-store", "model-registry", "tenant-b", "metadata-api", "datasets", "model-weights", "gpus"]
    );
    let names: Vec<&str> = p.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["trainer", "inference"]);
    assert_eq!(p.workloads[0].cgroup, ["training/*"]);
    assert_eq!(p.allow.len(), 6);
    assert_eq!(a.files.backend, FileBackend::Auto);
    let paths: Vec<Vec<&Path>> =
        p.segments.iter().map(|s| s.paths.iter().map(|e| e.path.as_path()).collect()).collect();
    assert!(paths[..4].iter().all(Vec::is_empty));
    assert_eq!(paths[4], [Path::new("/mnt/datasets"), Path::new("/tmp/warden-demo/datasets")]);
    assert_eq!(paths[5], [Path::new("/models"), Path::new("/tmp/warden-demo/models")]);
    assert!(paths[6].is_empty());
    // The GPU segment: every GPU plus the control nodes; the trainer gets GPU 0 with the default access.
    let gpus = p.segments[6].devices.as_ref().expect("gpus has devices");
    assert_eq!((gpus.gpus.as_ref(), gpus.nvidia_control), (Some(&GpuSelection::All), true));
    assert!(p.segments[..6].iter().all(|s| s.devices.is_none()));
    assert_eq!(p.allow[5].gpus, Some(RuleGpus::Listed(vec![0])));
    let access: Vec<Option<Access>> = p.allow.iter().map(|r| r.access).collect();
    assert_eq!(access, [None, None, Some(Access::Read), Some(Access::ReadWrite), Some(Access::Read), None]);
    assert_eq!(p.source_sha256, hex::encode(Sha256::digest(EXAMPLE.as_bytes())));
    assert_eq!(crate::policy::digest_tag(&p.source_sha256), <[u8; 32]>::from(Sha256::digest(EXAMPLE.as_bytes())));
    assert_eq!(crate::policy::digest_tag(""), [0; 32], "no digest: a tag no pinned set matches");
    assert_eq!(crate::policy::digest_tag("zz"), [0; 32]);
}

/// The `agent:` section is the daemon's, not the policy's: the same policy
/// with other settings compiles to the same kernel contents.
#[test]
fn agent_settings_are_apart_from_the_policy() {
    let plain = config(EXAMPLE);
    // Same line count, so every origin in the policy stays where it was.
    let tuned = EXAMPLE.replacen("ringBufferBytes: 4194304", "devices: {procRoot: /host/proc}", 1);
    let tuned = tuned.replacen("backend: auto", "backend: fanotify", 1).replacen(
        "logUnprotected: false",
        "logUnprotected: true",
        1,
    );
    let tuned = config(&tuned);
    assert_ne!(plain.agent, tuned.agent);
    assert_eq!(tuned.agent.files.backend, FileBackend::Fanotify);
    let same = |p: &crate::policy::Policy| crate::policy::Policy { source_sha256: String::new(), ..p.clone() };
    assert_eq!(same(&plain.policy), same(&tuned.policy));
    let (a, b) = (plain.policy.compile(), tuned.policy.compile());
    assert_eq!((a.settings, &a.files, &a.devices), (b.settings, &b.files, &b.devices));
}

#[test]
fn defaults_for_a_minimal_policy() {
    let Config { agent: a, policy: p, warnings } = config("version: 1\n");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.default_action, DefaultAction::Allow);
    assert_eq!(a, Default::default());
    assert_eq!(a.cgroup_root, "/");
    assert!(p.segments.is_empty() && p.workloads.is_empty() && p.allow.is_empty());
    let p = ok("version: 1\nsegments: []\nworkloads:\nallow: []\n");
    assert!(p.segments.is_empty() && p.workloads.is_empty());
    assert_eq!(Mode::Audit.to_string(), "audit");
    assert_eq!(serde_json::to_string(&Mode::Enforce).unwrap(), "\"enforce\"");
}

#[test]
fn load_file_reads_and_hashes_bytes() {
    let dir = std::env::temp_dir().join(format!("warden-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let p = load_file(&path).unwrap().policy;
    assert_eq!(p.source_sha256, hex::encode(Sha256::digest(EXAMPLE.as_bytes())));

    std::fs::write(&path, b"version: 1\nmode: \"au\xffdit\"\n").unwrap();
    let e = load_file(&path).unwrap_err();
    assert_eq!(e.to_string(), format!("{}:2:10: file: not valid UTF-8", path.display()));

    std::fs::write(&path, "version: 2\n").unwrap();
    let e = load_file(&path).unwrap_err();
    let want = format!("{}:1:10: version: unsupported version 2; this agent understands version 1", path.display());
    assert_eq!(e.to_string(), want);

    let missing = dir.join("absent.yaml");
    let e = load_file(&missing).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!((e.0[0].line, e.0[0].column, e.0[0].field.as_str()), (0, 0, "file"));
    assert!(e.to_string().starts_with(&format!("{}: file: cannot open:", missing.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let big = format!("version: 1\n#{}\n", "x".repeat(super::super::MAX_FILE_BYTES));
    let e = super::errs(&big);
    assert_eq!(e, vec![format!("p.yaml: file: larger than {} bytes", super::super::MAX_FILE_BYTES)]);
}

#[test]
fn byte_order_mark_and_crlf_are_accepted() {
    assert_eq!(ok("\u{feff}version: 1\r\nmode: audit\r\n").mode, Mode::Audit);
}
