//! Raw IP sockets and packet sockets are refused to workloads without a
//! grant (`SOCKET_GRANTS`, from `sockets:` in allow rules) once the policy
//! has network segments. A packet socket hands whole frames to the driver,
//! past every IP-level hook including the egress backstop; a raw socket's
//! packets are judged by the backstop, but only a workload trusted with one
//! should hand-build packets at all. Datagram ICMP ("ping") sockets are not
//! guarded: the backstop judges them.
//!
//! cgroup/sock_create runs only for AF_INET/AF_INET6 sockets, so it guards
//! raw sockets on every kernel; packet sockets need the BPF-LSM
//! `socket_create` hook, where the kernel has BPF-LSM.
use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id,
    macros::{cgroup_sock, lsm},
    programs::{LsmContext, SockContext},
};
use warden_common::{
    AF_INET, AF_INET6, EVENT_NET, MAX_WORKLOADS, NetEvent, OP_SOCKET, PROTO_OTHER, SEGMENT_NONE, SOCK_GRANT_PACKET,
    SOCK_GRANT_RAW, STAT_EVENTS, VERDICT_DENIED, WORKLOAD_UNIDENTIFIED, socket_verdict,
};

use crate::maps::{COUNTERS, STATS, Set, bump, cgroups, settings, socket_grants};
use crate::record::{Who, due, header, reserve_decision, submit_flags};

const AF_PACKET: u32 = 17;
/// AF_XDP sockets hand frames to the driver too (copy mode needs no
/// special NIC): guarded as packet sockets.
const AF_XDP: u32 = 44;
const SOCK_RAW: u32 = 3;

const EPERM: i32 = 1;

#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    // SAFETY: the context is the kernel's bpf_sock being created.
    let (family, ty, protocol) = unsafe { ((*ctx.sock).family, (*ctx.sock).type_, (*ctx.sock).protocol) };
    if family == AF_PACKET {
        return 1; // never seen here; the LSM hook's
    }
    i32::from(allowed(family, ty, protocol))
}

/// `socket_create(family, type, protocol, kern)`: packet and AF_XDP
/// sockets only (raw inet sockets are the cgroup hook's), of tasks in the
/// agent's root.
#[lsm(hook = "socket_create")]
pub fn socket_create(ctx: LsmContext) -> i32 {
    let (family, kern): (i32, i32) = (ctx.arg(0), ctx.arg(3));
    let frames = family as u32 == AF_PACKET || family as u32 == AF_XDP;
    if !frames || kern != 0 || !crate::scope::governed() {
        return 0;
    }
    let (ty, protocol): (i32, i32) = (ctx.arg(1), ctx.arg(2));
    if allowed(family as u32, ty as u32, protocol as u32) { 0 } else { -EPERM }
}

/// Whether the current task may create this socket; counts and reports a
/// refusal (or, in audit mode, what would have been refused).
#[inline(always)]
fn allowed(family: u32, ty: u32, protocol: u32) -> bool {
    let kind = match family {
        AF_PACKET | AF_XDP => SOCK_GRANT_PACKET,
        f if (f == u32::from(AF_INET) || f == u32::from(AF_INET6)) && ty == SOCK_RAW => SOCK_GRANT_RAW,
        _ => return true,
    };
    let set = Set::active();
    match settings(set).get(0) {
        Some(s) if s.guard_sockets != 0 => {}
        _ => return true,
    }
    // The creating task's cgroup: the socket is being made in it.
    // SAFETY: helper without preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: values are plain u32 written whole by the agent.
    let workload = unsafe { cgroups(set).get(cgroup_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    let index = if workload <= MAX_WORKLOADS { workload } else { WORKLOAD_UNIDENTIFIED };
    let (verdict, rule) = socket_verdict(socket_grants(set).get(index), kind);
    if verdict != warden_common::VERDICT_ALLOWED {
        if workload <= MAX_WORKLOADS {
            bump(&COUNTERS, set.counter(workload, verdict));
        }
        if due(OP_SOCKET, set, workload, SEGMENT_NONE, verdict) {
            emit(family as u8, protocol as u8, verdict, &Who { set, workload, rule, cgroup_id });
        }
    }
    verdict != VERDICT_DENIED
}

#[inline(always)]
fn emit(family: u8, protocol: u8, verdict: u8, who: &Who) {
    let Some(mut entry) = reserve_decision::<NetEvent>(verdict) else { return };
    entry.write(NetEvent {
        header: header(EVENT_NET, verdict, SEGMENT_NONE, who),
        op: OP_SOCKET,
        proto: PROTO_OTHER,
        family,
        ip_proto: protocol,
        dport: 0,
        _pad2: 0,
        daddr: [0; 16],
    });
    entry.submit(submit_flags(verdict));
    bump(&STATS, STAT_EVENTS);
}
