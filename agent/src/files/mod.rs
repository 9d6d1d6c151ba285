//! File segments: which backend enforces them on this node, and the
//! interface the backends use to identify openers and report decisions.
//!
//! Backends, strongest first: BPF-LSM (in kernel, sees namespace ops too)
//! and fanotify permission events (userspace decision, opens only).
pub mod escaped;
pub mod fanotify;
pub mod intent;
pub mod locate;
pub mod procfs;
pub mod roots;

use std::{path::PathBuf, sync::Arc};

use self::roots::Roots;

/// Who opened: governed by this agent (with a workload or unidentified),
/// or outside the agent's cgroup root (not governed, like network hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Outside,
    Governed(Option<u32>),
}

/// One decision on a protected path, for events and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDecision {
    /// `FOP_*`
    pub op: u8,
    pub tid: u32,
    pub workload: Option<u32>,
    /// 0 when the file's place is unknown (`reason` says why).
    pub segment: u16,
    /// Index of the matched root in the policy's root list.
    pub root: u16,
    pub path: PathBuf,
    /// Some(true) write, Some(false) read, None: not checked (irrelevant).
    pub write: Option<bool>,
    pub verdict: u8,
    pub rule: u32,
    /// `FILE_REASON_*`
    pub reason: u8,
    /// Who opened, read while the opener was still blocked (denied and
    /// audited decisions; others are read when the event is written).
    pub opener: Option<Opener>,
}

/// A blocked opener's process, read from /proc before it is answered: a
/// short-lived one may be gone by the time the event is written. A field
/// that could not be read is `None`, never 0 or "".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opener {
    pub tgid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
}

impl Opener {
    /// Reads thread `tid`'s process details (cgroup as given, if read).
    pub fn read(proc: &procfs::Proc, tid: i32, cgroup: Option<&str>) -> Self {
        let tgid = proc.tgid(tid);
        let mut buf = [0u8; 64];
        let comm = proc
            .read(tid, "comm", &mut buf)
            .map(|c| String::from_utf8_lossy(c).trim_end().to_string())
            .filter(|c| !c.is_empty());
        let exe = tgid
            .and_then(|t| std::fs::read_link(format!("/proc/{t}/exe")).ok())
            .map(|p| p.to_string_lossy().into_owned());
        Self { tgid, comm, exe, cgroup: cgroup.map(str::to_string) }
    }
}

/// What a backend needs from the daemon.
pub trait Context: Send + Sync {
    /// Where the file behind `fd` (the agent's own descriptor) is.
    fn locate(&self, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<locate::Place>;
    /// Files recorded as protected after leaving their tree so far.
    fn escapes(&self) -> u64 {
        0
    }
    /// Applies the changes queued so far (renames, links out).
    fn settle(&self) {}
    /// Whether a decision with `verdict` becomes an event of its own (else
    /// it is only counted into a summary, and needs no path).
    fn named(&self, verdict: u8) -> bool {
        let _ = verdict;
        true
    }
    /// The path an event names for `d`, from the walk last made in `slot`.
    fn path_of(&self, d: &FileDecision, slot: u32) -> PathBuf;
    /// The path an event names for `d`, walking `fd` again with its names.
    fn path_of_fd(&self, d: &FileDecision, fd: std::os::fd::BorrowedFd<'_>) -> PathBuf {
        let _ = fd;
        self.path_of(d, locate::SLOT_DECISIONS)
    }
    /// Identity of a thread from its cgroup v2 path (None: unreadable).
    fn identify_path(&self, cgroup: Option<&str>) -> Identity;
    fn verdict(&self, workload: Option<u32>, segment: u16, want: u8) -> (u8, u32);
    /// Whether the verdict depends on read vs write (a read-only grant);
    /// otherwise the opener's intent need not be read.
    fn needs_intent(&self, workload: Option<u32>, segment: u16) -> bool;
    fn roots(&self) -> Arc<Roots>;
    /// Changes after a reload has swapped roots and policy: a decision
    /// that saw it change may mix the two and is made again.
    fn policy_generation(&self) -> u64;
    fn emit(&self, decision: FileDecision);
    fn note_error(&self);
    fn backend_failed(&self, reason: String);
}

/// The path an event names: the matched root's configured path, then the
/// names the kernel walk collected below it (file first in `names`), with
/// `/…` where levels were left out.
pub fn event_path(
    root: &str,
    components: u8,
    truncated: u8,
    names: &[[u8; warden_common::FILE_EVENT_NAME_LEN]],
) -> String {
    let mut path = root.to_string();
    if truncated != 0 {
        path.push_str("/…");
    }
    let n = (components as usize).min(names.len());
    for name in names[..n].iter().rev() {
        path.push('/');
        path.push_str(&crate::ringbuf::decode::c_string(name));
    }
    path
}

/// The event word for a `FILE_REASON_*`.
pub fn reason_name(reason: u8) -> Option<&'static str> {
    use warden_common::*;
    match reason {
        FILE_REASON_DISCONNECTED => Some("disconnected"),
        FILE_REASON_TOO_DEEP => Some("too deep"),
        FILE_REASON_ESCAPED => Some("escaped"),
        FILE_REASON_MODE_UNKNOWN => Some("mode unknown"),
        FILE_REASON_DETECTED => Some("detected"),
        _ => None,
    }
}

/// Active LSMs, from securityfs (mounted by the agent when missing).
pub fn active_lsms() -> Vec<String> {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|s| s.trim().split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// `Ok(active LSMs)` when `bpf` is one of them (BPF-LSM programs can run);
/// otherwise the reason, naming what to boot with.
pub fn require_bpf_lsm() -> Result<Vec<String>, String> {
    let active = active_lsms();
    if active.iter().any(|l| l == "bpf") {
        Ok(active)
    } else {
        Err(format!("`bpf` is not an active LSM (active: {}); boot with lsm=...,bpf", active.join(",")))
    }
}
