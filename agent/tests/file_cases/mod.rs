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

/// What must hold after an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Refused with EPERM, the protected bytes neither read nor changed.
    Denied,
    /// It worked (the bytes were read).
    Allowed,
    /// fanotify cannot refuse it: it went through, and an `audited` event
    /// with reason `detected` and this operation names it.
    Detected(&'static str),
}

/// One way a workload might get around a segment. `args` are paths under
/// the test base, except literals starting with `@` (passed without it).
#[derive(Debug, Clone, Copy)]
pub struct Attack {
    pub name: &'static str,
    pub who: Who,
    pub op: &'static str,
    pub args: &'static [&'static str],
    /// A protected file whose bytes must be unchanged afterwards ("" none).
    pub guard: &'static str,
    pub lsm: Expect,
    pub fanotify: Expect,
}

const fn attack(
    name: &'static str,
    who: Who,
    op: &'static str,
    args: &'static [&'static str],
    guard: &'static str,
    lsm: Expect,
    fanotify: Expect,
) -> Attack {
    Attack { name, who, op, args, guard, lsm, fanotify }
}

use Expect::*;

/// Protected files the attacks use (content: `SECRET:<path>`), and a
/// hard link to one made before the agent starts.
pub const ATTACK_FILES: &[&str] = &[
    "data/a-shadow",
    "data/a-ov",
    "data/ovu/g",
    "data/a-ren",
    "data/a-lnk",
    "data/a-pre",
    "data/a-race",
    "data/a-trunc",
    "data/a-meta",
    "data/a-ro",
    "data/mv/f",
    "data/mv2/f",
    "data/a-root",
];
pub const ATTACK_DIRS: &[&str] = &["outside/decoy", "outside/ov", "outside/ov-ns", "outside/ovu"];
/// (existing protected file, link made outside before the agent starts)
pub const PRE_LINK: (&str, &str) = ("data/a-pre", "outside/pre-hl");

pub const ATTACKS: &[Attack] = &[
    // Mount namespaces: the tree bound over an unprotected decoy of the
    // same name, as root and as uid 65534 in a user namespace.
    attack(
        "other: shadow bind, root",
        Who::Other,
        "shadow-read",
        &["data", "outside/decoy", "@root", "@a-shadow"],
        "",
        Denied,
        Denied,
    ),
    attack(
        "other: shadow bind, userns",
        Who::Other,
        "shadow-read",
        &["data", "outside/decoy", "@userns", "@a-shadow"],
        "",
        Denied,
        Denied,
    ),
    attack(
        "reader: append via shadow",
        Who::Reader,
        "shadow-append",
        &["data", "outside/decoy", "@root", "@a-shadow"],
        "data/a-shadow",
        Denied,
        Denied,
    ),
    attack(
        "reader: reads via shadow, userns",
        Who::Reader,
        "shadow-read",
        &["data", "outside/decoy", "@userns", "@a-shadow"],
        "",
        Allowed,
        Allowed,
    ),
    // overlayfs with the tree as lower layer, and a tree dir as upper.
    attack(
        "other: overlay lower",
        Who::Other,
        "overlay-lower-read",
        &["data", "outside/ov", "@a-ov", "@root"],
        "",
        Denied,
        Denied,
    ),
    attack(
        "other: overlay lower, userns",
        Who::Other,
        "overlay-lower-read",
        &["data", "outside/ov-ns", "@a-ov", "@userns"],
        "",
        Denied,
        Denied,
    ),
    attack(
        "reader: append via overlay upper",
        Who::Reader,
        "overlay-upper",
        &["data/ovu", "outside/ovu", "@g", "@append"],
        "data/ovu/g",
        Denied,
        Denied,
    ),
    // Another root: chroot, and pivot_root in a mount namespace of its own.
    attack("other: chroot, read", Who::Other, "chroot-read", &[".", "@/data/a-root", "@root"], "", Denied, Denied),
    attack("other: chroot, userns", Who::Other, "chroot-read", &[".", "@/data/a-root", "@userns"], "", Denied, Denied),
    attack(
        "other: pivot_root, userns",
        Who::Other,
        "pivot-read",
        &[".", "@/data/a-root", "@userns"],
        "",
        Denied,
        Denied,
    ),
    attack(
        "reader: pivot_root, userns, still reads",
        Who::Reader,
        "pivot-read",
        &[".", "@/data/a-root", "@userns"],
        "",
        Allowed,
        Allowed,
    ),
    // Names outside the tree: renamed out, linked out, linked before start.
    attack("other: rename out, read", Who::Other, "rename-read", &["data/a-ren", "outside/a-ren"], "", Denied, Denied),
    attack("other: link out, read", Who::Other, "link-read", &["data/a-lnk", "outside/a-lnk"], "", Denied, Denied),
    attack(
        "other: moves a directory out, reads in it",
        Who::Other,
        "rename-read-in",
        &["data/mv", "outside/mv", "@f"],
        "",
        Denied,
        Denied,
    ),
    attack(
        "writer: moves a directory out, reads in it",
        Who::Writer,
        "rename-read-in",
        &["data/mv2", "outside/mv2", "@f"],
        "",
        Denied,
        Allowed,
    ),
    attack("other: old hard link", Who::Other, "read-bytes", &["outside/pre-hl"], "", Denied, Denied),
    attack(
        "reader: append via old hard link",
        Who::Reader,
        "append-bytes",
        &["outside/pre-hl"],
        "data/a-pre",
        Denied,
        Denied,
    ),
    // Access mode: racing openat2 flags; opens whose flags sit in memory.
    attack(
        "reader: openat2 flag race",
        Who::Reader,
        "openat2-race",
        &["data/a-race", "@3000"],
        "data/a-race",
        Denied,
        Denied,
    ),
    attack("reader: openat2 read-only", Who::Reader, "openat2-read", &["data/a-ro"], "", Allowed, Denied),
    attack("reader: io_uring read-only open", Who::Reader, "uring-read", &["data/a-ro"], "", Allowed, Denied),
    attack("other: io_uring open", Who::Other, "uring-read", &["data/a-ro"], "", Denied, Denied),
    // What fanotify cannot refuse: seen, reported.
    attack(
        "reader: truncate(2) by path",
        Who::Reader,
        "truncate-path",
        &["data/a-trunc"],
        "data/a-trunc",
        Denied,
        Detected("modify"),
    ),
    attack("other: chmod", Who::Other, "chmod", &["data/a-meta"], "", Denied, Detected("setattr")),
    attack("other: utimes", Who::Other, "utimes", &["data/a-meta"], "", Denied, Detected("setattr")),
];

/// The content of an attack file.
pub fn secret(rel: &str) -> String {
    format!("SECRET:{rel}")
}

/// Judges an attack's outcome by what moved: `code` and `output` are the
/// probe's, `guard_changed` whether the guarded file's bytes changed.
/// `Detected` is judged by the caller (it needs the agent's events).
pub fn judge(a: &Attack, expect: Expect, code: i32, output: &str, guard_changed: bool) -> Result<(), String> {
    let leaked = output.contains("read:SECRET") || output.contains("wrote");
    if guard_changed && expect == Expect::Denied {
        return Err(format!("{} changed ({output:?})", a.guard));
    }
    match expect {
        Expect::Denied if a.op == "openat2-race" => {
            let line = output.lines().next().unwrap_or_default();
            let ok = line.contains("\"writable\":0,") && line.contains("\"wrote\":false");
            if ok { Ok(()) } else { Err(format!("writable descriptors: {line}")) }
        }
        Expect::Denied if code != 2 || leaked => {
            Err(format!("expected EPERM with nothing moved, got exit {code}: {output:?}"))
        }
        Expect::Allowed if code != 0 || !output.contains("read:SECRET") => {
            Err(format!("expected the read, got exit {code}: {output:?}"))
        }
        Expect::Detected(_) if code != 0 => {
            Err(format!("expected it to go through (fanotify cannot refuse it), got exit {code}: {output:?}"))
        }
        _ => Ok(()),
    }
}

/// An attack's arguments: paths under `base`, `@` literals as they are.
pub fn attack_args(a: &Attack, base: &std::path::Path) -> Vec<String> {
    a.args
        .iter()
        .map(|s| match s.strip_prefix('@') {
            Some(lit) => lit.to_string(),
            None => base.join(s).to_string_lossy().into_owned(),
        })
        .collect()
}

/// Makes the attack table's files under `base`, before the agent starts (a
/// hard link made then must be found by the agent's scan of the tree).
pub fn make_attack_files(base: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for d in ATTACK_DIRS.iter().chain(&["data/ovu", "data/mv", "data/mv2"]) {
        std::fs::create_dir_all(base.join(d)).unwrap();
        // Scratch dirs are used by uid 65534 in a user namespace too.
        std::fs::set_permissions(base.join(d), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for f in ATTACK_FILES {
        std::fs::write(base.join(f), secret(f)).unwrap();
    }
    std::fs::write(base.join("outside/decoy/a-shadow"), "decoy").unwrap();
    std::fs::hard_link(base.join(PRE_LINK.0), base.join(PRE_LINK.1)).unwrap();
}
