//! Second walks in programs of their own. Before 6.5 the verifier gives up
//! on a program with two ancestry walks (a million instructions), so the
//! one-walk hooks (`*_lite`) hand their second walk to a tail-called program
//! (`*_tail`, loaded for the same hook, never attached): an overlay file's
//! real inode, or where a link or rename lands. One program array per hook:
//! the kernel refuses a tail call between programs of different hooks.
//!
//! A tail that is missing (not loaded, or its slot emptied) leaves the
//! caller's own fallback in force, which is stricter, never looser.
use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{HashMap, ProgramArray},
};
use warden_common::{FILE_TAIL_LINK, FILE_TAIL_RENAME};

use crate::file_place::Found;

// Slot 0 holds the tail (`map_names::FILE_TAILS`). Pinned: a program
// array's entries are cleared when its last user reference goes, and the
// attached callers must keep reaching their tails after the agent exits.
#[map]
static FILE_OPEN_TAIL: ProgramArray = ProgramArray::pinned(1, 0);
#[map]
static INODE_LINK_TAIL: ProgramArray = ProgramArray::pinned(1, 0);
#[map]
static INODE_RENAME_TAIL: ProgramArray = ProgramArray::pinned(1, 0);

/// What a caller found of its source, keyed by thread: a tail call keeps
/// the context but no registers. Pinned so an earlier agent's callers and
/// a later agent's tails share it.
#[map]
static FILE_TAIL_SOURCE: HashMap<u64, Found> = HashMap::pinned(4096, BPF_F_NO_PREALLOC);

/// Jumps to tail `TAIL` (`FILE_TAIL_*`); returns only if there is none.
/// A constant, so each program refers to its own hook's array only.
#[inline(always)]
pub fn jump<C: EbpfContext, const TAIL: u32>(ctx: &C) {
    let array = match TAIL {
        FILE_TAIL_LINK => &INODE_LINK_TAIL,
        FILE_TAIL_RENAME => &INODE_RENAME_TAIL,
        _ => &FILE_OPEN_TAIL,
    };
    // SAFETY: the tail takes the same context (same hook); control does not
    // come back on success.
    unsafe { array.tail_call(ctx, 0) };
}

/// Hands `place` to tail `TAIL` and jumps; returns only if there is no tail
/// (or no room to hand it over), having taken `place` back.
#[inline(always)]
pub fn hand_over<C: EbpfContext, const TAIL: u32>(ctx: &C, place: &Found) {
    let tid = bpf_get_current_pid_tgid();
    if FILE_TAIL_SOURCE.insert(tid, *place, 0).is_ok() {
        jump::<C, TAIL>(ctx);
        let _ = FILE_TAIL_SOURCE.remove(tid);
    }
}

/// What this thread's caller handed over (taken: used once).
#[inline(always)]
pub fn handed() -> Option<Found> {
    let tid = bpf_get_current_pid_tgid();
    // SAFETY: values are written whole by `hand_over`.
    let place = unsafe { FILE_TAIL_SOURCE.get(tid) }.copied()?;
    let _ = FILE_TAIL_SOURCE.remove(tid);
    Some(place)
}
