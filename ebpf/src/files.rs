//! BPF-LSM file-segment hooks. A file belongs to a segment when it or one
//! of its ancestor dentries is a segment root, compared by (device, inode)
//! (`file_place`): symlinks, bind mounts, mount namespaces and `..` cannot
//! step around that. A file that leaves a tree by rename or hard link keeps
//! its root's protection (`FILE_ESCAPED`, written here, in the kernel, when
//! an allowed writer moves or links it out).
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_cgroup_id,
    macros::{lsm, map},
    maps::{HashMap, PerCpuArray},
    programs::LsmContext,
};
use warden_common::{
    ACCESS_READ, ACCESS_WRITE, AllowKey, COUNTER_SLOTS, EVENT_FILE, FOP_CREATE, FOP_LINK, FOP_MKDIR, FOP_OPEN,
    FOP_RENAME, FOP_RMDIR, FOP_TRUNCATE, FOP_UNLINK, FileAllowValue, FileEvent, MAX_WORKLOADS, POLICY_SETS,
    STAT_EVENTS, VERDICT_DENIED, WORKLOAD_UNIDENTIFIED, file_verdict,
};

use crate::file_place::{
    Direct, Mem, OFF_FILE_F_FLAGS, OFF_FILE_F_MODE, OFF_PATH_DENTRY, Place, file_dentry, g32, names_below,
    record_escape, segment_of,
};
use crate::maps::{STATS, Set, bump, cgroups, per_set};
use crate::record::{Who, header, reserve_decision, submit_flags};
use crate::scope::governed;

const EPERM: i32 = 1;
const FMODE_WRITE: u32 = 0x2;
const O_TRUNC: u32 = 0o1000;

per_set! {
    /// (workload, segment) → granted access.
    fn file_allow -> HashMap<AllowKey, FileAllowValue>: FILE_ALLOW_0, FILE_ALLOW_1 =
        HashMap::pinned(65536, BPF_F_NO_PREALLOC)
}

/// File decision counters, `Set::counter` slots of both sets.
#[map]
static FILE_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(POLICY_SETS * COUNTER_SLOTS, 0);

/// `warden_common::file_verdict` over this set's maps (the agent's
/// `CompiledPolicy::file_verdict` uses the same table).
#[inline(always)]
fn verdict(set: Set, workload: u32, segment: u16, want: u8) -> (u8, u32) {
    let entry = if workload != WORKLOAD_UNIDENTIFIED {
        let key = AllowKey { workload_id: workload, segment_id: segment, _pad: 0 };
        // SAFETY: values are written whole by the agent.
        unsafe { file_allow(set).get(key) }
    } else {
        None
    };
    file_verdict(entry, want, || set.segment_mode(segment))
}

/// Decides an operation on `dentry` needing `want`; returns the verdict
/// (0 or -EPERM) and where the file is.
#[inline(always)]
fn check_at(dentry: *const u8, want: u8, op: u8) -> (i32, Place) {
    let set = Set::active();
    let place = segment_of::<Direct>(set, dentry);
    if (place.segment == 0 && !place.unknown()) || !governed() {
        return (0, place);
    }
    // SAFETY: helper without preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: values are written whole by the agent.
    let workload = unsafe { cgroups(set).get(cgroup_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    // A file whose place is unknown is denied to every governed opener:
    // it may be inside a tree (fail closed).
    let (v, rule) = if place.unknown() { (VERDICT_DENIED, 0) } else { verdict(set, workload, place.segment, want) };
    if workload <= MAX_WORKLOADS {
        bump(&FILE_COUNTERS, set.counter(workload, v));
    }
    let who = Who { set, workload, rule, cgroup_id };
    emit(dentry, &place, op, v, want, &who);
    (if v == VERDICT_DENIED { -EPERM } else { 0 }, place)
}

#[inline(always)]
fn check(dentry: *const u8, want: u8, op: u8) -> i32 {
    check_at(dentry, want, op).0
}

#[inline(always)]
fn emit(dentry: *const u8, place: &Place, op: u8, v: u8, want: u8, who: &Who) {
    let Some(mut entry) = reserve_decision::<FileEvent>(v) else { return };
    let ev = entry.as_mut_ptr();
    // SAFETY: ev points at a reserved record of the right size.
    unsafe {
        (*ev).header = header(EVENT_FILE, v, place.segment, who);
        (*ev).op = op;
        (*ev).write = (want & ACCESS_WRITE != 0) as u8;
        (*ev).root_index = place.root;
        (*ev).reason = place.reason;
        (*ev)._pad = 0;
        (*ev).dev = place.dev;
        (*ev).ino = place.ino;
        // Names below the segment root, file first: the agent prefixes the
        // root's configured path (dentry names are filesystem-relative).
        let (n, truncated) = names_below::<Direct>(dentry, place, &mut (*ev).names);
        (*ev).components = n;
        (*ev).truncated = truncated;
    }
    entry.submit(submit_flags(v));
    bump(&STATS, STAT_EVENTS);
}

#[inline(always)]
fn path_dentry(path: *const u8) -> *const u8 {
    Direct::ptr(path, g32(&OFF_PATH_DENTRY))
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    let flags: u32 = Direct::read(file, g32(&OFF_FILE_F_FLAGS)).unwrap_or(0);
    let mode: u32 = Direct::read(file, g32(&OFF_FILE_F_MODE)).unwrap_or(0);
    let want = if mode & FMODE_WRITE != 0 || flags & O_TRUNC != 0 { ACCESS_READ | ACCESS_WRITE } else { ACCESS_READ };
    check(file_dentry::<Direct>(file), want, FOP_OPEN)
}

const RW: u8 = ACCESS_READ | ACCESS_WRITE;

#[lsm(hook = "path_truncate")]
pub fn path_truncate(ctx: LsmContext) -> i32 {
    let path: *const u8 = ctx.arg(0);
    check(path_dentry(path), RW, FOP_TRUNCATE)
}

#[lsm(hook = "path_unlink")]
pub fn path_unlink(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    check(dentry, RW, FOP_UNLINK)
}

#[lsm(hook = "path_rmdir")]
pub fn path_rmdir(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    check(dentry, RW, FOP_RMDIR)
}

/// New entries are checked against their parent directory (the new dentry
/// is negative: it has no inode yet).
#[lsm(hook = "path_mkdir")]
pub fn path_mkdir(ctx: LsmContext) -> i32 {
    let dir: *const u8 = ctx.arg(0);
    check(path_dentry(dir), RW, FOP_MKDIR)
}

/// Also called for O_CREAT opens (may_o_create), so creation is covered.
#[lsm(hook = "path_mknod")]
pub fn path_mknod(ctx: LsmContext) -> i32 {
    let dir: *const u8 = ctx.arg(0);
    check(path_dentry(dir), RW, FOP_CREATE)
}

#[lsm(hook = "path_symlink")]
pub fn path_symlink(ctx: LsmContext) -> i32 {
    let dir: *const u8 = ctx.arg(0);
    check(path_dentry(dir), RW, FOP_CREATE)
}

/// A hard link to a protected file, made anywhere, would be a second name
/// outside the tree: it needs write access to the file's segment.
#[lsm(hook = "path_link")]
pub fn path_link(ctx: LsmContext) -> i32 {
    let old: *const u8 = ctx.arg(0);
    let new_dir: *const u8 = ctx.arg(1);
    let (r, place) = check_at(old, RW, FOP_LINK);
    if r != 0 {
        return r;
    }
    leave(old, &place, path_dentry(new_dir), FOP_LINK)
}

/// The second half of a rename or link: the destination needs write access
/// too, and a protected file that gets a name outside its root keeps that
/// root (recorded before the operation runs; a later failure of it only
/// leaves an entry that protects a file that stayed in the tree anyway).
#[inline(always)]
fn leave(old: *const u8, place: &Place, new_dir: *const u8, op: u8) -> i32 {
    let (r, dest) = check_at(new_dir, RW, op);
    if r == 0 && place.segment != 0 && dest.root_key != place.root_key {
        record_escape::<Direct>(old, place);
    }
    r
}

#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    let old: *const u8 = ctx.arg(1);
    let new_dir: *const u8 = ctx.arg(2);
    let (r, place) = check_at(old, RW, FOP_RENAME);
    if r != 0 {
        return r;
    }
    leave(old, &place, path_dentry(new_dir), FOP_RENAME)
}
