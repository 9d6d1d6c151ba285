//! Identity enrichment: kernel record + cgroup identity + process details
//! → a `DecisionEvent` ready for the sinks.
pub mod event;
pub mod time;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use warden_common::{
    AF_INET, FileEvent, NetEvent, OP_CONNECT, PROTO_TCP, PROTO_UDP, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED,
    WORKLOAD_UNIDENTIFIED,
};

pub use event::{DecisionEvent, Destination, FileTarget};

use crate::{
    files::FileDecision,
    identity::{CgroupTracker, process::ExeCache},
    policy::CompiledPolicy,
    ringbuf::decode::c_string,
};

/// Workload label of cgroups that are known but match no workload.
pub const UNMATCHED: &str = "(unmatched)";
/// Workload label of cgroups the agent has not resolved (yet).
pub const UNRESOLVED: &str = "(unresolved)";

pub struct Enricher {
    node: String,
    exe: ExeCache,
    threads: std::collections::HashMap<u32, (ProcInfo, std::time::Instant)>,
    clock: time::WallClock,
    seq: u64,
}

impl Enricher {
    pub fn new(node: String) -> Self {
        Self { node, exe: ExeCache::default(), threads: Default::default(), clock: time::WallClock::new(), seq: 0 }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn network(&mut self, ev: &NetEvent, cgroups: &CgroupTracker, policy: &CompiledPolicy) -> DecisionEvent {
        self.seq += 1;
        let (workload, identity) = identity_of(ev.workload_id, ev.cgroup_id, cgroups, policy);
        let address = if ev.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(ev.daddr[0], ev.daddr[1], ev.daddr[2], ev.daddr[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(ev.daddr))
        };
        DecisionEvent {
            time: self.clock.format(ev.ktime_ns),
            seq: self.seq,
            node: self.node.clone(),
            kind: "network",
            workload,
            identity,
            cgroup_id: Some(ev.cgroup_id),
            cgroup: cgroups.abs_path(ev.cgroup_id).map(|p| p.display().to_string()),
            pid: ev.pid,
            tgid: ev.tgid,
            comm: c_string(&ev.comm),
            exe: self.exe.exe(ev.tgid),
            operation: if ev.op == OP_CONNECT { "connect" } else { "sendmsg" },
            protocol: Some(match ev.proto {
                PROTO_TCP => "tcp",
                PROTO_UDP => "udp",
                _ => "other",
            }),
            destination: Some(Destination { address: address.to_string(), port: ev.dport }),
            file: None,
            segment: policy.segment_name(ev.segment_id).map(str::to_string),
            verdict: verdict_name(ev.verdict),
            rule: policy.rule_label(ev.rule_id).map(str::to_string),
            backend: None,
        }
    }

    /// A file decision of the in-kernel backend (BPF-LSM). Dentry names are
    /// appended to the matched root's configured path (`root_index` indexes
    /// `policy.files`), since names in the kernel are filesystem-relative.
    pub fn kernel_file(&mut self, ev: &FileEvent, cgroups: &CgroupTracker, policy: &CompiledPolicy) -> DecisionEvent {
        self.seq += 1;
        let (workload, identity) = identity_of(ev.workload_id, ev.cgroup_id, cgroups, policy);
        let mut path =
            policy.files.get(ev.root_index as usize).map(|r| r.path.display().to_string()).unwrap_or_default();
        if ev.truncated != 0 {
            path.push_str("/…");
        }
        let n = (ev.components as usize).min(ev.names.len());
        for name in ev.names[..n].iter().rev() {
            path.push('/');
            path.push_str(&c_string(name));
        }
        DecisionEvent {
            time: self.clock.format(ev.ktime_ns),
            seq: self.seq,
            node: self.node.clone(),
            kind: "file",
            workload,
            identity,
            cgroup_id: Some(ev.cgroup_id),
            cgroup: cgroups.abs_path(ev.cgroup_id).map(|p| p.display().to_string()),
            pid: ev.pid,
            tgid: ev.tgid,
            comm: c_string(&ev.comm),
            exe: self.exe.exe(ev.tgid),
            operation: file_op_name(ev.op),
            protocol: None,
            destination: None,
            file: Some(FileTarget { path, access: if ev.write != 0 { "write" } else { "read" } }),
            segment: policy.segment_name(ev.segment_id).map(str::to_string),
            verdict: verdict_name(ev.verdict),
            rule: policy.rule_label(ev.rule_id).map(str::to_string),
            backend: Some("lsm"),
        }
    }

    /// Process details of a userspace backend's decision, read from /proc
    /// *without* holding any agent lock (cached per thread briefly).
    pub fn file_proc(&mut self, d: &FileDecision) -> ProcInfo {
        let now = std::time::Instant::now();
        if let Some((info, at)) = self.threads.get(&d.tid)
            && now.duration_since(*at) < std::time::Duration::from_secs(1)
        {
            return info.clone();
        }
        let tgid = crate::files::tgid_of(d.tid as i32).unwrap_or(0) as u32;
        let info = ProcInfo {
            tgid,
            comm: std::fs::read_to_string(format!("/proc/{}/comm", d.tid)).unwrap_or_default().trim_end().to_string(),
            cgroup: crate::files::cgroup_path_of(d.tid as i32),
            exe: self.exe.exe(tgid),
        };
        if self.threads.len() >= 8192 {
            self.threads.clear();
        }
        self.threads.insert(d.tid, (info.clone(), now));
        info
    }

    /// A file decision from a userspace backend (fanotify).
    pub fn file(
        &mut self,
        d: &FileDecision,
        p: ProcInfo,
        policy: &CompiledPolicy,
        backend: &'static str,
    ) -> DecisionEvent {
        self.seq += 1;
        let (workload, identity) = match d.workload {
            Some(id) => (policy.workload_name(id).unwrap_or("(stale)").to_string(), "matched"),
            None => (UNMATCHED.to_string(), "unmatched"),
        };
        DecisionEvent {
            time: self.clock.format(crate::identity::delay::monotonic_ns()),
            seq: self.seq,
            node: self.node.clone(),
            kind: "file",
            workload,
            identity,
            cgroup_id: None,
            cgroup: p.cgroup,
            pid: d.tid,
            tgid: p.tgid,
            comm: p.comm,
            exe: p.exe,
            operation: "open",
            protocol: None,
            destination: None,
            file: Some(FileTarget {
                path: d.path.to_string_lossy().into_owned(),
                access: match d.write {
                    Some(true) => "write",
                    Some(false) => "read",
                    None => "any",
                },
            }),
            segment: policy.segment_name(d.segment).map(str::to_string),
            verdict: verdict_name(d.verdict),
            rule: policy.rule_label(d.rule).map(str::to_string),
            backend: Some(backend),
        }
    }
}

/// Who made a userspace-decided file access.
#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    pub tgid: u32,
    pub comm: String,
    pub cgroup: Option<String>,
    pub exe: Option<String>,
}

/// Workload label and identity state of a kernel record.
fn identity_of(
    workload_id: u32,
    cgroup_id: u64,
    cgroups: &CgroupTracker,
    policy: &CompiledPolicy,
) -> (String, &'static str) {
    if workload_id != WORKLOAD_UNIDENTIFIED {
        (policy.workload_name(workload_id).unwrap_or("(stale)").to_string(), "matched")
    } else if cgroups.get(cgroup_id).is_some() {
        (UNMATCHED.to_string(), "unmatched")
    } else {
        (UNRESOLVED.to_string(), "unresolved")
    }
}

pub fn file_op_name(op: u8) -> &'static str {
    use warden_common::*;
    match op {
        FOP_OPEN => "open",
        FOP_CREATE => "create",
        FOP_UNLINK => "unlink",
        FOP_RENAME => "rename",
        FOP_LINK => "link",
        FOP_TRUNCATE => "truncate",
        FOP_MKDIR => "mkdir",
        FOP_RMDIR => "rmdir",
        _ => "unknown",
    }
}

pub fn verdict_name(v: u8) -> &'static str {
    match v {
        VERDICT_ALLOWED => "allowed",
        VERDICT_DENIED => "denied",
        VERDICT_AUDITED => "audited",
        _ => "unknown",
    }
}
