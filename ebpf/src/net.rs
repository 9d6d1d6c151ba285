//! cgroup sock_addr hooks: connect4/6 (TCP and connected UDP) and
//! sendmsg4/6 (unconnected UDP). Return 1 to allow, 0 to deny (EPERM).
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::cgroup_sock_addr,
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};
use warden_common::{
    AF_INET, AF_INET6, AllowKey, DEFAULT_DENY, EVENT_NET, MAX_ALLOW_PORTS, MAX_SEGMENT_ENTRIES, MAX_WORKLOADS,
    NetEvent, OP_CONNECT, OP_SENDMSG, PROTO_TCP, PROTO_UDP, RULE_DEFAULT, SEGMENT_NONE, STAT_DECISIONS, STAT_EVENTS,
    SegmentEntries, VERDICT_ALLOWED, VERDICT_DENIED, WORKLOAD_UNIDENTIFIED,
};

use crate::maps::{
    COUNTERS, STATS, Set, allow, bump, cgroups, deny_or_audit, reserve_decision, segment_info, segments_v4,
    segments_v6, settings, submit_flags,
};

const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    on_v4(&ctx, OP_CONNECT)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    on_v4(&ctx, OP_SENDMSG)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    on_v6(&ctx, OP_CONNECT)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    on_v6(&ctx, OP_SENDMSG)
}

/// Destination of one flow, addresses in network order, and the policy
/// set that decides it.
struct Flow {
    set: Set,
    op: u8,
    proto: u8,
    family: u8,
    port: u16,
    addr: [u8; 16],
}

#[inline(always)]
fn proto_bit(ctx: &SockAddrContext) -> u8 {
    // SAFETY: ctx points at the kernel's bpf_sock_addr for this call.
    match unsafe { (*ctx.sock_addr).protocol } {
        IPPROTO_TCP => PROTO_TCP,
        IPPROTO_UDP => PROTO_UDP,
        _ => 0,
    }
}

#[inline(always)]
fn dport(ctx: &SockAddrContext) -> u16 {
    // user_port holds the port in network order in its low 16 bits.
    // SAFETY: as above.
    u16::from_be(unsafe { (*ctx.sock_addr).user_port } as u16)
}

#[inline(always)]
fn on_v4(ctx: &SockAddrContext, op: u8) -> i32 {
    // SAFETY: as above.
    let ip = unsafe { (*ctx.sock_addr).user_ip4 };
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&ip.to_ne_bytes());
    let set = Set::active();
    let flow = Flow { set, op, proto: proto_bit(ctx), family: AF_INET, port: dport(ctx), addr };
    decide(&flow, lookup_v4(set, &ip.to_ne_bytes()))
}

#[inline(always)]
fn on_v6(ctx: &SockAddrContext, op: u8) -> i32 {
    let mut words = [0u32; 4];
    // The verifier only accepts 4-byte loads of user_ip6, one word at a time.
    // SAFETY: as above.
    unsafe {
        words[0] = (*ctx.sock_addr).user_ip6[0];
        words[1] = (*ctx.sock_addr).user_ip6[1];
        words[2] = (*ctx.sock_addr).user_ip6[2];
        words[3] = (*ctx.sock_addr).user_ip6[3];
    }
    let mut addr = [0u8; 16];
    addr[0..4].copy_from_slice(&words[0].to_ne_bytes());
    addr[4..8].copy_from_slice(&words[1].to_ne_bytes());
    addr[8..12].copy_from_slice(&words[2].to_ne_bytes());
    addr[12..16].copy_from_slice(&words[3].to_ne_bytes());
    let (proto, port, set) = (proto_bit(ctx), dport(ctx), Set::active());
    // IPv4-mapped (::ffff:a.b.c.d): match against the IPv4 segments.
    let mapped = words[0] == 0 && words[1] == 0 && addr[8] == 0 && addr[9] == 0 && addr[10] == 0xff && addr[11] == 0xff;
    if mapped {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&addr[12..16]);
        let flow = Flow { set, op, proto, family: AF_INET, port, addr: v4 };
        let key4 = [addr[12], addr[13], addr[14], addr[15]];
        return decide(&flow, lookup_v4(set, &key4));
    }
    let flow = Flow { set, op, proto, family: AF_INET6, port, addr };
    decide(&flow, segments_v6(set).get(Key::new(128, addr)))
}

#[inline(always)]
fn lookup_v4(set: Set, addr: &[u8; 4]) -> Option<&'static SegmentEntries> {
    segments_v4(set).get(Key::new(32, *addr))
}

/// First segment entry matching protocol and port, most specific first.
#[inline(always)]
fn match_segment(entries: Option<&SegmentEntries>, proto: u8, port: u16) -> u16 {
    let Some(e) = entries else { return SEGMENT_NONE };
    let n = e.count as usize;
    for i in 0..MAX_SEGMENT_ENTRIES {
        if i >= n {
            break;
        }
        if e.entries[i].matches(proto, port) {
            return e.entries[i].segment_id;
        }
    }
    SEGMENT_NONE
}

#[inline(always)]
fn decide(flow: &Flow, entries: Option<&SegmentEntries>) -> i32 {
    // SAFETY: helper without preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: values are plain u32 written whole by the agent.
    let workload = unsafe { cgroups(flow.set).get(cgroup_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    let segment = match_segment(entries, flow.proto, flow.port);
    bump(&STATS, STAT_DECISIONS);

    let (verdict, rule) = if segment == SEGMENT_NONE {
        let Some(s) = settings(flow.set).get(0) else { return 1 };
        if s.default_action != DEFAULT_DENY {
            if s.log_unprotected != 0 {
                emit(flow, cgroup_id, workload, segment, VERDICT_ALLOWED, RULE_DEFAULT);
            }
            return 1;
        }
        (deny_or_audit(s.default_mode), RULE_DEFAULT)
    } else {
        segment_verdict(flow.set, workload, segment, flow.proto, flow.port)
    };

    if workload <= MAX_WORKLOADS {
        bump(&COUNTERS, flow.set.counter(workload, verdict));
    }
    emit(flow, cgroup_id, workload, segment, verdict, rule);
    if verdict == VERDICT_DENIED { 0 } else { 1 }
}

/// Verdict and rule for a flow to a protected segment.
#[inline(always)]
fn segment_verdict(set: Set, workload: u32, segment: u16, proto: u8, port: u16) -> (u8, u32) {
    if workload != WORKLOAD_UNIDENTIFIED {
        let key = AllowKey { workload_id: workload, segment_id: segment, _pad: 0 };
        // SAFETY: values are written whole by the agent.
        if let Some(a) = unsafe { allow(set).get(key) } {
            let n = a.count as usize;
            for i in 0..MAX_ALLOW_PORTS {
                if i >= n {
                    break;
                }
                if a.ports[i].matches(proto, port) {
                    return (VERDICT_ALLOWED, a.ports[i].rule_id);
                }
            }
            return (deny_or_audit(a.deny_mode), a.deny_rule_id);
        }
    }
    let mode = segment_info(set).get(segment as u32).map(|i| i.mode).unwrap_or(0);
    (deny_or_audit(mode), RULE_DEFAULT)
}

#[inline(always)]
fn emit(flow: &Flow, cgroup_id: u64, workload: u32, segment: u16, verdict: u8, rule: u32) {
    let Some(mut entry) = reserve_decision::<NetEvent>(verdict) else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    let ev = NetEvent {
        kind: EVENT_NET,
        op: flow.op,
        proto: flow.proto,
        family: flow.family,
        verdict,
        policy_set: flow.set.0,
        dport: flow.port,
        segment_id: segment,
        _pad2: 0,
        workload_id: workload,
        rule_id: rule,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        _pad3: 0,
        // SAFETY: helper without preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id,
        daddr: flow.addr,
        comm: bpf_get_current_comm().unwrap_or([0u8; 16]),
    };
    entry.write(ev);
    entry.submit(submit_flags(verdict));
    bump(&STATS, STAT_EVENTS);
}
