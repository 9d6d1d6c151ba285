//! BPF-LSM file-segment hooks. A file belongs to a segment when it or one
//! of its ancestor dentries is a segment root, compared by (device, inode)
//! (`file_place`): symlinks, bind mounts, mount namespaces and `..` cannot
//! step around that. A file that leaves a tree by rename or hard link keeps
//! its root's protection (`FILE_ESCAPED`, written here, in the kernel, when
//! an allowed writer moves or links it out).
use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_cgroup_id,
    macros::{lsm, map},
    maps::{HashMap, PerCpuArray},
    programs::LsmContext,
};
use warden_common::{
    ACCESS_READ, ACCESS_WRITE, AllowKey, COUNTER_SLOTS, EVENT_FILE, FILE_TAIL_LINK, FILE_TAIL_OPEN, FILE_TAIL_RENAME,
    FOP_CREATE, FOP_LINK, FOP_MKDIR, FOP_OPEN, FOP_PTRACE, FOP_RENAME, FOP_RMDIR, FOP_SETATTR, FOP_UNLINK, FOP_XATTR,
    FileAllowValue, FileEvent, MAX_FILE_DEPTH, MAX_WORKLOADS, POLICY_SETS, STAT_EVENTS, VERDICT_DENIED,
    WORKLOAD_UNIDENTIFIED, file_verdict,
};

use crate::file_place::{
    Direct, Found, Mem, OFF_DENTRY_D_INODE, OFF_DENTRY_D_PARENT, OFF_FILE_F_FLAGS, OFF_FILE_F_INODE, OFF_FILE_F_MODE,
    OFF_INODE_I_MODE, Place, Probe, devs, file_dentry, g32, inode_identity, names_below, record_escape, segment_within,
};
use crate::file_tail;
use crate::maps::{STATS, Set, bump, cgroups, per_set};
use crate::record::{Who, header, reserve_decision, submit_flags};
use crate::scope::governed;

const EPERM: i32 = 1;

/// -EPERM, from frozen .rodata: a load the verifier knows, that the
/// compiler cannot fold into arithmetic.
/// 64 bits wide: the whole register is -EPERM, whether the verifier checks
/// its 32 or 64 bits.
#[unsafe(no_mangle)]
static DENY: i64 = -(EPERM as i64);

/// A hook's return value as the verifier wants it (6.12 checks an LSM
/// program returns within [-4095, 0]): the compiler otherwise computes a
/// verdict as `-(a & b)`, whose negation 6.12's verifier does not track.
#[inline(always)]
fn ret(r: i32) -> i32 {
    // SAFETY: reading a static.
    if r != 0 { unsafe { core::ptr::read_volatile(&DENY) as i32 } } else { 0 }
}

macro_rules! global_u32 {
    ($name:ident) => {
        #[unsafe(no_mangle)]
        static $name: u32 = 0;
    };
}
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
fn check_at(dentry: *const u8, want: u8, op: u8) -> (i32, Found) {
    check_with::<Direct>(dentry, want, op)
}

#[inline(always)]
fn check_with<M: Mem>(dentry: *const u8, want: u8, op: u8) -> (i32, Found) {
    check_within::<M, MAX_FILE_DEPTH, true>(dentry, want, op)
}

/// The checks of a link or rename: two walks in one program, both by
/// probe reads (every value a scalar: 6.1's verifier refuses the shifts the
/// compiler makes of typed pointers kept across two walks; links and
/// renames are rare, the cost does not matter), the second one light (the
/// destination directory, see `segment_within`).
#[inline(always)]
fn check_source(dentry: *const u8, want: u8, op: u8) -> (i32, Found) {
    check_within::<Direct, MAX_FILE_DEPTH, true>(dentry, want, op)
}

#[inline(always)]
fn check_dest(dentry: *const u8, want: u8, op: u8) -> (i32, Found) {
    check_within::<Probe, 32, false>(dentry, want, op)
}

/// Link and rename for kernels whose verifier cannot take two walks in
/// one program (the agent uses these there): the source is judged here,
/// the destination by a tail (`file_tail`) that gets what the source walk
/// found. Without the tail, a protected file may get a new name only in
/// its own directory (a temp-file-then-rename in place still works), since
/// where else it would land is not walked; the agent says so.
#[inline(always)]
fn source_then_tail<C: EbpfContext, const TAIL: u32>(ctx: &C, old: *const u8, new: *const u8, op: u8) -> i32 {
    let (r, place) = check_source(old, RW, op);
    if r != 0 {
        return r;
    }
    file_tail::hand_over::<C, TAIL>(ctx, &place);
    if place.segment != 0 && parent(old) != parent(new) {
        return -EPERM;
    }
    0
}

#[lsm(hook = "inode_link")]
pub fn inode_link_lite(ctx: LsmContext) -> i32 {
    ret(source_then_tail::<_, FILE_TAIL_LINK>(&ctx, ctx.arg(0), ctx.arg(2), FOP_LINK))
}

#[lsm(hook = "inode_rename")]
pub fn inode_rename_lite(ctx: LsmContext) -> i32 {
    ret(source_then_tail::<_, FILE_TAIL_RENAME>(&ctx, ctx.arg(1), ctx.arg(3), FOP_RENAME))
}

/// The destination half of `inode_link_lite`. Nothing handed over (the
/// caller did not come first): refused, never judged as "no source".
#[lsm(hook = "inode_link")]
pub fn inode_link_tail(ctx: LsmContext) -> i32 {
    ret(match file_tail::handed() {
        Some(place) => link_dest(ctx.arg(2), &place),
        None => -EPERM,
    })
}

#[lsm(hook = "inode_rename")]
pub fn inode_rename_tail(ctx: LsmContext) -> i32 {
    ret(match file_tail::handed() {
        Some(place) => rename_dest(ctx.arg(3), &place),
        None => -EPERM,
    })
}

#[inline(always)]
fn check_within<M: Mem, const DEPTH: u32, const FULL: bool>(dentry: *const u8, want: u8, op: u8) -> (i32, Found) {
    let set = Set::active();
    let place = segment_within::<M, DEPTH, FULL>(set, dentry);
    if (place.segment == 0 && !place.unknown()) || !governed() {
        return (0, place.found::<M>(dentry));
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
    emit::<M>(dentry, &place, op, v, want, &who);
    (if v == VERDICT_DENIED { -EPERM } else { 0 }, place.found::<M>(dentry))
}

#[inline(always)]
fn check(dentry: *const u8, want: u8, op: u8) -> i32 {
    check_at(dentry, want, op).0
}

#[inline(always)]
fn emit<M: Mem>(dentry: *const u8, place: &Place, op: u8, v: u8, want: u8, who: &Who) {
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
        let (n, truncated) = names_below::<M>(dentry, place, &mut (*ev).names);
        (*ev).components = n;
        (*ev).truncated = truncated;
    }
    entry.submit(submit_flags(v));
    bump(&STATS, STAT_EVENTS);
}

/// The access an open asks for, from the opened file itself (its mode,
/// and `O_TRUNC`): nothing the opener can still change.
#[inline(always)]
fn open_want(file: *const u8) -> u8 {
    let flags: u32 = Direct::read(file, g32(&OFF_FILE_F_FLAGS)).unwrap_or(0);
    let mode: u32 = Direct::read(file, g32(&OFF_FILE_F_MODE)).unwrap_or(0);
    if mode & FMODE_WRITE != 0 || flags & O_TRUNC != 0 { ACCESS_READ | ACCESS_WRITE } else { ACCESS_READ }
}

/// `file_open` where the verifier cannot take the second walk (6.1): an
/// overlay's real file opened under the overlay's path (6.1 does that) is
/// walked by `file_open_tail` from one of its own names. Without the tail
/// its place is unknown: governed openers are denied on filesystems that
/// hold a root.
#[lsm(hook = "file_open")]
pub fn file_open_lite(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    match file_dentry::<Direct>(file) {
        (dentry, false) => check(dentry, open_want(file), FOP_OPEN),
        _ => {
            file_tail::jump::<_, FILE_TAIL_OPEN>(&ctx);
            check_unknown(file)
        }
    }
}

/// The overlay half of `file_open_lite`: the real inode's own name, walked
/// in full by probe reads (the pointer is computed, see `file_dentry`).
#[lsm(hook = "file_open")]
pub fn file_open_tail(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    match file_dentry::<Direct>(file) {
        (alias, true) if !alias.is_null() => {
            check_within::<Probe, MAX_FILE_DEPTH, true>(alias, open_want(file), FOP_OPEN).0
        }
        _ => check_unknown(file),
    }
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    let want = open_want(file);
    match file_dentry::<Direct>(file) {
        (dentry, false) => check(dentry, want, FOP_OPEN),
        // The real inode of an overlay file opened under the overlay's path
        // (6.1): walked through one of its own names, by probe reads.
        // At most 16 levels: a second full walk would not pass 6.1's verifier.
        (alias, true) if !alias.is_null() => check_within::<Probe, 16, true>(alias, want, FOP_OPEN).0,
        // No name to walk at all: its place is unknown.
        _ => check_unknown(file),
    }
}

/// An open of an inode with no name to walk (an overlay's real file whose
/// dentry is not cached; overlayfs normally holds it): on a filesystem that
/// holds a root its place is unknown, so governed openers are denied.
#[inline(always)]
fn check_unknown(file: *const u8) -> i32 {
    let inode = Direct::ptr(file, g32(&OFF_FILE_F_INODE));
    let (dev, _) = inode_identity::<Direct>(inode);
    // SAFETY: values are written whole by the agent.
    let marked = unsafe { devs(Set::active()).get(dev) }.is_some();
    if marked && governed() { -EPERM } else { 0 }
}

const RW: u8 = ACCESS_READ | ACCESS_WRITE;

/// Where `inode_setattr`'s dentry is: 1 since 6.8 (a `struct mnt_idmap *`
/// comes first), 0 before. Set by the loader from the kernel's BTF.
#[unsafe(no_mangle)]
static SETATTR_DENTRY_ARG: u32 = 0;

/// The directory a new entry goes into: a new entry's dentry is negative
/// (no inode), so the walk starts at its parent, whose inode exists.
#[inline(always)]
fn parent(dentry: *const u8) -> *const u8 {
    Direct::ptr(dentry, g32(&OFF_DENTRY_D_PARENT))
}

// Inode-level hooks, not path-level ones: overlayfs changes its upper layer
// (and copies up) through internal VFS calls that only these see, and
// every syscall reaches them too. A new entry's dentry is negative (no
// inode yet): the walk starts at its parent.

#[lsm(hook = "inode_create")]
pub fn inode_create(ctx: LsmContext) -> i32 {
    check(parent(ctx.arg(1)), RW, FOP_CREATE)
}

#[lsm(hook = "inode_mknod")]
pub fn inode_mknod(ctx: LsmContext) -> i32 {
    check(parent(ctx.arg(1)), RW, FOP_CREATE)
}

#[lsm(hook = "inode_symlink")]
pub fn inode_symlink(ctx: LsmContext) -> i32 {
    check(parent(ctx.arg(1)), RW, FOP_CREATE)
}

#[lsm(hook = "inode_mkdir")]
pub fn inode_mkdir(ctx: LsmContext) -> i32 {
    check(parent(ctx.arg(1)), RW, FOP_MKDIR)
}

#[lsm(hook = "inode_unlink")]
pub fn inode_unlink(ctx: LsmContext) -> i32 {
    check(ctx.arg(1), RW, FOP_UNLINK)
}

#[lsm(hook = "inode_rmdir")]
pub fn inode_rmdir(ctx: LsmContext) -> i32 {
    check(ctx.arg(1), RW, FOP_RMDIR)
}

/// Mode, owner, times and size: chmod, chown, utimes, truncate(2).
#[lsm(hook = "inode_setattr")]
pub fn inode_setattr(ctx: LsmContext) -> i32 {
    // Both arguments are loaded at constant offsets (volatile, so the
    // compiler cannot merge them into one load at a computed offset, which
    // the verifier refuses for ctx), then one is picked.
    let args = ctx.as_ptr() as *const u64;
    // SAFETY: an LSM context holds the hook's arguments; inode_setattr has at least two.
    let (a0, a1) = unsafe { (core::ptr::read_volatile(args), core::ptr::read_volatile(args.add(1))) };
    // SAFETY: reading a static the loader patched.
    let dentry = if unsafe { core::ptr::read_volatile(&SETATTR_DENTRY_ARG) } == 0 { a0 } else { a1 };
    check(dentry as *const u8, RW, FOP_SETATTR)
}

/// (idmap or user namespace, dentry, name, …) on 6.1 as on 6.12.
#[lsm(hook = "inode_setxattr")]
pub fn inode_setxattr(ctx: LsmContext) -> i32 {
    check(ctx.arg(1), RW, FOP_XATTR)
}

#[lsm(hook = "inode_removexattr")]
pub fn inode_removexattr(ctx: LsmContext) -> i32 {
    check(ctx.arg(1), RW, FOP_XATTR)
}

/// A hard link to a protected file, made anywhere, is a second name that
/// may be outside the tree: it needs write access to the file's segment,
/// and the file keeps its root wherever the new name is.
#[lsm(hook = "inode_link")]
pub fn inode_link(ctx: LsmContext) -> i32 {
    let old: *const u8 = ctx.arg(0);
    let new: *const u8 = ctx.arg(2);
    let (r, place) = check_source(old, RW, FOP_LINK);
    if r != 0 {
        return ret(r);
    }
    ret(link_dest(new, &place))
}

/// Where a link lands: write access there too, and a protected file linked
/// out of its tree keeps its root.
#[inline(always)]
fn link_dest(new: *const u8, place: &Found) -> i32 {
    let (r, dest) = check_dest(parent(new), RW, FOP_LINK);
    if r == 0 && place.segment != 0 && dest.root_key != place.root_key {
        // Recorded before the link is made; if it then fails, the entry
        // only protects a file that stayed in its tree anyway.
        record_escape(place);
    }
    r
}

/// The moved entry needs write access where it was and where it goes, and
/// keeps its root if it leaves it. An existing target (replaced, or
/// swapped by RENAME_EXCHANGE) needs write access too and, when swapped,
/// keeps its own root wherever it lands.
#[lsm(hook = "inode_rename")]
pub fn inode_rename(ctx: LsmContext) -> i32 {
    let old: *const u8 = ctx.arg(1);
    let new: *const u8 = ctx.arg(3);
    let (r, place) = check_source(old, RW, FOP_RENAME);
    if r != 0 {
        return ret(r);
    }
    ret(rename_dest(new, &place))
}

/// Where a rename lands (see `inode_rename`).
#[inline(always)]
fn rename_dest(new: *const u8, place: &Found) -> i32 {
    let (r, target) = check_dest(parent(new), RW, FOP_RENAME);
    if r != 0 {
        return r;
    }
    // An existing target (replaced, or swapped by RENAME_EXCHANGE) needs
    // write access where it is too: its walk is the destination's. Whether
    // it is a directory is read by probe (a new name has no inode).
    let new_inode: *const u8 = Probe::ptr(new, g32(&OFF_DENTRY_D_INODE));
    let new_mode: u16 = Probe::read(new_inode, g32(&OFF_INODE_I_MODE)).unwrap_or(0);
    let new_dir = new_mode & 0o170000 == 0o040000;
    // A directory never leaves its tree (nor is swapped out of it): its
    // files are placed by walking their ancestors, and a subtree outside
    // every root would take them along unprotected. Files may leave, and
    // keep their root (below).
    if (place.segment != 0 && target.root_key != place.root_key && place.dir)
        || (target.segment != 0 && target.root_key != place.root_key && new_dir)
    {
        return -EPERM;
    }
    if place.segment != 0 && target.root_key != place.root_key {
        record_escape(place);
    }
    0
}

global_u32!(OFF_TASK_CGROUPS);
global_u32!(OFF_TASK_TGID);
global_u32!(OFF_CSS_SET_DFL_CGRP);
global_u32!(OFF_CGROUP_KN);
global_u32!(OFF_KERNFS_NODE_ID);

/// Another process's memory (ptrace, process_vm_readv, /proc/<pid>/mem all
/// ask `ptrace_access_check`): a governed process may reach only processes
/// of its own workload, or a dataset one of them has mapped would be read
/// around the segment.
#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    if !governed() {
        return 0;
    }
    let child: *const u8 = ctx.arg(0);
    let set = Set::active();
    // SAFETY: helper without preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: values are written whole by the agent.
    let mine = unsafe { cgroups(set).get(cgroup_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    let css = Direct::ptr(child, g32(&OFF_TASK_CGROUPS));
    let cgrp = Direct::ptr(css, g32(&OFF_CSS_SET_DFL_CGRP));
    let kn = Direct::ptr(cgrp, g32(&OFF_CGROUP_KN));
    let theirs_id: u64 = Direct::read(kn, g32(&OFF_KERNFS_NODE_ID)).unwrap_or(0);
    // SAFETY: as above.
    let theirs = unsafe { cgroups(set).get(theirs_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    if theirs_id == cgroup_id || (mine == theirs && mine != WORKLOAD_UNIDENTIFIED) {
        return 0;
    }
    let who = Who { set, workload: mine, rule: 0, cgroup_id };
    if let Some(mut entry) = reserve_decision::<FileEvent>(VERDICT_DENIED) {
        let ev = entry.as_mut_ptr();
        let tgid: u32 = Direct::read(child, g32(&OFF_TASK_TGID)).unwrap_or(0);
        // SAFETY: ev points at a reserved record of the right size.
        unsafe {
            (*ev).header = header(EVENT_FILE, VERDICT_DENIED, 0, &who);
            (*ev).op = FOP_PTRACE;
            (*ev).write = 0;
            (*ev).components = 0;
            (*ev).truncated = 0;
            (*ev).root_index = 0;
            (*ev).reason = 0;
            (*ev)._pad = 0;
            (*ev).dev = 0;
            (*ev).ino = tgid as u64;
            for i in 0..warden_common::FILE_EVENT_COMPONENTS {
                (*ev).names[i][0] = 0;
            }
        }
        entry.submit(submit_flags(VERDICT_DENIED));
        bump(&STATS, STAT_EVENTS);
    }
    -EPERM
}
