//! cgroup sock_addr hooks: connect4/6 (TCP and connected UDP) and
//! sendmsg4/6 (unconnected UDP). Return 1 to allow, 0 to deny (EPERM).
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    maps::lpm_trie::Key,
    programs::SockAddrContext,
};
use warden_common::{
    AF_INET, AF_INET6, AllowKey, EVENT_NET, MAX_WORKLOADS, NetEvent, OP_CONNECT, OP_SENDMSG, PROTO_OTHER, PROTO_TCP,
    PROTO_UDP, SEGMENT_NONE, STAT_DECISIONS, STAT_EVENTS, SegmentEntries, VERDICT_ALLOWED, VERDICT_AUDITED,
    VERDICT_DENIED, WORKLOAD_UNIDENTIFIED, match_segment, net_verdict, unprotected_verdict,
};

use crate::maps::{
    AUDITED_SOCKETS, COUNTERS, STATS, Set, allow, bump, cgroups, segments_v4, segments_v6, settings, unprotected_fast,
};
use crate::record::{Who, header, reserve_decision, submit_flags};

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
    /// The hook's context, for the socket cookie of an audited flow.
    ctx: *mut core::ffi::c_void,
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
        // SCTP, ping sockets' connect...: portless for the policy.
        _ => PROTO_OTHER,
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
    let set = Set::active();
    let b = ip.to_ne_bytes();
    if unprotected_fast(set, false, u16::from_be_bytes([b[0], b[1]])) {
        bump(&STATS, STAT_DECISIONS);
        return 1;
    }
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&b);
    let flow =
        Flow { ctx: ctx.sock_addr.cast(), set, op, proto: proto_bit(ctx), family: AF_INET, port: dport(ctx), addr };
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
    let top16 = if mapped { u16::from_be_bytes([addr[12], addr[13]]) } else { u16::from_be_bytes([addr[0], addr[1]]) };
    if unprotected_fast(set, !mapped, top16) {
        bump(&STATS, STAT_DECISIONS);
        return 1;
    }
    if mapped {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&addr[12..16]);
        let flow = Flow { ctx: ctx.sock_addr.cast(), set, op, proto, family: AF_INET, port, addr: v4 };
        let key4 = [addr[12], addr[13], addr[14], addr[15]];
        return decide(&flow, lookup_v4(set, &key4));
    }
    let flow = Flow { ctx: ctx.sock_addr.cast(), set, op, proto, family: AF_INET6, port, addr };
    decide(&flow, segments_v6(set).get(Key::new(128, addr)))
}

#[inline(always)]
fn lookup_v4(set: Set, addr: &[u8; 4]) -> Option<&'static SegmentEntries> {
    segments_v4(set).get(Key::new(32, *addr))
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
        let (verdict, rule) = unprotected_verdict(s);
        if verdict == VERDICT_ALLOWED {
            if s.log_unprotected != 0 {
                emit(flow, segment, verdict, &Who { set: flow.set, workload, rule, cgroup_id });
            }
            return 1;
        }
        (verdict, rule)
    } else {
        segment_verdict(flow.set, workload, segment, flow.proto, flow.port)
    };

    if workload <= MAX_WORKLOADS {
        bump(&COUNTERS, flow.set.counter(workload, verdict));
    }
    if verdict == VERDICT_AUDITED {
        // SAFETY: helper on the program's own context.
        let cookie = unsafe { bpf_get_socket_cookie(flow.ctx) };
        let _ = AUDITED_SOCKETS.insert(cookie, audited_key(flow.set, segment), 0);
    }
    emit(flow, segment, verdict, &Who { set: flow.set, workload, rule, cgroup_id });
    if verdict == VERDICT_DENIED { 0 } else { 1 }
}

/// What `AUDITED_SOCKETS` holds for a socket: the set and the segment it
/// was audited for (segment ids are renumbered by a reload).
#[inline(always)]
pub(crate) fn audited_key(set: Set, segment: u16) -> u32 {
    (u32::from(set.0) << 16) | u32::from(segment)
}

/// Verdict and rule for a flow to a protected segment (also the backstop's).
#[inline(always)]
pub(crate) fn segment_verdict(set: Set, workload: u32, segment: u16, proto: u8, port: u16) -> (u8, u32) {
    let entry = if workload != WORKLOAD_UNIDENTIFIED {
        let key = AllowKey { workload_id: workload, segment_id: segment, _pad: 0 };
        // SAFETY: values are written whole by the agent.
        unsafe { allow(set).get(key) }
    } else {
        None
    };
    net_verdict(entry, proto, port, || set.segment_mode(segment))
}

#[inline(always)]
fn emit(flow: &Flow, segment: u16, verdict: u8, who: &Who) {
    let Some(mut entry) = reserve_decision::<NetEvent>(verdict) else { return };
    entry.write(NetEvent {
        header: header(EVENT_NET, verdict, segment, who),
        op: flow.op,
        proto: flow.proto,
        family: flow.family,
        ip_proto: 0,
        dport: flow.port,
        _pad2: 0,
        daddr: flow.addr,
    });
    entry.submit(submit_flags(verdict));
    bump(&STATS, STAT_EVENTS);
}
