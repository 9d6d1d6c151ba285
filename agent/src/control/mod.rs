//! Control socket: the CLI talks to the daemon over a root-only Unix socket
//! with one JSON request line and one JSON response line (for `events`,
//! followed by event lines).
pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

pub const DEFAULT_SOCKET: &str = "/run/warden/warden.sock";
/// Requests larger than this are refused (the protocol needs a few bytes).
pub const MAX_REQUEST: usize = 4096;

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// Re-read the config file and apply it (or keep the last good policy).
    Reload,
    /// Recent events, then (with `follow`) every new one: after the
    /// response line the daemon writes one JSON line per event, and
    /// `{"notice":"dropped","count":N}` when this reader fell behind.
    Events {
        #[serde(default)]
        filter: crate::sinks::tail::Filter,
        /// Recent events to send first (at most `tail::HISTORY`).
        #[serde(default)]
        tail: usize,
        #[serde(default)]
        follow: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::report::StatusReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<crate::report::ReloadOutcome>,
}
