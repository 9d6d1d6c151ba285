//! cgroup_skb/egress: the packet-level backstop. Judges packets leaving a
//! workload by their final destination, against the same policy set the
//! connect hooks read: raw and ICMP sockets, which no sock_addr hook sees,
//! and the unspecified address, which those hooks see before the kernel
//! picks the real (local) destination. Return 1 to pass, 0 to drop.
//!
//! A TCP stream socket is judged on its connection-opening SYN only: a
//! connection's other packets follow a SYN that was judged (or an inbound
//! connection the policy does not govern). Every other packet is judged:
//! UDP datagram by datagram, raw and ICMP packet by packet. Non-first IP
//! fragments pass; their first fragment, which carries the ports, was judged.
use aya_ebpf::{
    bindings::{__sk_buff, bpf_sock},
    helpers::{bpf_get_socket_cookie, bpf_sk_fullsock, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    maps::lpm_trie::Key,
    programs::SkBuffContext,
};
use warden_common::{
    AF_INET, AF_INET6, EVENT_NET, MAX_WORKLOADS, NetEvent, OP_PACKET, PROTO_OTHER, PROTO_TCP, PROTO_UDP, SEGMENT_NONE,
    STAT_BACKSTOP_DROPS, STAT_EVENTS, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED, WORKLOAD_UNIDENTIFIED, match_segment,
    unprotected_verdict,
};

use crate::maps::{AUDITED_SOCKETS, COUNTERS, STATS, Set, bump, cgroups, segments_v4, segments_v6, settings, unprotected_fast};
use crate::net::segment_verdict;
use crate::record::{Who, due, reserve_decision, submit_flags, task_free_header};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const SOCK_STREAM: u32 = 1;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
#[cgroup_skb(egress)]
pub fn egress(ctx: SkBuffContext) -> i32 {
    let skb = ctx.skb.skb;
    // SAFETY: the context is the kernel's __sk_buff for this packet.
    match u16::from_be(unsafe { (*skb).protocol } as u16) {
        ETH_P_IP => v4(&ctx, skb),
        ETH_P_IPV6 => v6(&ctx, skb),
        _ => 1,
    }
}

/// Whether the sending socket is an ordinary TCP socket (not raw).
#[inline(always)]
fn is_tcp_stream(skb: *mut __sk_buff) -> bool {
    // SAFETY: reading the context's socket pointer; NULL-checked below.
    let sk = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return false;
    }
    // SAFETY: helper on a socket pointer from the context.
    let full = unsafe { bpf_sk_fullsock(sk) } as *const bpf_sock;
    if full.is_null() {
        return false;
    }
    // SAFETY: a full socket the verifier checked.
    unsafe { (*full).type_ == SOCK_STREAM && (*full).protocol == u32::from(IPPROTO_TCP) }
}

/// The first 16 bytes of the transport header: read with the IP header in
/// one helper call when they follow it directly, else on their own.
#[inline(always)]
fn l4_bytes(ctx: &SkBuffContext, with_ip: Option<[u8; 16]>, l4: usize) -> Option<[u8; 16]> {
    if with_ip.is_some() {
        return with_ip;
    }
    // A short packet: its transport header may be under 16 bytes (UDP, ICMP).
    let head: [u8; 8] = ctx.load(l4).ok()?;
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&head);
    Some(out)
}

/// Protocol bit and destination port; `None`: the packet passes unjudged.
/// A TCP stream socket's packets pass unless they open a connection.
#[inline(always)]
fn transport(skb: *mut __sk_buff, l4: Option<[u8; 16]>, proto: u8, first_fragment: bool) -> Option<(u8, u16)> {
    match proto {
        IPPROTO_TCP | IPPROTO_UDP if !first_fragment => None,
        IPPROTO_TCP => {
            let h = l4?;
            if h[13] & (TCP_SYN | TCP_ACK) != TCP_SYN && is_tcp_stream(skb) {
                return None;
            }
            Some((PROTO_TCP, u16::from_be_bytes([h[2], h[3]])))
        }
        IPPROTO_UDP => {
            let h = l4?;
            Some((PROTO_UDP, u16::from_be_bytes([h[2], h[3]])))
        }
        // Raw IP, ICMP, SCTP...: no port; only segments open on every port
        // and protocol cover them.
        _ if first_fragment => Some((PROTO_OTHER, 0)),
        _ => None,
    }
}

/// The first `N` bytes of the packet: read in place when the linear part
/// holds them (no helper call: most packets), else copied by the helper;
/// `None` if the packet is shorter.
#[inline(always)]
fn head<const N: usize>(ctx: &SkBuffContext, skb: *mut __sk_buff) -> Option<[u8; N]> {
    // SAFETY: the context's packet pointers; the read below is bounds-checked
    // against data_end, as the verifier requires.
    let (data, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
    if data + N <= end {
        // SAFETY: checked above.
        return Some(unsafe { core::ptr::read_unaligned(data as *const [u8; N]) });
    }
    ctx.load::<[u8; N]>(0).ok()
}

/// An IP header of `H` bytes and, read with it in one go when the packet
/// holds them (`T` = `H` + 16), the 16 bytes after it; a shorter packet
/// (small UDP or ICMP) reads its header alone.
#[inline(always)]
fn ip_and_after<const H: usize, const T: usize>(
    ctx: &SkBuffContext,
    skb: *mut __sk_buff,
) -> Option<([u8; H], Option<[u8; 16]>)> {
    if let Some(b) = head::<T>(ctx, skb) {
        let (mut h, mut after) = ([0u8; H], [0u8; 16]);
        h.copy_from_slice(&b[..H]);
        after.copy_from_slice(&b[H..H + 16]);
        return Some((h, Some(after)));
    }
    head::<H>(ctx, skb).map(|h| (h, None))
}

#[inline(always)]
fn v4(ctx: &SkBuffContext, skb: *mut __sk_buff) -> i32 {
    let Some((h, after)) = ip_and_after::<20, 36>(ctx, skb) else { return 1 };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return 1;
    }
    let first = u16::from_be_bytes([h[6], h[7]]) & 0x1fff == 0;
    // IP options push the transport header past what was read.
    let with_ip = after.filter(|_| ihl == 20);
    let l4 = if matches!(h[9], IPPROTO_TCP | IPPROTO_UDP) && first { l4_bytes(ctx, with_ip, ihl) } else { None };
    let Some((proto, port)) = transport(skb, l4, h[9], first) else { return 1 };
    let set = Set::active();
    if unprotected_fast(set, false, u16::from_be_bytes([h[16], h[17]])) {
        return 1;
    }
    let daddr = [h[16], h[17], h[18], h[19]];
    let entries = segments_v4(set).get(Key::new(32, daddr));
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&daddr);
    judge(skb, &Packet { set, proto, family: AF_INET, port, addr, ip_proto: h[9] }, entries)
}

#[inline(always)]
fn v6(ctx: &SkBuffContext, skb: *mut __sk_buff) -> i32 {
    let Some((h, after)) = ip_and_after::<40, 56>(ctx, skb) else { return 1 };
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&h[24..40]);
    // Extension headers are not walked: a packet whose first next-header is
    // not TCP or UDP is judged as "other" (all-ports segments only).
    let l4 = if matches!(h[6], IPPROTO_TCP | IPPROTO_UDP) { l4_bytes(ctx, after, 40) } else { None };
    let Some((proto, port)) = transport(skb, l4, h[6], true) else { return 1 };
    let set = Set::active();
    if unprotected_fast(set, true, u16::from_be_bytes([h[24], h[25]])) {
        return 1;
    }
    let entries = segments_v6(set).get(Key::new(128, addr));
    judge(skb, &Packet { set, proto, family: AF_INET6, port, addr, ip_proto: h[6] }, entries)
}

struct Packet {
    set: Set,
    proto: u8,
    family: u8,
    port: u16,
    addr: [u8; 16],
    ip_proto: u8,
}

#[inline(always)]
fn judge(skb: *mut __sk_buff, p: &Packet, entries: Option<&warden_common::SegmentEntries>) -> i32 {
    let segment = match_segment(entries, p.proto, p.port);
    // SAFETY: helper on the program's own context.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    // SAFETY: values are plain u32 written whole by the agent.
    let workload = unsafe { cgroups(p.set).get(cgroup_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    let (verdict, rule) = if segment == SEGMENT_NONE {
        let Some(s) = settings(p.set).get(0) else { return 1 };
        unprotected_verdict(s)
    } else {
        segment_verdict(p.set, workload, segment, p.proto, p.port)
    };
    if verdict == VERDICT_ALLOWED {
        return 1;
    }
    if verdict == VERDICT_AUDITED {
        // A connect or send a sock_addr hook already audited: its packets
        // are that same flow, counted and reported once.
        // SAFETY: helper on the program's own context.
        let cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };
        // SAFETY: values are plain u16.
        if unsafe { AUDITED_SOCKETS.get(&cookie) } == Some(&segment) {
            return 1;
        }
    }
    if workload <= MAX_WORKLOADS {
        bump(&COUNTERS, p.set.counter(workload, verdict));
    }
    if verdict == VERDICT_DENIED {
        bump(&STATS, STAT_BACKSTOP_DROPS);
    }
    if due(OP_PACKET, p.set, workload, segment, verdict) {
        emit(p, segment, verdict, &Who { set: p.set, workload, rule, cgroup_id });
    }
    if verdict == VERDICT_DENIED { 0 } else { 1 }
}

#[inline(always)]
fn emit(p: &Packet, segment: u16, verdict: u8, who: &Who) {
    let Some(mut entry) = reserve_decision::<NetEvent>(verdict) else { return };
    entry.write(NetEvent {
        header: task_free_header(EVENT_NET, verdict, segment, who),
        op: OP_PACKET,
        proto: p.proto,
        family: p.family,
        ip_proto: p.ip_proto,
        dport: p.port,
        _pad2: 0,
        daddr: p.addr,
    });
    entry.submit(submit_flags(verdict));
    bump(&STATS, STAT_EVENTS);
}
