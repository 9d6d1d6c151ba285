//! The words `warden status` and `warden probe` share, so both say the
//! same thing about a kind of segment: its backend and what happens to it
//! while the agent restarts.

/// Network segments: the hooks that decide, all in the kernel.
pub const NETWORK_BACKEND: &str =
    "cgroup sock_addr (connect4/6, sendmsg4/6), cgroup_skb/egress backstop, socket-creation guard; in-kernel decision";
/// Device segments.
pub const DEVICES_BACKEND: &str = "cgroup/dev (in-kernel decision on open and mknod)";
/// File segments, by backend (`lsm` | `fanotify` | `none`: the names
/// events carry too).
pub const FILES_LSM: &str = "lsm";
pub const FILES_FANOTIFY: &str = "fanotify";

/// While the agent restarts or is down, a kind whose programs are pinned.
pub const RESTART_PINNED: &str = "keeps enforcing while the agent restarts or is down (pinned links and maps)";
/// Pinned, but on a bpffs of the agent's own mount namespace (a pod's), not
/// the host's: the pins go with that namespace.
pub const RESTART_POD_BPFFS: &str = "stops when the agent's container goes: its pins are on a bpffs of its own mount \
                                     namespace, not the host's (mount the host's /sys/fs/bpf into the pod)";
/// As above, where bpffs is missing.
pub const RESTART_UNPINNED: &str = "stops while the agent is down (no bpffs to pin to)";
/// fanotify with its keeper process.
pub const RESTART_KEEPER: &str = "while the agent is down its keeper decides opens from the pinned maps (protected \
                                  files denied to governed openers); a crash denies the opens it held";
/// fanotify without a keeper.
pub const RESTART_NO_KEEPER: &str =
    "a crash or restart lets the opens it held through (no keeper process); opens wait for the next agent";

/// The state word of a kind a node can enforce: `enforced`, `partial`
/// (some ways around it cannot be closed here), or `unavailable`.
pub fn capability_state(enforced: bool, partial: bool) -> &'static str {
    match (enforced, partial) {
        (false, _) => "unavailable",
        (true, true) => "partial",
        (true, false) => "enforced",
    }
}
