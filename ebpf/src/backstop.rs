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
//! IPv4 options and IPv6 extension headers are walked to the transport
//! header; what cannot be parsed is judged against the destination's
//! segment whatever its ports, and a malformed IP header from a raw socket
//! is dropped.
use aya_ebpf::{
    bindings::{__sk_buff, bpf_sock},
    helpers::{bpf_get_socket_cookie, bpf_sk_fullsock, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    maps::lpm_trie::Key,
    programs::SkBuffContext,
};
use warden_common::{
    AF_INET, AF_INET6, EVENT_NET, MAX_WORKLOADS, NetEvent, OP_PACKET, PROTO_OTHER, PROTO_TCP, PROTO_UDP, SEGMENT_NONE,
    STAT_BACKSTOP_DROPS, STAT_EVENTS, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED, WORKLOAD_UNIDENTIFIED,
    match_segment, unprotected_verdict,
};

use crate::maps::{
    AUDITED_SOCKETS, COUNTERS, STATS, Set, bump, cgroups, segments_v4, segments_v6, settings, unprotected_fast,
};
use crate::net::{audited_key, segment_verdict};
use crate::record::{Who, due, reserve_decision, submit_flags, task_free_header};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// IPv6 extension headers walked to the transport header.
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
/// Extension headers walked at most; a longer chain is judged as unknown.
const MAX_EXT_HEADERS: usize = 6;
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

// Values below are plain, always-initialized integers and arrays rather
// than `Option`s and enums with payloads: moving those can copy
// uninitialized padding through registers, which the verifier refuses.

/// The first bytes of the transport header: `len` is 16, 8 (a short UDP
/// or ICMP packet) or 0 (not there).
#[derive(Clone, Copy)]
struct L4 {
    bytes: [u8; 16],
    len: u8,
}

/// Reads the transport header at `at`: from what was read with the IP
/// header (`after`, when `have_after`) if it starts right after it, else on
/// its own.
#[inline(always)]
fn l4_at(ctx: &SkBuffContext, after: [u8; 16], have_after: bool, at: usize) -> L4 {
    if have_after {
        return L4 { bytes: after, len: 16 };
    }
    if let Ok(bytes) = ctx.load::<[u8; 16]>(at) {
        return L4 { bytes, len: 16 };
    }
    let mut bytes = [0u8; 16];
    match ctx.load::<[u8; 8]>(at) {
        Ok(head) => {
            bytes[..8].copy_from_slice(&head);
            L4 { bytes, len: 8 }
        }
        Err(_) => L4 { bytes, len: 0 },
    }
}

/// Passes unjudged (a TCP stream's packet that opens nothing, a non-first
/// fragment).
const PASS: u8 = 0;
/// Judged by protocol bit and destination port.
const FLOW: u8 = 1;
/// Cannot be parsed (truncated, an extension chain too long): judged
/// against the destination's first segment whatever its ports.
const UNKNOWN: u8 = 2;

/// What the backstop judges a packet as: `kind` is `PASS`, `FLOW` or
/// `UNKNOWN`.
#[derive(Clone, Copy)]
struct Judged {
    kind: u8,
    proto: u8,
    port: u16,
}

const fn judged(kind: u8, proto: u8, port: u16) -> Judged {
    Judged { kind, proto, port }
}

/// A TCP stream socket's packets pass unless they open a connection; a TCP
/// header too short to show its flags is judged, never passed.
#[inline(always)]
fn transport(skb: *mut __sk_buff, l4: L4, proto: u8, first_fragment: bool) -> Judged {
    let port = u16::from_be_bytes([l4.bytes[2], l4.bytes[3]]);
    match proto {
        IPPROTO_TCP | IPPROTO_UDP if !first_fragment => judged(PASS, 0, 0),
        IPPROTO_TCP if l4.len == 0 => judged(UNKNOWN, 0, 0),
        IPPROTO_TCP => {
            let opens = l4.bytes[13] & (TCP_SYN | TCP_ACK) == TCP_SYN;
            if l4.len == 16 && !opens && is_tcp_stream(skb) {
                return judged(PASS, 0, 0);
            }
            judged(FLOW, PROTO_TCP, port)
        }
        IPPROTO_UDP if l4.len == 0 => judged(UNKNOWN, 0, 0),
        IPPROTO_UDP => judged(FLOW, PROTO_UDP, port),
        // Raw IP, ICMP, SCTP...: no port; only segments open on every port
        // and protocol cover them.
        _ if first_fragment => judged(FLOW, PROTO_OTHER, 0),
        _ => judged(PASS, 0, 0),
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
/// holds them (`T` = `H` + 16), the 16 bytes after it (`true`: read); a
/// shorter packet (small UDP or ICMP) reads its header alone.
#[inline(always)]
fn ip_and_after<const H: usize, const T: usize>(
    ctx: &SkBuffContext,
    skb: *mut __sk_buff,
) -> Option<([u8; H], [u8; 16], bool)> {
    let (mut h, mut after) = ([0u8; H], [0u8; 16]);
    if let Some(b) = head::<T>(ctx, skb) {
        h.copy_from_slice(&b[..H]);
        after.copy_from_slice(&b[H..H + 16]);
        return Some((h, after, true));
    }
    head::<H>(ctx, skb).map(|h| (h, after, false))
}

/// A packet whose IP header cannot be read or is malformed: only a raw
/// socket makes one. Dropped once the policy has network segments.
#[inline(always)]
fn malformed() -> i32 {
    match settings(Set::active()).get(0) {
        Some(s) if s.guard_sockets != 0 => 0,
        _ => 1,
    }
}

#[inline(always)]
fn v4(ctx: &SkBuffContext, skb: *mut __sk_buff) -> i32 {
    let Some((h, after, have_after)) = ip_and_after::<20, 36>(ctx, skb) else { return malformed() };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 || h[0] >> 4 != 4 {
        return malformed();
    }
    let first = u16::from_be_bytes([h[6], h[7]]) & 0x1fff == 0;
    // IP options push the transport header past what was read with it.
    let l4 = if matches!(h[9], IPPROTO_TCP | IPPROTO_UDP) && first {
        l4_at(ctx, after, have_after && ihl == 20, ihl)
    } else {
        L4 { bytes: [0; 16], len: 0 }
    };
    let judged = transport(skb, l4, h[9], first);
    if judged.kind == PASS {
        return 1;
    }
    let set = Set::active();
    if unprotected_fast(set, false, u16::from_be_bytes([h[16], h[17]])) {
        return 1;
    }
    let daddr = [h[16], h[17], h[18], h[19]];
    let entries = segments_v4(set).get(Key::new(32, daddr));
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&daddr);
    judge(skb, &Packet::new(set, judged, AF_INET, addr, h[9]), entries)
}

/// Walks IPv6 extension headers (hop-by-hop, routing, fragment, auth,
/// destination options) to the transport protocol: (protocol, its offset,
/// whether this is a first fragment, parsed); not parsed if the chain
/// cannot be read or is longer than `MAX_EXT_HEADERS`.
#[inline(always)]
fn v6_transport(ctx: &SkBuffContext, first_next: u8) -> (u8, usize, bool, bool) {
    let (mut next, mut at, mut first) = (first_next, 40usize, true);
    for _ in 0..MAX_EXT_HEADERS {
        let step = match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT => next,
            _ => return (next, at, first, true),
        };
        let Ok(e) = ctx.load::<[u8; 4]>(at) else { return (next, at, first, false) };
        next = e[0];
        at += match step {
            NEXTHDR_AUTH => (usize::from(e[1]) + 2) * 4,
            NEXTHDR_FRAGMENT => {
                first = first && u16::from_be_bytes([e[2], e[3]]) & 0xfff8 == 0;
                8
            }
            _ => (usize::from(e[1]) + 1) * 8,
        };
    }
    let more = matches!(next, NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT);
    (next, at, first, !more)
}

#[inline(always)]
fn v6(ctx: &SkBuffContext, skb: *mut __sk_buff) -> i32 {
    let Some((h, after, have_after)) = ip_and_after::<40, 56>(ctx, skb) else { return malformed() };
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&h[24..40]);
    let (proto, at, first, parsed) = v6_transport(ctx, h[6]);
    let judged = if parsed {
        let l4 = if matches!(proto, IPPROTO_TCP | IPPROTO_UDP) && first {
            l4_at(ctx, after, have_after && at == 40, at)
        } else {
            L4 { bytes: [0; 16], len: 0 }
        };
        transport(skb, l4, proto, first)
    } else {
        judged(UNKNOWN, 0, 0)
    };
    if judged.kind == PASS {
        return 1;
    }
    let set = Set::active();
    if unprotected_fast(set, true, u16::from_be_bytes([h[24], h[25]])) {
        return 1;
    }
    let entries = segments_v6(set).get(Key::new(128, addr));
    judge(skb, &Packet::new(set, judged, AF_INET6, addr, proto), entries)
}

struct Packet {
    set: Set,
    proto: u8,
    family: u8,
    port: u16,
    addr: [u8; 16],
    ip_proto: u8,
    /// Not parsed to its ports: matched to the destination's first segment.
    unknown: bool,
}

impl Packet {
    #[inline(always)]
    fn new(set: Set, j: Judged, family: u8, addr: [u8; 16], ip_proto: u8) -> Self {
        let unknown = j.kind == UNKNOWN;
        let (proto, port) = if unknown { (PROTO_OTHER, 0) } else { (j.proto, j.port) };
        Self { set, proto, family, port, addr, ip_proto, unknown }
    }
}

#[inline(always)]
fn judge(skb: *mut __sk_buff, p: &Packet, entries: Option<&warden_common::SegmentEntries>) -> i32 {
    let segment = match entries {
        // Whatever its ports would have been, it goes to this address.
        Some(e) if p.unknown && e.count > 0 => e.entries[0].segment_id,
        _ => match_segment(entries, p.proto, p.port),
    };
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
        // SAFETY: values are plain u32.
        if unsafe { AUDITED_SOCKETS.get(cookie) }.copied() == Some(audited_key(p.set, segment)) {
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
