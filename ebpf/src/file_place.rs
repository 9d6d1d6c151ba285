//! Where a file is: its segment, found by walking its dentry's ancestors
//! and comparing (device, inode) with the segment roots, plus the files
//! that left a tree (`FILE_ESCAPED`), which keep their root's protection.
//! Shared by the LSM hooks (typed pointers, direct loads) and the
//! `file_locate` program (probe reads).
//!
//! Struct offsets (`dentry.d_parent`, …) come from the running kernel's
//! BTF, read by the agent and set as globals at load time.
use aya_ebpf::{
    helpers::generated,
    macros::map,
    maps::{Array, HashMap},
};
use warden_common::{
    EscapedValue, FILE_EVENT_COMPONENTS, FILE_EVENT_NAME_LEN, FILE_REASON_DISCONNECTED, FILE_REASON_ESCAPED,
    FILE_REASON_NONE, FILE_REASON_TOO_DEEP, InodeKey, MAX_FILE_DEPTH,
};

use crate::maps::{Set, per_set};

per_set! {
    /// (device, inode) of each segment root → segment id.
    pub fn roots -> HashMap<InodeKey, u32>: FILE_ROOTS_0, FILE_ROOTS_1 = HashMap::pinned(4096, 0)
}
per_set! {
    /// Filesystems (kernel dev_t) holding at least one root: opens elsewhere
    /// skip the ancestry walk entirely.
    pub fn devs -> HashMap<u64, u8>: FILE_DEVS_0, FILE_DEVS_1 = HashMap::pinned(256, 0)
}

/// Files that left a tree by rename or hard link, keyed by identity: they
/// keep the root they left (one map for both sets: it is a fact about
/// files, and roots are named by identity, not by policy index).
#[map]
pub static FILE_ESCAPED: HashMap<InodeKey, EscapedValue> =
    HashMap::pinned(1 << 18, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Index 0 is non-zero once `FILE_ESCAPED` holds an entry: until then the
/// walk does one lookup per level, not two.
#[map]
pub static FILE_ESCAPED_ANY: Array<u32> = Array::pinned(1, 0);

macro_rules! global {
    ($name:ident) => {
        #[unsafe(no_mangle)]
        pub static $name: u32 = 0;
    };
}
global!(OFF_FILE_F_PATH);
global!(OFF_FILE_F_MODE);
global!(OFF_FILE_F_FLAGS);
global!(OFF_FILE_F_INODE);
global!(OFF_PATH_DENTRY);
global!(OFF_DENTRY_D_PARENT);
global!(OFF_DENTRY_D_INODE);
global!(OFF_DENTRY_D_NAME);
global!(OFF_DENTRY_D_SB);
global!(OFF_DENTRY_D_ALIAS);
global!(OFF_QSTR_NAME);
global!(OFF_INODE_I_INO);
global!(OFF_INODE_I_SB);
global!(OFF_INODE_I_GENERATION);
global!(OFF_INODE_I_MODE);
global!(OFF_INODE_I_NLINK);
global!(OFF_INODE_I_DENTRY);
global!(OFF_SB_S_DEV);
global!(OFF_SB_S_ROOT);
global!(OFF_TASK_FILES);
global!(OFF_FILES_FDT);
global!(OFF_FDT_MAX_FDS);
global!(OFF_FDT_FD);

#[inline(always)]
pub fn g32(v: &'static u32) -> usize {
    // SAFETY: reading a static the loader patched.
    unsafe { core::ptr::read_volatile(v) as usize }
}

/// How kernel memory is read.
pub trait Mem {
    fn read<T: Copy>(base: *const u8, off: usize) -> Option<T>;

    fn ptr(base: *const u8, off: usize) -> *const u8 {
        Self::read(base, off).unwrap_or(core::ptr::null())
    }
}

/// LSM hooks get BTF-typed pointers and the offsets are verifier-known
/// constants (frozen .rodata), so a field is a plain load the verifier
/// checks against BTF and guards with an exception entry (a NULL or bad
/// pointer reads as 0): no helper call per field.
pub struct Direct;

impl Mem for Direct {
    #[inline(always)]
    fn read<T: Copy>(base: *const u8, off: usize) -> Option<T> {
        if base.is_null() {
            return None;
        }
        // SAFETY: see above; the verifier rejects the program otherwise.
        Some(unsafe { core::ptr::read_volatile(base.wrapping_add(off) as *const T) })
    }
}

/// Programs without typed pointers read through the helper.
pub struct Probe;

impl Mem for Probe {
    /// Never `None`: the helper zeroes what it could not read, so nothing
    /// branches on its result (a NULL base reads as 0 too). A branch per
    /// read doubled the verifier's paths at every level of a walk: a full
    /// walk by probe reads did not fit 6.1's million instructions.
    #[inline(always)]
    fn read<T: Copy>(base: *const u8, off: usize) -> Option<T> {
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the helper checks the address and writes all of `v`: the
        // value, or zeroes when the read faults (bpf_probe_read_kernel_common).
        unsafe {
            generated::bpf_probe_read_kernel(
                v.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
                base.wrapping_add(off).cast(),
            );
            Some(v.assume_init())
        }
    }
}

/// A file's identity and its root, if any.
pub struct Place {
    /// Segment id (0 = none).
    pub segment: u16,
    /// Root index in the agent's root list.
    pub root: u16,
    /// `FILE_REASON_*`: DISCONNECTED / TOO_DEEP when the place is unknown
    /// (then `segment` is 0), ESCAPED when protected for leaving a tree.
    pub reason: u8,
    pub dev: u64,
    pub ino: u64,
    /// The matched root (where event names stop) and its identity.
    pub root_dentry: *const u8,
    pub root_key: InodeKey,
}

/// What a decision returns of a `Place`: no pointers, so the compiler
/// never packs one into a register with shifts (6.1's verifier refuses
/// arithmetic on pointers).
/// It also carries what a later step needs of the file (generation, type),
/// read while its dentry is at hand: no dentry stays live across a second
/// walk in the same program.
/// Also a map value (`FILE_TAIL_SOURCE`), hence `repr(C)`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Found {
    pub segment: u16,
    pub dir: bool,
    pub generation: u32,
    pub dev: u64,
    pub ino: u64,
    pub root_key: InodeKey,
}

impl Place {
    /// The pointer-free part, with the generation and type of `dentry`'s inode.
    #[inline(always)]
    pub fn found<M: Mem>(&self, dentry: *const u8) -> Found {
        let inode = M::ptr(dentry, g32(&OFF_DENTRY_D_INODE));
        let generation: u32 = M::read(inode, g32(&OFF_INODE_I_GENERATION)).unwrap_or(0);
        let mode: u16 = M::read(inode, g32(&OFF_INODE_I_MODE)).unwrap_or(0);
        Found {
            segment: self.segment,
            dir: mode & 0o170000 == 0o040000,
            generation,
            dev: self.dev,
            ino: self.ino,
            root_key: self.root_key,
        }
    }

    /// Whether the walk could not tell where the file is.
    pub fn unknown(&self) -> bool {
        self.segment == 0 && self.reason != FILE_REASON_NONE
    }
}

/// (dev, ino) of an inode, or (0, 0) for none.
#[inline(always)]
pub fn inode_identity<M: Mem>(inode: *const u8) -> (u64, u64) {
    if inode.is_null() {
        return (0, 0);
    }
    let ino: u64 = M::read(inode, g32(&OFF_INODE_I_INO)).unwrap_or(0);
    let sb = M::ptr(inode, g32(&OFF_INODE_I_SB));
    let dev: u32 = M::read(sb, g32(&OFF_SB_S_DEV)).unwrap_or(0);
    (dev as u64, ino)
}

/// (dev, ino) of a dentry's inode, or (0, 0) for a negative dentry.
#[inline(always)]
pub fn identity<M: Mem>(d: *const u8) -> (u64, u64) {
    inode_identity::<M>(M::ptr(d, g32(&OFF_DENTRY_D_INODE)))
}

/// Whether an escaped entry still names the file it was recorded for.
#[inline(always)]
fn escaped_root<M: Mem>(d: *const u8, key: &InodeKey) -> Option<InodeKey> {
    // SAFETY: values are written whole by the agent or a hook.
    let e = unsafe { FILE_ESCAPED.get(key) }?;
    if e.generation != 0 {
        let inode = M::ptr(d, g32(&OFF_DENTRY_D_INODE));
        let generation: u32 = M::read(inode, g32(&OFF_INODE_I_GENERATION)).unwrap_or(0);
        if generation != e.generation {
            return None;
        }
    }
    Some(e.root)
}

/// Walks up from `dentry` looking for a segment root; a file recorded as
/// having left a tree is found by its own identity first (one lookup, not
/// one per level: the walk stays small enough for 6.1's verifier, and a
/// directory never leaves a tree on BPF-LSM nodes, see `inode_rename`).
/// The loop only yields the root's map value and dentry, never its depth,
/// so every exit leaves the verifier an equivalent state.
#[inline(always)]
pub fn segment_of<M: Mem>(set: Set, dentry: *const u8) -> Place {
    segment_within::<M, MAX_FILE_DEPTH, true>(set, dentry)
}

/// `segment_of` with at most `DEPTH` levels (a second walk in one program
/// must stay small for 6.1's verifier; deeper files are "too deep").
/// Without `FULL` the walk skips what only a file needs (its own escaped
/// entry, telling a disconnected or too-deep place from "outside"): for the
/// destination directory of a link or rename, a second walk in the same
/// program, which 6.1's verifier takes only that small.
#[inline(always)]
pub fn segment_within<M: Mem, const DEPTH: u32, const FULL: bool>(set: Set, dentry: *const u8) -> Place {
    let (dev, ino) = identity::<M>(dentry);
    let mut place = Place {
        segment: 0,
        root: 0,
        reason: FILE_REASON_NONE,
        dev,
        ino,
        root_dentry: core::ptr::null(),
        root_key: InodeKey::default(),
    };
    // A negative dentry (creation) has no inode yet: its parent is checked
    // by the caller. Otherwise the walk only runs on marked filesystems.
    // SAFETY: values are written whole by the agent.
    if dev != 0 && unsafe { devs(set).get(dev) }.is_none() {
        return place;
    }
    if FULL
        && FILE_ESCAPED_ANY.get(0).is_some_and(|v| *v != 0)
        && let Some(root) = escaped_root::<M>(dentry, &InodeKey { dev, ino })
        // SAFETY: as above.
        && let Some(v) = unsafe { roots(set).get(root) }
    {
        place.segment = *v as u16;
        place.root = (*v >> 16) as u16;
        place.root_dentry = dentry;
        place.root_key = root;
        place.reason = FILE_REASON_ESCAPED;
        return place;
    }
    let mut d = dentry;
    let mut found = 0u32;
    let mut top = false;
    for _ in 0..DEPTH {
        let (kdev, kino) = identity::<M>(d);
        let key = InodeKey { dev: kdev, ino: kino };
        // SAFETY: values are written whole by the agent.
        if let Some(v) = unsafe { roots(set).get(key) } {
            found = *v;
            place.root_dentry = d;
            place.root_key = key;
            break;
        }
        let parent = M::ptr(d, g32(&OFF_DENTRY_D_PARENT));
        if parent.is_null() || parent == d {
            top = true;
            break;
        }
        d = parent;
    }
    place.segment = found as u16;
    place.root = (found >> 16) as u16;
    if FULL && found == 0 && dev != 0 {
        // The walk must end at its filesystem's root: anything else is a
        // file whose place is not known, never "outside every tree".
        if !top {
            place.reason = FILE_REASON_TOO_DEEP;
        } else {
            let sb = M::ptr(d, g32(&OFF_DENTRY_D_SB));
            if M::ptr(sb, g32(&OFF_SB_S_ROOT)) != d {
                place.reason = FILE_REASON_DISCONNECTED;
            }
        }
    }
    place
}

/// The dentry a file was opened through, or, when its inode is not that
/// dentry's (an overlayfs real file opened under the overlay's path, as
/// 6.1 does), a cached name of its real inode: then `true`, and the pointer
/// is computed (container_of), so only `Probe` may read through it.
#[inline(always)]
pub fn file_dentry<M: Mem>(file: *const u8) -> (*const u8, bool) {
    let path = file.wrapping_add(g32(&OFF_FILE_F_PATH));
    let dentry = M::ptr(path, g32(&OFF_PATH_DENTRY));
    let inode = M::ptr(file, g32(&OFF_FILE_F_INODE));
    if inode.is_null() || M::ptr(dentry, g32(&OFF_DENTRY_D_INODE)) == inode {
        return (dentry, false);
    }
    // i_dentry is an hlist_head: its first node is a dentry's d_alias.
    let node = M::ptr(inode, g32(&OFF_INODE_I_DENTRY));
    if node.is_null() {
        // No name to walk: walking the overlay path would say "outside";
        // null makes the place unknown instead.
        return (core::ptr::null(), true);
    }
    (node.wrapping_sub(g32(&OFF_DENTRY_D_ALIAS)), true)
}

/// Fills `names` with the names below `place`'s root, file first; returns
/// (components, truncated).
#[inline(always)]
pub fn names_below<M: Mem>(
    dentry: *const u8,
    place: &Place,
    names: &mut [[u8; FILE_EVENT_NAME_LEN]; FILE_EVENT_COMPONENTS],
) -> (u8, u8) {
    let mut d = dentry;
    let mut n = 0u8;
    let mut truncated = 1u8;
    for name in names.iter_mut() {
        name[0] = 0;
    }
    for name in names.iter_mut() {
        if d == place.root_dentry || d.is_null() {
            truncated = 0;
            break;
        }
        let s = M::ptr(d, g32(&OFF_DENTRY_D_NAME) + g32(&OFF_QSTR_NAME));
        if !s.is_null() {
            // SAFETY: the helper bounds the copy by the buffer.
            let _ = unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes(s, name) };
        }
        n += 1;
        d = M::ptr(d, g32(&OFF_DENTRY_D_PARENT));
    }
    if d == place.root_dentry {
        truncated = 0;
    }
    (n, truncated)
}

/// Records that the file at `dentry` (found under `place`'s root) gets a
/// name outside that root: it keeps the root's protection.
#[inline(always)]
pub fn record_escape(place: &Found) {
    let key = InodeKey { dev: place.dev, ino: place.ino };
    let value = EscapedValue { root: place.root_key, generation: place.generation, _pad: 0 };
    if FILE_ESCAPED.insert(key, value, 0).is_ok()
        && let Some(any) = FILE_ESCAPED_ANY.get_ptr_mut(0)
    {
        // SAFETY: a valid array slot.
        unsafe { *any = 1 };
    }
}
