//! Names of the kernel maps, as the agent takes them from the object and
//! as they are pinned in bpffs (so they are ABI: never rename one).
//!
//! aya names a map after its `#[map]` static in `ebpf/` and the macro wants
//! a literal, so the statics there spell these out; the agent's test
//! `every_map_name_is_in_the_object` checks each name against the built object.

/// Which policy set the hooks read.
pub const POLICY_SET: &str = "POLICY_SET";
/// Policy file digest per set.
pub const POLICY_TAG: &str = "POLICY_TAG";
/// Network, file and device decision counters (`counter_slot`).
pub const COUNTERS: &str = "COUNTERS";
pub const FILE_COUNTERS: &str = "FILE_COUNTERS";
pub const DEVICE_COUNTERS: &str = "DEVICE_COUNTERS";
/// Pipeline statistics (`STAT_*`).
pub const STATS: &str = "STATS";
/// Decision records and cgroup records (ring buffers).
pub const EVENTS: &str = "EVENTS";
pub const CGROUP_EVENTS: &str = "CGROUP_EVENTS";
/// Kubelet's GPU assignment per container cgroup (one for both sets).
pub const DEVICE_ASSIGNED: &str = "DEVICE_ASSIGNED";

// Policy maps, one per set: index by set.
pub const CGROUP_WL: [&str; 2] = ["CGROUP_WL_0", "CGROUP_WL_1"];
pub const SEG_V4: [&str; 2] = ["SEG_V4_0", "SEG_V4_1"];
pub const SEG_V6: [&str; 2] = ["SEG_V6_0", "SEG_V6_1"];
pub const SEG_INFO: [&str; 2] = ["SEG_INFO_0", "SEG_INFO_1"];
pub const ALLOW: [&str; 2] = ["ALLOW_0", "ALLOW_1"];
pub const SETTINGS: [&str; 2] = ["SETTINGS_0", "SETTINGS_1"];
pub const FILE_ROOTS: [&str; 2] = ["FILE_ROOTS_0", "FILE_ROOTS_1"];
pub const FILE_DEVS: [&str; 2] = ["FILE_DEVS_0", "FILE_DEVS_1"];
pub const FILE_ALLOW: [&str; 2] = ["FILE_ALLOW_0", "FILE_ALLOW_1"];
pub const DEV_SEGS: [&str; 2] = ["DEV_SEGS_0", "DEV_SEGS_1"];
pub const DEV_ALLOW: [&str; 2] = ["DEV_ALLOW_0", "DEV_ALLOW_1"];
pub const SOCKET_GRANTS: [&str; 2] = ["SOCKET_GRANTS_0", "SOCKET_GRANTS_1"];
/// Per-/16 summaries: which destinations skip the prefix lookup.
pub const CLEAR_V4: [&str; 2] = ["CLEAR_V4_0", "CLEAR_V4_1"];
pub const CLEAR_V6: [&str; 2] = ["CLEAR_V6_0", "CLEAR_V6_1"];
/// When the backstop and socket hooks last reported each key (rate limit).
pub const REPORTED: &str = "REPORTED";
/// Sockets a sock_addr hook audited (the backstop skips them).
pub const AUDITED_SOCKETS: &str = "AUDITED_SOCKETS";

/// Files and directories that left a segment tree: (dev, ino) → root.
pub const FILE_ESCAPED: &str = "FILE_ESCAPED";
/// Whether `FILE_ESCAPED` holds anything (the walk skips it otherwise).
pub const FILE_ESCAPED_ANY: &str = "FILE_ESCAPED_ANY";
/// Output slots of the `file_locate` program.
pub const FILE_LOCATED: &str = "FILE_LOCATED";
/// The node's event sequence (mapped by the agent; outlives it).
pub const EVENT_SEQ: &str = "EVENT_SEQ";
/// Second halves of the one-walk file hooks, tail-called from slot 0 of
/// these, indexed by `FILE_TAIL_*`.
pub const FILE_TAILS: [&str; 3] = ["FILE_OPEN_TAIL", "INODE_LINK_TAIL", "INODE_RENAME_TAIL"];
/// What a one-walk hook found of its source, by thread, for its tail.
pub const FILE_TAIL_SOURCE: &str = "FILE_TAIL_SOURCE";

const SINGLE: [&str; 19] = [
    POLICY_SET,
    POLICY_TAG,
    COUNTERS,
    FILE_COUNTERS,
    DEVICE_COUNTERS,
    STATS,
    EVENTS,
    CGROUP_EVENTS,
    DEVICE_ASSIGNED,
    REPORTED,
    AUDITED_SOCKETS,
    FILE_ESCAPED,
    FILE_ESCAPED_ANY,
    FILE_LOCATED,
    EVENT_SEQ,
    FILE_TAILS[0],
    FILE_TAILS[1],
    FILE_TAILS[2],
    FILE_TAIL_SOURCE,
];
const PER_SET: [[&str; 2]; 14] = [
    CGROUP_WL,
    SEG_V4,
    SEG_V6,
    SEG_INFO,
    ALLOW,
    SETTINGS,
    FILE_ROOTS,
    FILE_DEVS,
    FILE_ALLOW,
    DEV_SEGS,
    DEV_ALLOW,
    SOCKET_GRANTS,
    CLEAR_V4,
    CLEAR_V6,
];

/// Every map name above.
pub fn all() -> impl Iterator<Item = &'static str> {
    SINGLE.into_iter().chain(PER_SET.into_iter().flatten())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_sets_numbered() {
        let names: std::vec::Vec<&str> = super::all().collect();
        assert_eq!(names.len(), 19 + 2 * 14);
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        for pair in super::PER_SET {
            assert!(
                pair[0].ends_with("_0")
                    && pair[1].ends_with("_1")
                    && pair[0][..pair[0].len() - 2] == pair[1][..pair[1].len() - 2]
            );
        }
    }
}
