//! `warden probe`: what this node can enforce, checked for real (program
//! types loaded into this kernel, the fanotify class the file fallback
//! needs, bpffs for restart safety), and therefore which segment kinds a
//! policy can rely on here. The agent refuses to start in enforce mode when
//! a kind it needs is missing; this tells an operator before that.
use std::path::Path;

use aya::programs::ProgramType;
use serde::{Deserialize, Serialize};

use crate::{
    report::words,
    system::{kernel, mountinfo, mounts},
};

/// One line of the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// How one kind of segment is enforced on this node, in the words `warden
/// status` uses for it (`report::words`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentKind {
    pub kind: String,
    /// enforced | partial | unavailable
    pub state: String,
    pub enforced: bool,
    /// Enforced, but some ways around it cannot be closed on this node
    /// (listed in `notes`).
    #[serde(default)]
    pub partial: bool,
    pub backend: String,
    /// What happens while the agent restarts or is down.
    pub restart: String,
    /// Why, and what is not enforced.
    pub notes: Vec<String>,
}

impl SegmentKind {
    fn new(kind: &str, enforced: bool, partial: bool, backend: &str, restart: &str, notes: Vec<String>) -> Self {
        SegmentKind {
            kind: kind.into(),
            state: words::capability_state(enforced, partial).into(),
            enforced,
            partial,
            backend: backend.into(),
            restart: if enforced { restart.into() } else { String::new() },
            notes,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub kernel: String,
    pub active_lsms: Vec<String>,
    pub checks: Vec<Check>,
    pub segments: Vec<SegmentKind>,
}

fn check(name: &str, r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check { name: name.into(), ok: true, detail },
        Err(detail) => Check { name: name.into(), ok: false, detail },
    }
}

fn program_type(ty: ProgramType, what: &str) -> Result<String, String> {
    match aya::sys::is_program_supported(ty) {
        Ok(true) => Ok(format!("{what}: loads")),
        Ok(false) => Err(format!("{what}: the kernel refuses this program type")),
        Err(e) => Err(format!("{what}: the kernel refused a test program ({})", crate::system::error_chain(&e))),
    }
}

/// Runs every check (root needed: programs are loaded into the kernel).
pub fn probe() -> Report {
    let _ = mounts::ensure_all();
    let securityfs = mounts::ensure("securityfs", "none", mounts::SECURITYFS).is_ok();
    let active_lsms = if securityfs { crate::files::active_lsms() } else { Vec::new() };
    let btf = kernel::require_btf().map(|_| kernel::BTF_PATH.to_string()).map_err(|e| e.to_string());
    let mounts = mountinfo::current().unwrap_or_default();
    let cgroup2 = mountinfo::cgroup2(&mounts)
        .map(|m| m.mount_point.display().to_string())
        .ok_or_else(|| "no cgroup2 mount (hooks attach to cgroup v2)".to_string());
    let bpffs = bpffs_writable(Path::new(mounts::BPFFS), &mounts);
    let sock_addr = program_type(ProgramType::CgroupSockAddr, "BPF_PROG_TYPE_CGROUP_SOCK_ADDR");
    let skb = program_type(ProgramType::CgroupSkb, "BPF_PROG_TYPE_CGROUP_SKB (egress backstop)");
    let sock = program_type(ProgramType::CgroupSock, "BPF_PROG_TYPE_CGROUP_SOCK (raw socket creation)");
    let lsm_socket = crate::files::require_bpf_lsm().and_then(|_| {
        program_type(ProgramType::Lsm(aya::programs::LsmAttachType::Mac), "BPF_PROG_TYPE_LSM (packet socket creation)")
    });
    let device = program_type(ProgramType::CgroupDevice, "BPF_PROG_TYPE_CGROUP_DEVICE");
    let tracepoint = program_type(ProgramType::TracePoint, "BPF_PROG_TYPE_TRACEPOINT");
    let lsm = lsm_usable().and_then(|detail| Ok((detail, lsm_limits()?)));
    let fanotify = crate::files::fanotify::sys::Group::new()
        .map(|_| "FAN_CLASS_CONTENT (open permission events)".to_string())
        .map_err(|e| format!("fanotify_init(FAN_CLASS_CONTENT): {e}"));

    let pinned = match (&bpffs, mounts::on_hosts_bpffs(Path::new(mounts::BPFFS))) {
        (Err(_), _) => words::RESTART_UNPINNED,
        (Ok(_), Ok(true)) => words::RESTART_PINNED,
        (Ok(_), _) => words::RESTART_POD_BPFFS,
    };
    let base = btf.is_ok() && cgroup2.is_ok() && tracepoint.is_ok();
    let mut network_gaps = Vec::new();
    for (r, what) in [
        (&skb, "raw and ICMP packets and the unspecified address are not judged"),
        (&sock, "raw sockets cannot be refused"),
        (&lsm_socket, "packet sockets (AF_PACKET) cannot be refused; deny pods CAP_NET_RAW to close this"),
    ] {
        if let Err(why) = r {
            network_gaps.push(format!("{what}: {why}"));
        }
    }
    let mut segments = vec![
        SegmentKind::new(
            "network",
            base && sock_addr.is_ok(),
            !network_gaps.is_empty(),
            words::NETWORK_BACKEND,
            pinned,
            network_gaps,
        ),
        SegmentKind::new("devices", base && device.is_ok(), false, words::DEVICES_BACKEND, pinned, vec![]),
    ];
    let files = match (&lsm, &fanotify) {
        // Partial where this kernel's verifier takes only the one-walk
        // variants, exactly as the agent will say.
        (Ok((_, limits)), _) => {
            SegmentKind::new("files", base, !limits.is_empty(), words::FILES_LSM, pinned, limits.clone())
        }
        // Opens are blocked; the rest is only detected: as status says.
        (Err(why), Ok(_)) => SegmentKind::new(
            "files",
            base,
            true,
            words::FILES_FANOTIFY,
            words::RESTART_KEEPER,
            vec![
                format!("BPF-LSM: {why}"),
                "opens only: create, rename, unlink, link, chmod/chown/utimes/xattr, truncate(2), mkdir/rmdir are \
                 detected (events), not blocked; openat2 and io_uring opens by read-only workloads are denied"
                    .into(),
                ptrace_scope(),
            ],
        ),
        (Err(a), Err(b)) => {
            SegmentKind::new("files", false, false, "none", "", vec![format!("BPF-LSM: {a}"), format!("fanotify: {b}")])
        }
    };
    segments.insert(1, files);
    Report {
        kernel: kernel::release(),
        active_lsms,
        checks: vec![
            check("BTF", btf),
            check("cgroup v2", cgroup2),
            check("bpffs (restart safety)", bpffs),
            check("hook: cgroup sock_addr", sock_addr),
            check("hook: cgroup_skb", skb),
            check("hook: cgroup/sock_create", sock),
            check("hook: BPF-LSM socket_create", lsm_socket),
            check("hook: cgroup/dev", device),
            check("hook: tracepoint", tracepoint),
            check("hook: BPF-LSM", lsm.map(|(detail, _)| detail)),
            check("fanotify permission events", fanotify),
        ],
        segments,
    }
}

/// BPF-LSM needs `bpf` among the active LSMs, a kernel that loads LSM
/// programs, and the struct offsets the file hooks read from BTF.
/// What keeps one workload from reading another's memory (and so the
/// datasets it has mapped) where BPF-LSM cannot refuse it: Yama.
fn ptrace_scope() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").map(|s| s.trim().to_string()) {
        Ok(v) if v != "0" => format!("other processes' memory: Yama ptrace_scope={v} (only ancestors or admins)"),
        Ok(v) => format!(
            "other processes' memory: Yama ptrace_scope={v}: a workload may read a same-user process's memory (set 1)"
        ),
        Err(_) => "other processes' memory: Yama absent: a workload may read a same-user process's memory".into(),
    }
}

fn lsm_usable() -> Result<String, String> {
    crate::files::require_bpf_lsm()?;
    program_type(ProgramType::Lsm(aya::programs::LsmAttachType::Mac), "BPF_PROG_TYPE_LSM")?;
    crate::hooks::btf::file_offsets().map_err(|e| format!("kernel BTF lacks a needed offset: {e}"))?;
    Ok("BPF_PROG_TYPE_LSM loads; `bpf` is an active LSM; file struct offsets found in BTF".into())
}

/// What the file hooks give up on this kernel: they are loaded for real
/// (not attached), into a throwaway instance, as the agent loads them.
fn lsm_limits() -> Result<Vec<String>, String> {
    use crate::hooks::{Hooks, pins};
    let bpffs = Path::new(mounts::BPFFS);
    let root = format!("warden-probe-{}", std::process::id());
    let p = pins::Pins::open(bpffs, &root).map_err(|e| format!("bpffs: {e}"))?;
    let limits = Hooks::load(256 * 1024, (0, 0), p)
        .map_err(|e| crate::system::error_chain(&e))
        .and_then(|mut hooks| hooks.verify_lsm().map(<[String]>::to_vec));
    let _ = pins::uninstall(bpffs, Some(&pins::instance_name(&root)), false);
    limits.map_err(|e| format!("the file hooks do not load: {e}"))
}

fn bpffs_writable(dir: &Path, mounts: &[mountinfo::Mount]) -> Result<String, String> {
    if !mounts.iter().any(|m| m.mount_point == dir && m.fstype == "bpf") {
        return Err(format!("no bpffs at {}: programs cannot outlive the agent", dir.display()));
    }
    let test = dir.join(format!("warden-probe-{}", std::process::id()));
    std::fs::create_dir(&test)
        .and_then(|_| std::fs::remove_dir(&test))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(format!("{} (pins survive agent restarts)", dir.display()))
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "kernel {}; active LSMs: {}", self.kernel, self.active_lsms.join(","))?;
        writeln!(f, "\nCHECK                          RESULT")?;
        for c in &self.checks {
            writeln!(f, "  {:<29}{:<4} {}", c.name, if c.ok { "yes" } else { "NO" }, c.detail)?;
        }
        writeln!(f, "\nSEGMENT KIND   STATE        BACKEND")?;
        for s in &self.segments {
            writeln!(f, "  {:<13}{:<13}{}", s.kind, s.state, s.backend)?;
            if !s.restart.is_empty() {
                writeln!(f, "  {:<26}restart: {}", "", s.restart)?;
            }
            for n in &s.notes {
                writeln!(f, "  {:<26}{n}", "")?;
            }
        }
        Ok(())
    }
}
