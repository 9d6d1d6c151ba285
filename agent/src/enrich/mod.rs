//! Identity enrichment: kernel record + cgroup identity + process details
//! → a `DecisionEvent` ready for the sinks.
pub mod event;
pub mod seq;
pub mod summary;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use warden_common::{
    AF_INET, DecisionHeader, FileEvent, NetEvent, OP_CONNECT, OP_PACKET, OP_SOCKET, PROTO_TCP, PROTO_UDP,
    VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED, WORKLOAD_UNIDENTIFIED,
};

pub use event::{
    DecisionEvent, Destination, DeviceTarget, Event, FileTarget, GpuAssignmentEvent, LossEvent, Name, Numbering,
    Outcome, PolicyEvent, SummaryEvent, TamperEvent,
};

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

/// The placeholders as shared names: one allocation, not one per event.
static UNMATCHED_NAME: std::sync::LazyLock<Name> = std::sync::LazyLock::new(|| Name::from(UNMATCHED));
static UNRESOLVED_NAME: std::sync::LazyLock<Name> = std::sync::LazyLock::new(|| Name::from(UNRESOLVED));

fn unmatched() -> Name {
    UNMATCHED_NAME.clone()
}

pub struct Enricher {
    pub(crate) node: Name,
    exe: ExeCache,
    /// Cgroup id → (relative path it was built from, absolute path).
    cgroup_paths: std::collections::HashMap<u64, (String, Name)>,
    threads: std::collections::HashMap<u32, (ProcInfo, std::time::Instant)>,
    /// /proc reader for userspace-backend events (None if /proc is unusable).
    proc: Option<crate::files::procfs::Proc>,
    pub(crate) clock: crate::clock::WallClock,
    /// Shared by every enricher of the agent: one sequence, gaps mean loss.
    numbering: Numbering,
}

impl Enricher {
    pub fn new(node: Name) -> Self {
        Self {
            node,
            exe: ExeCache::default(),
            cgroup_paths: Default::default(),
            threads: Default::default(),
            proc: crate::files::procfs::Proc::open().ok(),
            clock: crate::clock::WallClock::new(),
            numbering: Numbering::default(),
        }
    }

    /// Numbers events from `n` (the agent's pinned sequence and its id).
    pub fn with_numbering(node: Name, n: Numbering) -> Self {
        Self { numbering: n, ..Self::new(node) }
    }

    /// The numbering, shared with `sibling`s.
    pub fn numbering(&self) -> Numbering {
        self.numbering.clone()
    }

    /// Another enricher (own caches, for another thread) numbering events in
    /// the same sequence.
    pub fn sibling(&self) -> Self {
        Self::with_numbering(self.node.clone(), self.numbering.clone())
    }

    pub fn next_seq(&mut self) -> u64 {
        self.numbering.seq.next()
    }

    pub(crate) fn agent_id(&self) -> Name {
        self.numbering.agent_id.clone()
    }

    pub fn network(&mut self, ev: &NetEvent, cgroups: &CgroupTracker, policy: &CompiledPolicy) -> DecisionEvent {
        let address = if ev.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(ev.daddr[0], ev.daddr[1], ev.daddr[2], ev.daddr[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(ev.daddr))
        };
        DecisionEvent {
            operation: match ev.op {
                OP_CONNECT => "connect",
                OP_PACKET => "packet",
                OP_SOCKET => "socket",
                _ => "sendmsg",
            },
            protocol: Some(match (ev.proto, ev.ip_proto) {
                (PROTO_TCP, _) => "tcp",
                (PROTO_UDP, _) => "udp",
                (_, 1 | 58) => "icmp",
                (_, 132) => "sctp",
                _ => "other",
            }),
            destination: Some(Destination { address: address_text(address), port: ev.dport }),
            ..self.kernel_event("network", &ev.header, cgroups, policy)
        }
    }

    /// A file decision of the in-kernel backend (BPF-LSM). Dentry names are
    /// appended to the matched root's configured path (`root_index` indexes
    /// `policy.files`), since names in the kernel are filesystem-relative.
    pub fn kernel_file(&mut self, ev: &FileEvent, cgroups: &CgroupTracker, policy: &CompiledPolicy) -> DecisionEvent {
        let path = if ev.op == warden_common::FOP_PTRACE {
            // The target process, not a file.
            format!("/proc/{}", ev.ino)
        } else {
            let root =
                policy.files.get(ev.root_index as usize).map(|r| r.path.display().to_string()).unwrap_or_default();
            crate::files::event_path(&root, ev.components, ev.truncated, &ev.names)
        };
        DecisionEvent {
            operation: file_op_name(ev.op),
            file: Some(FileTarget {
                path,
                access: if ev.write != 0 { "write" } else { "read" },
                reason: crate::files::reason_name(ev.reason),
            }),
            backend: Some("lsm"),
            ..self.kernel_event("file", &ev.header, cgroups, policy)
        }
    }

    /// A device decision of the cgroup/dev hook.
    pub fn device(
        &mut self,
        ev: &warden_common::DeviceEvent,
        table: &crate::devices::DeviceTable,
        cgroups: &CgroupTracker,
        policy: &CompiledPolicy,
    ) -> DecisionEvent {
        use warden_common::{DEV_ACC_MKNOD, DEV_ACC_READ, DEV_ACC_WRITE, DeviceKey};
        let key = DeviceKey { kind: ev.dev_type, _pad: [0; 3], major: ev.major, minor: ev.minor };
        let access: Vec<&str> = [(DEV_ACC_READ, "read"), (DEV_ACC_WRITE, "write"), (DEV_ACC_MKNOD, "mknod")]
            .iter()
            .filter(|(bit, _)| ev.access & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        let (path, path_is) = table.name(&key);
        DecisionEvent {
            operation: if ev.access & DEV_ACC_MKNOD != 0 { "mknod" } else { "open" },
            device: Some(DeviceTarget {
                path,
                path_is,
                kind: crate::devices::type_name(ev.dev_type),
                major: ev.major,
                minor: ev.minor,
                access: access.join(","),
            }),
            ..self.kernel_event("device", &ev.header, cgroups, policy)
        }
    }

    /// The fields every kernel record shares; kind-specific ones are unset.
    /// The executable of a kernel record's process (a readlink in /proc
    /// on a cache miss: done outside any lock).
    pub fn fill_exe(&mut self, ev: &mut DecisionEvent) {
        ev.exe = ev.tgid.and_then(|t| self.exe.exe(t));
    }

    fn kernel_event(
        &mut self,
        kind: &'static str,
        w: &DecisionHeader,
        cgroups: &CgroupTracker,
        policy: &CompiledPolicy,
    ) -> DecisionEvent {
        let seq = self.next_seq();
        let (workload, identity) = identity_of(w.workload_id, w.cgroup_id, cgroups, policy);
        DecisionEvent {
            time: self.clock.format(w.ktime_ns),
            time_unix_ns: self.clock.unix_ns(w.ktime_ns),
            seq,
            agent_id: self.agent_id(),
            node: self.node.clone(),
            kind,
            workload,
            identity,
            cgroup_id: Some(w.cgroup_id),
            cgroup: self.cgroup_path(w.cgroup_id, cgroups),
            who: cgroups.get(w.cgroup_id).map(|i| i.who.clone()).unwrap_or_default(),
            // Packets leave from softirq context: no task, no pid.
            pid: (w.pid != 0).then_some(w.pid),
            tgid: (w.tgid != 0).then_some(w.tgid),
            comm: Some(c_string(&w.comm)).filter(|c| !c.is_empty()),
            // Filled by `fill_exe` once the identity lock is released.
            exe: None,
            operation: "",
            protocol: None,
            destination: None,
            file: None,
            device: None,
            segment: policy.segment(w.segment_id),
            verdict: verdict_name(w.verdict),
            rule: policy.rule(w.rule_id),
            backend: None,
        }
    }

    /// A tracked cgroup's absolute path, built once per cgroup (and again
    /// if it is renamed).
    fn cgroup_path(&mut self, id: u64, cgroups: &CgroupTracker) -> Option<Name> {
        let rel = cgroups.rel(id)?;
        if let Some((built_from, path)) = self.cgroup_paths.get(&id)
            && built_from == rel
        {
            return Some(path.clone());
        }
        let path = Name::from(cgroups.abs_path(id)?.to_string_lossy());
        if self.cgroup_paths.len() >= 8192 {
            self.cgroup_paths.clear();
        }
        self.cgroup_paths.insert(id, (rel.to_string(), path.clone()));
        Some(path)
    }

    /// Process details of a userspace backend's decision: those read while
    /// the opener was blocked, else from /proc now, *without* holding any
    /// agent lock (cached per thread briefly).
    pub fn file_proc(&mut self, d: &FileDecision) -> ProcInfo {
        if let Some(o) = &d.opener {
            return ProcInfo {
                tgid: o.tgid,
                comm: o.comm.clone(),
                cgroup: o.cgroup.as_deref().map(Name::from),
                exe: o.exe.as_deref().map(Name::from),
                who: Default::default(),
            };
        }
        let now = std::time::Instant::now();
        if let Some((info, at)) = self.threads.get(&d.tid)
            && now.duration_since(*at) < std::time::Duration::from_secs(1)
        {
            return info.clone();
        }
        let tid = d.tid as i32;
        let tgid = self.proc.as_ref().and_then(|p| p.tgid(tid));
        let mut buf = [0u8; 4096];
        let cgroup = self.proc.as_ref().and_then(|p| p.cgroup(tid, &mut buf)).map(Name::from);
        let mut buf = [0u8; 64];
        let comm = self.proc.as_ref().and_then(|p| p.read(tid, "comm", &mut buf));
        let info = ProcInfo {
            tgid,
            comm: comm.map(|c| String::from_utf8_lossy(c).trim_end().to_string()).filter(|c| !c.is_empty()),
            cgroup,
            exe: tgid.and_then(|t| self.exe.exe(t)),
            who: Default::default(),
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
        let seq = self.next_seq();
        let (workload, identity) = match d.workload {
            Some(id) => (policy.workload(id), "matched"),
            None => (unmatched(), "unmatched"),
        };
        let now = crate::identity::delay::monotonic_ns();
        DecisionEvent {
            time: self.clock.format(now),
            time_unix_ns: self.clock.unix_ns(now),
            seq,
            agent_id: self.agent_id(),
            node: self.node.clone(),
            kind: "file",
            workload,
            identity,
            cgroup_id: None,
            who: p.who,
            cgroup: p.cgroup,
            pid: Some(d.tid),
            tgid: p.tgid,
            comm: p.comm,
            exe: p.exe,
            operation: file_op_name(d.op),
            protocol: None,
            destination: None,
            file: Some(FileTarget {
                reason: crate::files::reason_name(d.reason),
                path: d.path.to_string_lossy().into_owned(),
                access: match d.write {
                    Some(true) => "write",
                    Some(false) => "read",
                    None => "any",
                },
            }),
            device: None,
            segment: policy.segment(d.segment),
            verdict: verdict_name(d.verdict),
            rule: policy.rule(d.rule),
            backend: Some(backend),
        }
    }
}

/// Who made a userspace-decided file access.
#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    pub tgid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup: Option<Name>,
    pub exe: Option<Name>,
    /// Who (pod, container, Slurm job, unit): set by the caller, which
    /// holds the metadata.
    pub who: std::sync::Arc<crate::identity::meta::WorkloadIdentity>,
}

/// An address as `Display` writes it; IPv4 by hand, since `Display` costs
/// more than the rest of a network event's enrichment.
fn address_text(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(itoa::Buffer::new().format(*o));
            }
            s
        }
        v6 => v6.to_string(),
    }
}

/// Workload label and identity state of a kernel record.
fn identity_of(
    workload_id: u32,
    cgroup_id: u64,
    cgroups: &CgroupTracker,
    policy: &CompiledPolicy,
) -> (Name, &'static str) {
    if workload_id != WORKLOAD_UNIDENTIFIED {
        return (policy.workload(workload_id), "matched");
    }
    match cgroups.get(cgroup_id) {
        // Known now and matching no workload: it matched none then either.
        Some(info) if info.workload.is_none() => (unmatched(), "unmatched"),
        // Unknown, or a workload's cgroup that the kernel did not know yet
        // when it decided (made while no agent ran, or before the agent
        // identified it): unresolved at decision time, whatever it is now.
        _ => (UNRESOLVED_NAME.clone(), "unresolved"),
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
        FOP_SETATTR => "setattr",
        FOP_XATTR => "xattr",
        FOP_MODIFY => "modify",
        FOP_PTRACE => "ptrace",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for a in ["0.0.0.0", "10.0.0.1", "127.0.0.2", "255.255.255.255", "192.168.100.9", "::1", "2001:db8::1"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(address_text(ip), ip.to_string());
        }
    }
}
