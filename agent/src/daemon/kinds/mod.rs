//! The registry of enforcement kinds. A new kind is one module here that
//! implements `lifecycle::Enforcer`, plus its line in `KINDS`.
pub mod devices;
pub mod files;
pub mod network;

use super::lifecycle::{Kind, SetParts};
use crate::{
    policy::{CompiledPolicy, Mode, Segment},
    settings::AgentConfig,
};

/// Every kind, in the order they start and appear in status. Network
/// first: once identities are in the maps, the sock_addr hooks attach.
pub const KINDS: [Kind; 3] = [
    Kind {
        name: "network",
        start: network::start,
        configured: network::configured,
        resolve: |_, _, _| {},
        not_started: "",
    },
    Kind {
        name: "files",
        start: files::start,
        configured: files::configured,
        resolve: files::resolve,
        not_started: "the new policy adds file segments, but no file backend was started with this one: \
                      restart the agent to enforce them (the last good policy stays in force)",
    },
    Kind {
        name: "devices",
        start: devices::start,
        configured: devices::configured,
        resolve: devices::resolve,
        not_started: "the new policy adds device segments, but the device hook was not attached with this one: \
                      restart the agent to enforce them (the last good policy stays in force)",
    },
];

/// Resolves every kind's part of a kernel set for `policy` (stat() of
/// roots, /dev and /proc reads: done outside the cell lock).
pub fn resolve(policy: &CompiledPolicy, settings: &AgentConfig) -> SetParts {
    let mut set = SetParts::default();
    for k in &KINDS {
        (k.resolve)(policy, settings, &mut set);
    }
    set
}

/// State of one kind of segment: not configured, audit, or enforced (and how
/// many of its segments are audited only).
pub fn kernel_state<'p>(mode: Mode, segments: impl Iterator<Item = &'p Segment>) -> String {
    let (mut n, mut audit) = (0, 0);
    for s in segments {
        n += 1;
        audit += usize::from(s.mode == Some(Mode::Audit));
    }
    match (mode, n, audit) {
        (_, 0, _) => "not-configured".into(),
        (Mode::Audit, ..) => "audit".into(),
        (Mode::Enforce, _, 0) => "enforced".into(),
        (Mode::Enforce, n, a) if a == n => "audit".into(),
        (Mode::Enforce, _, a) => format!("enforced ({a} segment{} in audit)", if a == 1 { "" } else { "s" }),
    }
}
