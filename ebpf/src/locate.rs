//! `file_locate`: where the file behind one of the caller's descriptors
//! is, by the same walk as the LSM hooks. Never attached: the agent runs it
//! with BPF_PROG_TEST_RUN, which runs it in the calling thread, so
//! `current` is the agent and the descriptor is one of its own (a fanotify
//! event's file, or one it opened while scanning a tree). That gives the
//! fanotify backend the file's real place, wherever and however the opener
//! named it: no path string, no mount namespace, no overlay in between.
//!
//! Arguments: fd, output slot (< LOCATE_SLOTS; `LOCATE_OUTPUT` set: write
//! it), alias. Alias 0 walks the
//! name the file was opened by; alias k ≥ 1 walks the k-th cached name of
//! its inode (one walk per run keeps every kernel's verifier well inside
//! its limits; the agent asks for other names only when the first walk
//! says `LOCATE_MULTI_LINKED`).
use aya_ebpf::{helpers::bpf_get_current_task, macros::map, maps::Array, programs::RawTracePointContext};
use warden_common::{
    FILE_REASON_ESCAPED, LOCATE_BAD_FD, LOCATE_ESCAPED, LOCATE_MAX_ALIASES, LOCATE_MULTI_LINKED, LOCATE_NO_ALIAS,
    LOCATE_OUTPUT, LOCATE_SLOTS, LOCATE_UNKNOWN, Located, root_value,
};

use crate::file_place::{
    Mem, OFF_DENTRY_D_ALIAS, OFF_DENTRY_D_INODE, OFF_FDT_FD, OFF_FDT_MAX_FDS, OFF_FILE_F_INODE, OFF_FILES_FDT,
    OFF_INODE_I_DENTRY, OFF_INODE_I_GENERATION, OFF_INODE_I_NLINK, OFF_TASK_FILES, Probe, file_dentry, g32,
    names_below, segment_of,
};
use crate::maps::Set;

#[map]
static FILE_LOCATED: Array<Located> = Array::pinned(LOCATE_SLOTS, 0);

/// The caller's open file `fd`, or null.
#[inline(always)]
fn own_file(fd: u64) -> *const u8 {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files = Probe::ptr(task, g32(&OFF_TASK_FILES));
    let fdt = Probe::ptr(files, g32(&OFF_FILES_FDT));
    let max: u32 = Probe::read(fdt, g32(&OFF_FDT_MAX_FDS)).unwrap_or(0);
    if fd >= max as u64 {
        return core::ptr::null();
    }
    let table = Probe::ptr(fdt, g32(&OFF_FDT_FD));
    Probe::ptr(table, (fd as usize) * 8)
}

/// The `k`-th (from 1) cached name of `inode`, or null.
#[inline(always)]
fn alias(inode: *const u8, k: u64) -> *const u8 {
    // i_dentry is an hlist_head; each node is a dentry's d_alias.
    let mut node = Probe::ptr(inode, g32(&OFF_INODE_I_DENTRY));
    for i in 1..=LOCATE_MAX_ALIASES {
        if node.is_null() {
            return core::ptr::null();
        }
        if i == k {
            return node.wrapping_sub(g32(&OFF_DENTRY_D_ALIAS));
        }
        // hlist_node.next is its first field.
        node = Probe::ptr(node, 0);
    }
    core::ptr::null()
}

/// Written out rather than with `#[raw_tracepoint]`, whose wrapper drops
/// the return value: the result is the return value.
#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp/file_locate")]
pub fn file_locate(ctx: *mut core::ffi::c_void) -> u32 {
    locate(RawTracePointContext::new(ctx))
}

#[inline(always)]
fn locate(ctx: RawTracePointContext) -> u32 {
    let fd: u64 = ctx.arg(0);
    let slot_arg: u64 = ctx.arg(1);
    // Bit 16: also write the identity and names (only for an event).
    let (slot, with_output) = (slot_arg & 0xffff, slot_arg & LOCATE_OUTPUT != 0);
    let k: u64 = ctx.arg(2);
    let file = own_file(fd);
    if file.is_null() {
        return LOCATE_BAD_FD;
    }
    let dentry = if k == 0 {
        file_dentry::<Probe>(file).0
    } else {
        let a = alias(Probe::ptr(file, g32(&OFF_FILE_F_INODE)), k);
        if a.is_null() {
            return LOCATE_NO_ALIAS;
        }
        a
    };
    if dentry.is_null() {
        return LOCATE_UNKNOWN | warden_common::FILE_REASON_DISCONNECTED as u32;
    }
    let mut place = segment_of::<Probe>(Set::active(), dentry);
    let inode = Probe::ptr(dentry, g32(&OFF_DENTRY_D_INODE));
    let nlink: u32 = Probe::read(inode, g32(&OFF_INODE_I_NLINK)).unwrap_or(0);
    if k != 0 && place.segment != 0 {
        // Found through another of its names: it has one outside too.
        place.reason = FILE_REASON_ESCAPED;
    }
    if with_output && let Some(out) = FILE_LOCATED.get_ptr_mut(slot as u32) {
        // SAFETY: a valid array slot, written by this thread only (its slot).
        unsafe {
            (*out).dev = place.dev;
            (*out).ino = place.ino;
            (*out).generation = Probe::read(inode, g32(&OFF_INODE_I_GENERATION)).unwrap_or(0);
            (*out).nlink = nlink;
            (*out)._pad = [0; 6];
            if place.segment != 0 {
                let (n, truncated) = names_below::<Probe>(dentry, &place, &mut (*out).names);
                (*out).components = n;
                (*out).truncated = truncated;
            } else {
                (*out).components = 0;
                (*out).truncated = 0;
            }
        }
    }
    if place.unknown() {
        return LOCATE_UNKNOWN | place.reason as u32;
    }
    if place.segment == 0 {
        return if nlink > 1 { LOCATE_MULTI_LINKED } else { 0 };
    }
    let escaped = if place.reason == FILE_REASON_ESCAPED { LOCATE_ESCAPED } else { 0 };
    root_value(place.segment, place.root) | escaped
}
