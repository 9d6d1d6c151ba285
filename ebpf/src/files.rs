//! BPF-LSM file-segment hooks. A file belongs to a segment when it or one
//! of its ancestor dentries is a segment root, compared by (device, inode):
//! symlinks, bind mounts and `..` cannot step around that.
//!
//! Struct offsets (`file.f_path`, `dentry.d_parent`, …) come from the
//! running kernel's BTF, read by the agent and set as globals at load time.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{bpf_get_current_cgroup_id, bpf_probe_read_kernel_str_bytes},
    macros::{lsm, map},
    maps::{HashMap, PerCpuArray},
    programs::LsmContext,
};
use warden_common::{
    ACCESS_READ, ACCESS_WRITE, AllowKey, COUNTER_SLOTS, EVENT_FILE, FILE_EVENT_COMPONENTS, FOP_CREATE, FOP_LINK,
    FOP_MKDIR, FOP_OPEN, FOP_RENAME, FOP_RMDIR, FOP_TRUNCATE, FOP_UNLINK, FileAllowValue, FileEvent, InodeKey,
    MAX_FILE_DEPTH, MAX_WORKLOADS, POLICY_SETS, STAT_EVENTS, VERDICT_DENIED, WORKLOAD_UNIDENTIFIED, file_verdict,
};

use crate::maps::{STATS, Set, bump, cgroups, per_set};
use crate::record::{Who, header, reserve_decision, submit_flags};
use crate::scope::governed;

const EPERM: i32 = 1;
const FMODE_WRITE: u32 = 0x2;
const O_TRUNC: u32 = 0o1000;

per_set! {
    /// (device, inode) of each segment root → segment id.
    fn roots -> HashMap<InodeKey, u32>: FILE_ROOTS_0, FILE_ROOTS_1 = HashMap::pinned(4096, 0)
}
per_set! {
    /// Filesystems (kernel dev_t) holding at least one root: opens elsewhere
    /// skip the ancestry walk entirely.
    fn devs -> HashMap<u64, u8>: FILE_DEVS_0, FILE_DEVS_1 = HashMap::pinned(256, 0)
}
per_set! {
    /// (workload, segment) → granted access.
    fn file_allow -> HashMap<AllowKey, FileAllowValue>: FILE_ALLOW_0, FILE_ALLOW_1 =
        HashMap::pinned(65536, BPF_F_NO_PREALLOC)
}

/// File decision counters, `Set::counter` slots of both sets.
#[map]
static FILE_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(POLICY_SETS * COUNTER_SLOTS, 0);

macro_rules! global {
    ($name:ident, $ty:ty) => {
        #[unsafe(no_mangle)]
        static $name: $ty = 0;
    };
}
global!(OFF_FILE_F_PATH, u32);
global!(OFF_FILE_F_MODE, u32);
global!(OFF_FILE_F_FLAGS, u32);
global!(OFF_PATH_DENTRY, u32);
global!(OFF_DENTRY_D_PARENT, u32);
global!(OFF_DENTRY_D_INODE, u32);
global!(OFF_DENTRY_D_NAME, u32);
global!(OFF_QSTR_NAME, u32);
global!(OFF_INODE_I_INO, u32);
global!(OFF_INODE_I_SB, u32);
global!(OFF_SB_S_DEV, u32);

#[inline(always)]
fn g32(v: &'static u32) -> usize {
    // SAFETY: reading a static the loader patched.
    unsafe { core::ptr::read_volatile(v) as usize }
}

/// Reads a field of a kernel struct. LSM hooks get BTF-typed pointers and
/// the offsets are verifier-known constants (frozen .rodata), so this is a
/// plain load the verifier checks against BTF and guards with an exception
/// entry (a NULL or bad pointer reads as 0): no helper call per field.
#[inline(always)]
fn read<T: Copy>(base: *const u8, off: usize) -> Option<T> {
    if base.is_null() {
        return None;
    }
    // SAFETY: see above; the verifier rejects the program otherwise.
    Some(unsafe { core::ptr::read_volatile(base.wrapping_add(off) as *const T) })
}

/// Where a dentry is: segment (0 = none), root index, the file's identity,
/// and the matched root's dentry (where event path names stop).
struct Place {
    segment: u16,
    root: u16,
    dev: u64,
    ino: u64,
    root_dentry: *const u8,
}

/// (dev, ino) of a dentry's inode, or (0, 0) for a negative dentry.
#[inline(always)]
fn identity(d: *const u8) -> (u64, u64) {
    let inode: *const u8 = read(d, g32(&OFF_DENTRY_D_INODE)).unwrap_or(core::ptr::null());
    if inode.is_null() {
        return (0, 0);
    }
    let ino: u64 = read(inode, g32(&OFF_INODE_I_INO)).unwrap_or(0);
    let sb: *const u8 = read(inode, g32(&OFF_INODE_I_SB)).unwrap_or(core::ptr::null());
    let dev: u32 = read(sb, g32(&OFF_SB_S_DEV)).unwrap_or(0);
    (dev as u64, ino)
}

/// Walks up from `dentry` looking for a segment root. The loop only yields
/// the root's map value and dentry, never its depth, so every exit leaves
/// the verifier an equivalent state and the code after it is checked once.
#[inline(always)]
fn segment_of(set: Set, dentry: *const u8) -> Place {
    let (dev, ino) = identity(dentry);
    let none = Place { segment: 0, root: 0, dev, ino, root_dentry: core::ptr::null() };
    // A negative dentry (creation) has no inode yet: its parent is checked
    // by the caller. Otherwise the walk only runs on marked filesystems.
    // SAFETY: values are written whole by the agent.
    if dev != 0 && unsafe { devs(set).get(dev) }.is_none() {
        return none;
    }
    let mut d = dentry;
    let mut found = 0u32;
    let mut root_dentry = core::ptr::null();
    for _ in 0..MAX_FILE_DEPTH {
        let (kdev, kino) = identity(d);
        // SAFETY: values are written whole by the agent.
        if let Some(v) = unsafe { roots(set).get(InodeKey { dev: kdev, ino: kino }) } {
            found = *v;
            root_dentry = d;
            break;
        }
        let parent: *const u8 = read(d, g32(&OFF_DENTRY_D_PARENT)).unwrap_or(core::ptr::null());
        if parent.is_null() || parent == d {
            break;
        }
        d = parent;
    }
    Place { segment: found as u16, root: (found >> 16) as u16, dev, ino, root_dentry }
}

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

/// Decides an operation on `dentry` needing `want`; returns 0 or -EPERM.
#[inline(always)]
fn check(dentry: *const u8, want: u8, op: u8) -> i32 {
    let set = Set::active();
    let place = segment_of(set, dentry);
    let segment = place.segment;
    if segment == 0 || !governed() {
        return 0;
    }
    // SAFETY: helper without preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: values are written whole by the agent.
    let workload = unsafe { cgroups(set).get(cgroup_id) }.copied().unwrap_or(WORKLOAD_UNIDENTIFIED);
    let (v, rule) = verdict(set, workload, segment, want);
    if workload <= MAX_WORKLOADS {
        bump(&FILE_COUNTERS, set.counter(workload, v));
    }
    let who = Who { set, workload, rule, cgroup_id };
    emit(dentry, &place, op, v, want, &who);
    if v == VERDICT_DENIED { -EPERM } else { 0 }
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
        (*ev)._pad = 0;
        (*ev).dev = place.dev;
        (*ev).ino = place.ino;
        // Names below the segment root, file first: the agent prefixes the
        // root's configured path (dentry names are filesystem-relative).
        let mut d = dentry;
        let mut n = 0u8;
        (*ev).truncated = 1;
        for i in 0..FILE_EVENT_COMPONENTS {
            (*ev).names[i][0] = 0;
        }
        for i in 0..FILE_EVENT_COMPONENTS {
            if d == place.root_dentry || d.is_null() {
                (*ev).truncated = 0;
                break;
            }
            let name: *const u8 = read(d, g32(&OFF_DENTRY_D_NAME) + g32(&OFF_QSTR_NAME)).unwrap_or(core::ptr::null());
            if !name.is_null() {
                let _ = bpf_probe_read_kernel_str_bytes(name, &mut (*ev).names[i]);
            }
            n += 1;
            d = read(d, g32(&OFF_DENTRY_D_PARENT)).unwrap_or(core::ptr::null());
        }
        if d == place.root_dentry {
            (*ev).truncated = 0;
        }
        (*ev).components = n;
    }
    entry.submit(submit_flags(v));
    bump(&STATS, STAT_EVENTS);
}

#[inline(always)]
fn path_dentry(path: *const u8) -> *const u8 {
    read(path, g32(&OFF_PATH_DENTRY)).unwrap_or(core::ptr::null())
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    let flags: u32 = read(file, g32(&OFF_FILE_F_FLAGS)).unwrap_or(0);
    let mode: u32 = read(file, g32(&OFF_FILE_F_MODE)).unwrap_or(0);
    let want = if mode & FMODE_WRITE != 0 || flags & O_TRUNC != 0 { ACCESS_READ | ACCESS_WRITE } else { ACCESS_READ };
    let dentry = path_dentry(file.wrapping_add(g32(&OFF_FILE_F_PATH)));
    check(dentry, want, FOP_OPEN)
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
    let r = check(old, RW, FOP_LINK);
    if r != 0 {
        return r;
    }
    check(path_dentry(new_dir), RW, FOP_LINK)
}

#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    let old: *const u8 = ctx.arg(1);
    let new_dir: *const u8 = ctx.arg(2);
    let r = check(old, RW, FOP_RENAME);
    if r != 0 {
        return r;
    }
    check(path_dentry(new_dir), RW, FOP_RENAME)
}
