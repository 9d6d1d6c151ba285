//! Compiled network-segment maps.
//!
//! Segments are compiled into two LPM tries (IPv4, IPv6). Because a trie
//! lookup only returns the longest matching prefix, the value for every
//! prefix already carries the entries of all shorter prefixes that cover it,
//! most specific first, so one lookup plus a short scan decides the segment.

/// Most (segment, port range, protocol) entries one prefix can carry.
pub const MAX_SEGMENT_ENTRIES: usize = 8;
/// Most port windows one (workload, segment) allow entry can carry.
pub const MAX_ALLOW_PORTS: usize = 4;

/// LPM trie key for IPv4: `prefix_len` then the address in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipv4Key {
    pub prefix_len: u32,
    pub addr: [u8; 4],
}

/// LPM trie key for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipv6Key {
    pub prefix_len: u32,
    pub addr: [u8; 16],
}

/// One segment a prefix belongs to, narrowed by ports and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentEntry {
    pub segment_id: u16,
    /// `PROTO_*` bits.
    pub proto_mask: u8,
    pub _pad: u8,
    /// Inclusive host-order port range; 0..=65535 for "any port".
    pub port_lo: u16,
    pub port_hi: u16,
}

/// Value of the LPM tries: entries scanned in order, first match wins.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentEntries {
    pub count: u32,
    pub _pad: u32,
    pub entries: [SegmentEntry; MAX_SEGMENT_ENTRIES],
}

/// Per-segment settings, indexed by segment id in the `SEGMENT_INFO` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Mode for denies of workloads without a rule for this segment.
    pub mode: u8,
    pub _pad: [u8; 7],
}

/// Words of a per-family summary bitmap (`CLEAR_V4`, `CLEAR_V6`): one bit
/// per value of an address's first 16 bits, set when no segment prefix
/// reaches into that /16. All clear (a map never filled) sends every
/// destination down the full lookup: the summary can only speed up, never
/// open.
pub const SUMMARY_WORDS: u32 = 1024;

/// Whether a summary word says the /16 `top16` holds no segment prefix.
#[inline(always)]
pub fn summary_clear(word: u64, top16: u16) -> bool {
    word & (1u64 << (top16 & 63)) != 0
}

/// Marks every /16 a prefix of `len` bits starting with `top16` reaches
/// into as not clear (`words` starts all ones).
pub fn summary_cover(words: &mut [u64], top16: u16, len: u32) {
    let (first, count) =
        if len >= 16 { (u32::from(top16), 1) } else { (u32::from(top16) & !((1 << (16 - len)) - 1), 1 << (16 - len)) };
    for v in first..first + count {
        if let Some(w) = words.get_mut((v >> 6) as usize) {
            *w &= !(1u64 << (v & 63));
        }
    }
}

/// Kinds of socket the socket-creation hook guards (`SocketGrant::grants`).
pub const SOCK_GRANT_RAW: u8 = 1;
pub const SOCK_GRANT_PACKET: u8 = 2;

/// What a workload may create of the guarded sockets, indexed by workload
/// id in `SOCKET_GRANTS` (index 0: unidentified cgroups).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketGrant {
    /// `SOCK_GRANT_*` bits.
    pub grants: u8,
    /// Mode of a refusal: the workload's, else the policy's.
    pub deny_mode: u8,
    pub _pad: [u8; 2],
    /// The rule that granted the socket kinds (0: none).
    pub rule_id: u32,
}

/// Key of the `ALLOW` hash: which workload, which segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowKey {
    pub workload_id: u32,
    pub segment_id: u16,
    pub _pad: u16,
}

/// One allowed port window of a rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowPorts {
    pub rule_id: u32,
    pub proto_mask: u8,
    pub _pad: u8,
    pub port_lo: u16,
    pub port_hi: u16,
    pub _pad2: u16,
}

/// Value of the `ALLOW` hash.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowValue {
    pub count: u32,
    /// Mode for flows of this pair that no window allows.
    pub deny_mode: u8,
    pub _pad: [u8; 3],
    /// Rule reported when a flow of this pair is denied.
    pub deny_rule_id: u32,
    pub _pad2: u32,
    pub ports: [AllowPorts; MAX_ALLOW_PORTS],
}

const _: () = assert!(core::mem::size_of::<Ipv4Key>() == 8);
const _: () = assert!(core::mem::size_of::<Ipv6Key>() == 20);
const _: () = assert!(core::mem::size_of::<SegmentEntry>() == 8);
const _: () = assert!(core::mem::size_of::<SegmentEntries>() == 8 + 8 * MAX_SEGMENT_ENTRIES);
const _: () = assert!(core::mem::size_of::<SegmentInfo>() == 8);
const _: () = assert!(core::mem::size_of::<SocketGrant>() == 8);
const _: () = assert!(core::mem::size_of::<AllowKey>() == 8);
const _: () = assert!(core::mem::size_of::<AllowPorts>() == 12);
const _: () = assert!(core::mem::size_of::<AllowValue>() == 16 + 12 * MAX_ALLOW_PORTS);

/// Whether a (protocol mask, port window) covers a flow. A portless
/// protocol (`PROTO_OTHER`) is covered only by a window of every port.
#[inline(always)]
fn window_matches(mask: u8, lo: u16, hi: u16, proto_bit: u8, port: u16) -> bool {
    if proto_bit == crate::PROTO_OTHER {
        return mask & proto_bit != 0 && lo == 0 && hi == u16::MAX;
    }
    mask & proto_bit != 0 && port >= lo && port <= hi
}

impl SegmentEntry {
    #[inline(always)]
    pub fn matches(&self, proto_bit: u8, port: u16) -> bool {
        window_matches(self.proto_mask, self.port_lo, self.port_hi, proto_bit, port)
    }
}

impl AllowPorts {
    #[inline(always)]
    pub fn matches(&self, proto_bit: u8, port: u16) -> bool {
        window_matches(self.proto_mask, self.port_lo, self.port_hi, proto_bit, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words all ones, then the /16s each prefix reaches into cleared.
    fn summary(prefixes: &[(u16, u32)]) -> [u64; SUMMARY_WORDS as usize] {
        let mut w = [u64::MAX; SUMMARY_WORDS as usize];
        for &(top16, len) in prefixes {
            summary_cover(&mut w, top16, len);
        }
        w
    }

    fn clear(w: &[u64], top16: u16) -> bool {
        summary_clear(w[usize::from(top16 >> 6)], top16)
    }

    #[test]
    fn a_summary_clears_exactly_the_16s_prefixes_reach() {
        // 10.20.0.0/16, 127.0.0.2/32, 172.16.0.0/12 (172.16 .. 172.31), and
        // 100.64.0.0/10 (100.64 .. 100.127).
        let w = summary(&[(0x0a14, 16), (0x7f00, 32), (0xac10, 12), (0x6440, 10)]);
        for covered in [0x0a14, 0x7f00, 0xac10, 0xac1f, 0x6440, 0x647f] {
            assert!(!clear(&w, covered), "{covered:#06x}");
        }
        for free in [0x0a13, 0x0a15, 0x7f01, 0xac0f, 0xac20, 0x643f, 0x6480, 0x0000, 0xffff] {
            assert!(clear(&w, free), "{free:#06x}");
        }
        // /0 reaches everywhere; an unfilled map (all zero) clears nothing.
        assert!(summary(&[(0, 0)]).iter().all(|&x| x == 0));
        assert!(!summary_clear(0, 0x1234));
    }
}
