//! The policy language: YAML file → validated [`Config`] (the policy
//! proper, [`Policy`], and the daemon's `agent:` settings,
//! [`crate::settings::AgentConfig`]) → [`CompiledPolicy`] (kernel map contents).
//!
//! # Format
//!
//! The agent reads its policy from one YAML file.
//! A JSON schema for editors and CI lives in `config/policy.schema.json`; a
//! commented example in `config/example.yaml`. Problems are all reported at
//! once, each as `file:line:column: field: reason`.
//!
//! ```yaml
//! version: 1                  # required, must be 1
//! mode: enforce               # enforce | audit (default enforce); audit = log "would deny", let it through
//! defaultAction: allow        # allow | deny for destinations in no segment (default allow)
//!
//! agent:                      # optional, every key optional
//!   cgroupRoot: /             # cgroup2 subtree (relative to the mount) where hooks attach; default "/"
//!   socket: /run/warden/warden.sock   # control socket, absolute path
//!   nodeName: gpu-node-1      # default: the hostname
//!   events:
//!     jsonl: "-"              # "-" = stdout (default), off, or a file path
//!     rotate: {maxBytes: 104857600, keep: 5}   # file rotation (default 100 MiB, 5 kept)
//!     logUnprotected: false   # also log allowed flows to non-segment destinations
//!     allowed: summary        # summary (default): counts per workload/segment/rule and interval | each
//!     summaryIntervalMs: 10000
//!     otlp:                   # optional OpenTelemetry collector (OTLP/gRPC logs)
//!       endpoint: http://127.0.0.1:4317   # https:// for TLS (caFile, certFile + keyFile optional)
//!       headers: {authorization: "Bearer ..."}
//!       headersFile: /etc/warden/otlp/headers.yaml   # more headers (a YAML/JSON map), e.g. from a Secret
//!       resource: {k8s.cluster.name: gpu-a}
//!       batchSize: 512        # records per export
//!       concurrency: 4        # export requests in flight at once
//!       queueSize: 65536      # events held while the collector is down; oldest allowed dropped first
//!       timeoutMs: 10000
//!   metrics:
//!     address: 127.0.0.1:9464 # Prometheus /metrics, /healthz, /readyz; `off` disables
//!   ringBufferBytes: 4194304  # power of two, 64 KiB .. 1 GiB (default 4 MiB)
//!   files:
//!     backend: auto           # auto | lsm | fanotify (default auto: the strongest that works on the node)
//!
//! segments:                   # protected destinations and directory trees
//!   - name: object-store      # [a-z0-9][-a-z0-9_.]*, at most 63 chars, unique
//!     description: "S3 gateway"       # optional
//!     mode: audit             # optional: mode for denies of this segment
//!     network:                # `network`, `paths` or both; a list given is never empty
//!       - cidr: 10.20.0.0/16  # IPv4 or IPv6; a bare address means /32 or /128
//!         ports: [443, "9000-9100"]   # optional, default all ports; 1..65535
//!         protocol: tcp       # tcp | udp | any (default any)
//!   - name: datasets
//!     paths: [/mnt/datasets, /data/imagenet]   # directory trees: absolute, normalised, not `/`
//!
//! workloads:                  # who is who; every selector key given must match
//!   - name: trainer           # same rules as segment names, unique
//!     mode: audit             # optional
//!     selector:
//!       cgroup: ["training/*", "jobs/**"]   # one glob or a list, relative to agent.cgroupRoot
//!       # also: namespace, podLabels {matchLabels, matchExpressions}, serviceAccount,
//!       # container, image, slurm {user, account, partition, job}, unit (see README)
//!
//! allow:                      # everything not allowed into a segment is denied
//!   - workload: trainer       # or `workloads: [a, b]`
//!     segments: [object-store]  # or `segment: name`
//!     ports: [443]            # optional narrowing of network entries, at most 4 windows
//!     protocol: tcp           # optional narrowing of network entries (default any)
//!     mode: audit             # optional
//!   - workload: trainer
//!     segment: datasets
//!     access: read            # read | read-write: required for segments with paths, else not allowed
//! ```
//!
//! **Network segments.** A destination (address, port, protocol) belongs to at most one
//! segment: the one with the longest matching prefix whose ports and protocol
//! match. Nested prefixes are fine (`10.0.0.0/8` and `10.20.0.0/16` in different
//! segments); the same prefix in two segments with overlapping ports and
//! protocols is an error. IPv4-mapped IPv6 prefixes (`::ffff:10.0.0.0/104`) are
//! treated as IPv4. A prefix may carry at most 8 (segment, port window) entries,
//! counting those inherited from covering prefixes.
//!
//! **File segments.** `paths` protect directory trees, such as datasets and model
//! weights. The agent resolves each path on the node to its (device, inode); a
//! file is matched by walking its own ancestry of (device, inode) pairs, not by
//! name, so symlinks, bind mounts and `..` cannot slip past a root. A file belongs
//! to the segment of the deepest protected root above it: with `/data` in one
//! segment and `/data/scratch` in another, `/data/scratch/x` is governed by the
//! second only. The same path twice (in one segment or two) is an error, `/` is
//! rejected (protecting it would lock the node), and there are at most 4096 paths
//! in all. Write paths normalised: absolute, no `.`, `..` or empty components,
//! no trailing `/`. Files outside every segment are not checked. Access `read`
//! allows opening for reading; `read-write` also allows writing: opening for
//! writing, truncating and appending, and, where the backend can see it
//! (BPF-LSM: yes; fanotify: opens only), creating, renaming, unlinking and
//! hard-linking entries inside the tree. One segment may have both `network`
//! and `paths`; its id is shared.
//!
//! **Workloads.** Globs match cgroup paths relative to `agent.cgroupRoot`: `*`
//! stays within one path component, `**` crosses `/`. A cgroup is identified by
//! its own path or, failing that, its nearest matching ancestor, so containers
//! nested under `training/job-1` are `trainer` too. When several workloads match
//! at the same level, the first in the file wins. A catch-all `**` matches
//! every cgroup's own path, so it beats identities inherited from ancestors;
//! use `*` to catch top-level cgroups and let their descendants inherit.
//! Unmatched cgroups are *unidentified* and never get into a segment. A leading
//! `/` is dropped (`/training/*` is `training/*`), so no glob names a path above
//! the root; a glob with a `..` component is refused, and so are an empty glob
//! (it would select the root, and by inheritance every cgroup: write `**`) and
//! `.` or empty components, which no cgroup path has.
//!
//! **Allow rules.** A rule lets its workloads reach its segments, optionally only
//! on some ports or one protocol (it must overlap what the segment covers). One
//! rule per (workload, segment) pair; list all ports in that rule. `access` is
//! required when any listed segment has paths and not allowed when none has;
//! `ports`/`protocol` need a listed segment with network entries. A rule may
//! mix both kinds: `ports`/`protocol` narrow the network part, `access` governs
//! the paths part.
//!
//! **Modes.** When a workload W is denied access to segment S (network or file),
//! the deny is enforced or only audited according to the first mode set in:
//!
//! 1. the rule for (W, S), if there is one, then W's mode, then S's mode, then the global `mode`;
//! 2. with no rule for (W, S): W's mode, then S's mode, then the global `mode`.
//!
//! Unidentified processes use S's mode, then the global one. `defaultAction: deny`
//! uses the global mode.
//!
//! Unknown keys, YAML anchors/aliases/tags and multiple documents are rejected,
//! and so are control characters other than tab and line breaks: in the file (a
//! NUL byte would end it early, silently) and in string values (a quoted
//! `"\0"`; a description may span lines). An integer too large for its field
//! is out of range, however many digits it has. Messages quote at most 60
//! characters of a value, then its length.
//! Files are limited to 8 MiB and 64 levels of nesting; at most 1000 errors are
//! listed.
//!
//! Modules: `yaml` (marked tree), `reader` + `values` + `parse` (typed
//! reading into `model`), `validate` (cross-item rules), `prefixes` +
//! `compile` (map contents), `files` (file roots, the file verdict), `select`
//! (cgroup globs).
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::settings::AgentConfig;

mod allow;
mod compile;
mod devices;
mod error;
mod file_verdict;
mod files;
mod headers_file;
mod labels;
mod model;
mod names;
mod parse;
mod parse_agent;
mod parse_events;
mod parse_selector;
mod prefixes;
mod reader;
mod select;
mod validate;
mod values;
mod yaml;

#[cfg(test)]
mod tests;

pub use compile::{CompiledPolicy, RuleInfo};
pub use devices::{DeviceSegmentSpec, device_access};
pub use error::{Loc, Origin, PolicyError, PolicyErrors};
pub use files::FileRoot;
pub use labels::{LabelOp, LabelRequirement, LabelSelector};
pub use model::{
    Access, AllowRule, DefaultAction, DevicePath, DeviceSpec, GpuSelection, MetaSelector, Mode, NameRef, NetworkEntry,
    PathEntry, Policy, PortRange, Protocol, RuleGpus, Segment, SocketKind, Workload,
};
pub use select::{Facts, Selector, SelectorSpec};

use error::Diag;

/// One config file: the daemon's `agent:` settings and the policy proper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub agent: AgentConfig,
    pub policy: Policy,
    /// Accepted, but worth a look: `warden policy check` prints them and
    /// the agent logs them at start and reload.
    pub warnings: Vec<PolicyError>,
}

/// Largest policy file accepted (keeps parsing cheap and bounded).
pub const MAX_FILE_BYTES: usize = 8 << 20;

/// Reads, parses and validates a policy file.
pub fn load_file(path: &Path) -> Result<Config, PolicyErrors> {
    let label = path.display().to_string();
    let io_error = |reason: String| {
        let mut diag = Diag::new(&label);
        diag.at(Loc::default(), "file", reason);
        diag.finish()
    };
    let file = std::fs::File::open(path).map_err(|e| io_error(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    // Read one byte past the limit to detect oversized files without reading them whole.
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| io_error(format!("cannot read: {e}")))?;
    load_bytes(&bytes, &label)
}

/// Parses and validates policy text; `file_label` is used in error messages.
pub fn load_str(text: &str, file_label: &str) -> Result<Config, PolicyErrors> {
    load_bytes(text.as_bytes(), file_label)
}

fn load_bytes(bytes: &[u8], label: &str) -> Result<Config, PolicyErrors> {
    let mut diag = Diag::new(label);
    if bytes.len() > MAX_FILE_BYTES {
        diag.at(Loc::default(), "file", format!("larger than {MAX_FILE_BYTES} bytes"));
        return Err(diag.finish());
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
            diag.at(Loc { line, column }, "file", "not valid UTF-8");
            return Err(diag.finish());
        }
    };
    if !yaml::check_chars(text, &mut diag) {
        return Err(diag.finish());
    }
    // Editors on some platforms prepend a byte order mark; it is not content.
    let root = yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(text), &mut diag);
    if root.is_none() && !diag.is_empty() {
        return Err(diag.finish()); // syntax error: nothing to read
    }
    let mut config = parse::read(root.as_ref(), &mut diag);
    validate::check(&config.policy, &mut diag);
    if !diag.is_empty() {
        return Err(diag.finish());
    }
    config.warnings = diag.take_warnings();
    config.policy.source_sha256 = hex::encode(Sha256::digest(bytes));
    Ok(config)
}

/// The `POLICY_TAG` value for a policy file's sha256 (hex): all zero,
/// which no policy matches, when there is none.
pub fn digest_tag(sha256_hex: &str) -> [u8; 32] {
    let mut tag = [0u8; 32];
    match hex::decode_to_slice(sha256_hex, &mut tag) {
        Ok(()) => tag,
        Err(_) => [0; 32],
    }
}

/// Entry point for a cargo-fuzz target: must never panic, whatever the bytes.
pub fn fuzz_parse(bytes: &[u8]) {
    if let Ok(config) = load_bytes(bytes, "fuzz") {
        let compiled = config.policy.compile();
        let labels = [("app".to_string(), "x".to_string())].into_iter().collect();
        let facts =
            Facts { namespace: Some("ml"), pod_labels: Some(&labels), slurm_job: Some(7), ..Default::default() };
        for path in ["", "a", "training/job-1/ctr", "/x/y/"] {
            let _ = compiled.workload_for(path, &Facts::default());
            let _ = compiled.workload_for(path, &facts);
        }
        for segment in 0..=3 {
            for want in [warden_common::ACCESS_READ, warden_common::ACCESS_READ | warden_common::ACCESS_WRITE] {
                let _ = compiled.file_verdict(None, segment, want);
                let _ = compiled.file_verdict(Some(1), segment, want);
            }
        }
    }
}
