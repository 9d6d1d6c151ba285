//! One table of file-segment cases, run on the host (fanotify backend) and
//! in QEMU VMs (BPF-LSM backend) with the same expectations.
//!
//! Layout under the test base directory: `data/` is the protected tree
//! (segment `datasets`), `outside/` is not protected, `outside/link` is a
//! symlink to `data`.
#![allow(dead_code)]

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// `access: read`
    Reader,
    /// `access: read-write`
    Writer,
    /// a workload with no rule for the segment
    Other,
    /// a cgroup no workload selects
    Unidentified,
}

#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub who: Who,
    /// warden-fileprobe operation
    pub op: &'static str,
    pub path: &'static str,
    pub second: &'static str,
    pub denied: bool,
    /// Only a backend that sees namespace operations (BPF-LSM) can block it;
    /// on fanotify nodes the case must pass through and status must say so.
    pub namespace_op: bool,
}

const fn case(name: &'static str, who: Who, op: &'static str, path: &'static str, denied: bool) -> Case {
    Case { name, who, op, path, second: "", denied, namespace_op: false }
}

const fn ns(name: &'static str, who: Who, op: &'static str, path: &'static str, second: &'static str) -> Case {
    Case { name, who, op, path, second, denied: true, namespace_op: true }
}

/// Files each case needs, created before the agent starts.
pub const FILES: &[&str] = &[
    "data/f",
    "data/f-w",
    "data/f-a",
    "data/f-t",
    "data/f-u",
    "data/f-r",
    "data/f-l",
    "data/sub/g",
    "data/f-ww",
    "outside/o",
];
pub const DIRS: &[&str] = &["data/sub", "data/empty", "outside"];

pub const CASES: &[Case] = &[
    case("reader reads", Who::Reader, "read", "data/f", false),
    case("reader reads nested", Who::Reader, "read", "data/sub/g", false),
    case("reader reads through a symlink from outside", Who::Reader, "read", "outside/link/f", false),
    case("reader cannot open for write", Who::Reader, "write", "data/f-w", true),
    case("reader cannot append", Who::Reader, "append", "data/f-a", true),
    case("reader cannot truncate on open", Who::Reader, "trunc", "data/f-t", true),
    case("reader cannot create", Who::Reader, "create", "data/new-by-reader", true),
    ns("reader cannot unlink", Who::Reader, "unlink", "data/f-u", ""),
    ns("reader cannot rename", Who::Reader, "rename", "data/f-r", "data/f-r2"),
    ns("reader cannot hard-link out of the tree", Who::Reader, "link", "data/f-l", "outside/hl"),
    ns("reader cannot mkdir", Who::Reader, "mkdir", "data/newdir", ""),
    ns("reader cannot rmdir", Who::Reader, "rmdir", "data/empty", ""),
    case("writer reads", Who::Writer, "read", "data/f", false),
    case("writer writes", Who::Writer, "write", "data/f-ww", false),
    case("writer creates", Who::Writer, "create", "data/new-by-writer", false),
    case("other cannot read", Who::Other, "read", "data/f", true),
    case("other cannot read through a symlink", Who::Other, "read", "outside/link/f", true),
    case("other cannot read nested", Who::Other, "read", "data/sub/g", true),
    case("unidentified cannot read", Who::Unidentified, "read", "data/f", true),
    case("other reads outside the segment", Who::Other, "read", "outside/o", false),
    case("other writes outside the segment", Who::Other, "write", "outside/o", false),
];

/// The policy the cases assume; `base` is the test directory.
pub fn policy(base: &str, mode: &str) -> String {
    format!(
        r#"version: 1
mode: {mode}
segments:
  - name: datasets
    paths: ["{base}/data"]
workloads:
  - name: reader
    selector: {{ cgroup: "reader/*" }}
  - name: writer
    selector: {{ cgroup: "writer/*" }}
  - name: other
    selector: {{ cgroup: "other/*" }}
allow:
  - workload: reader
    segment: datasets
    access: read
  - workload: writer
    segment: datasets
    access: read-write
"#
    )
}

/// cgroup (relative to the agent's root) a case's process runs in.
pub fn cgroup_of(who: Who) -> &'static str {
    match who {
        Who::Reader => "reader/job",
        Who::Writer => "writer/job",
        Who::Other => "other/job",
        Who::Unidentified => "stranger",
    }
}
