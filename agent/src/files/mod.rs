//! File segments: which backend enforces them on this node, and the
//! interface the backends use to identify openers and report decisions.
//!
//! Backends, strongest first: BPF-LSM (in kernel, sees namespace ops too)
//! and fanotify permission events (userspace decision, opens only).
pub mod fanotify;
pub mod intent;
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
    pub tid: u32,
    pub workload: Option<u32>,
    pub segment: u16,
    pub path: PathBuf,
    /// Some(true) write, Some(false) read, None: not checked (irrelevant).
    pub write: Option<bool>,
    pub verdict: u8,
    pub rule: u32,
}

/// What a backend needs from the daemon.
pub trait Context: Send + Sync {
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
