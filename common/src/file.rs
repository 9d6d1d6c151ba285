//! File segments: protected directory trees, matched by (device, inode)
//! ancestry so symlinks, bind mounts and `..` games cannot bypass them.

/// Access bits of an allow rule.
pub const ACCESS_READ: u8 = 1;
pub const ACCESS_WRITE: u8 = 2;

/// File operations reported in events.
pub const FOP_OPEN: u8 = 1;
pub const FOP_CREATE: u8 = 2;
pub const FOP_UNLINK: u8 = 3;
pub const FOP_RENAME: u8 = 4;
pub const FOP_LINK: u8 = 5;
pub const FOP_TRUNCATE: u8 = 6;
pub const FOP_MKDIR: u8 = 7;
pub const FOP_RMDIR: u8 = 8;
/// Mode, owner or times changed.
pub const FOP_SETATTR: u8 = 9;
/// Extended attribute set or removed.
pub const FOP_XATTR: u8 = 10;
/// Content changed without an open the agent judged (fanotify: truncate(2)
/// by path, or a write through a descriptor opened before).
pub const FOP_MODIFY: u8 = 11;
/// ptrace, process_vm_readv or /proc/<pid>/mem of another workload's
/// process (`ino` holds the target's tgid; no segment).
pub const FOP_PTRACE: u8 = 12;

/// Why a file decision was made beyond the rules (events' `reason`).
pub const FILE_REASON_NONE: u8 = 0;
/// The file's dentry is not connected to its filesystem's root (reached
/// through a file handle after the dentry cache dropped its parents): its
/// place cannot be known, so governed openers are denied.
pub const FILE_REASON_DISCONNECTED: u8 = 1;
/// More than `MAX_FILE_DEPTH` directories above the file: its place cannot
/// be known, so governed openers are denied.
pub const FILE_REASON_TOO_DEEP: u8 = 2;
/// Protected because it left a tree (renamed or hard-linked out): the
/// protection follows the file.
pub const FILE_REASON_ESCAPED: u8 = 3;
/// The access mode could not be known for certain (fanotify: flags in
/// memory the opener can still change), so a read-only grant denies it.
pub const FILE_REASON_MODE_UNKNOWN: u8 = 4;
/// Seen, not prevented (fanotify cannot block this operation).
pub const FILE_REASON_DETECTED: u8 = 5;

/// `FILE_ESCAPED` values: the root a file (or directory) left, so it keeps
/// that root's protection wherever it is reached from. `generation` is the
/// inode's generation when recorded (0: not checked): a reused inode
/// number with another generation is a different file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EscapedValue {
    pub root: InodeKey,
    pub generation: u32,
    pub _pad: u32,
}

/// Result bits of the `file_locate` program (its return value): bit 31 set
/// means the place could not be known (`FILE_REASON_*` in the low byte);
/// otherwise 0 = outside every segment, else `root_value` with bit 30 set
/// when the file is protected because it escaped a tree.
pub const LOCATE_UNKNOWN: u32 = 1 << 31;
pub const LOCATE_ESCAPED: u32 = 1 << 30;
/// Outside every segment through this name, but the file has other links:
/// the caller may ask about its other cached names (`alias` argument).
pub const LOCATE_MULTI_LINKED: u32 = 1 << 29;
/// The descriptor named no open file.
pub const LOCATE_BAD_FD: u32 = LOCATE_UNKNOWN | 0xff;
/// The file has no cached name with that index.
pub const LOCATE_NO_ALIAS: u32 = LOCATE_UNKNOWN | 0xfe;
/// Other cached names of a multi-linked file the agent asks about.
pub const LOCATE_MAX_ALIASES: u64 = 4;
/// Set in the slot argument: write the slot (identity, names), which only
/// an event or a record needs; a bare decision skips it.
pub const LOCATE_OUTPUT: u64 = 1 << 16;
/// Slots of `FILE_LOCATED` (one per agent thread that locates).
pub const LOCATE_SLOTS: u32 = 8;

/// What `file_locate` saw, written to its slot of `FILE_LOCATED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    pub dev: u64,
    pub ino: u64,
    pub generation: u32,
    pub nlink: u32,
    /// Names below the root, file first (as `FileEvent::names`).
    pub components: u8,
    pub truncated: u8,
    pub _pad: [u8; 6],
    pub names: [[u8; FILE_EVENT_NAME_LEN]; FILE_EVENT_COMPONENTS],
}

const _: () = assert!(core::mem::size_of::<EscapedValue>() == 24);
const _: () = assert!(core::mem::size_of::<Located>() == 32 + FILE_EVENT_NAME_LEN * FILE_EVENT_COMPONENTS);

/// `FILE_ROOTS` values: segment id in the low 16 bits, root index above.
pub const fn root_value(segment: u16, root_index: u16) -> u32 {
    (root_index as u32) << 16 | segment as u32
}

/// Deepest directory nesting the kernel walks looking for a protected root.
pub const MAX_FILE_DEPTH: u32 = 64;

/// The tails of the one-walk hooks (their second walk, in a program of
/// its own, for kernels whose verifier cannot take two walks in one): an
/// index into `map_names::FILE_TAILS`. Each has its own program array,
/// since the kernel lets a program array hold programs of one hook only.
pub const FILE_TAIL_OPEN: u32 = 0;
pub const FILE_TAIL_LINK: u32 = 1;
pub const FILE_TAIL_RENAME: u32 = 2;

/// A directory or file by identity. `dev` uses the kernel's internal
/// encoding (`major << 20 | minor`), which the agent converts to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
}

/// Value of `FILE_ALLOW`, keyed by `AllowKey { workload, segment }`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileAllowValue {
    /// `ACCESS_*` bits granted; 0 = none (entry only carries a deny mode).
    pub access: u8,
    /// Mode for accesses beyond `access`.
    pub deny_mode: u8,
    pub _pad: [u8; 2],
    /// Rule that granted (or, for denies, governs) this pair; 0 = none.
    pub rule_id: u32,
}

const _: () = assert!(core::mem::size_of::<InodeKey>() == 16);
const _: () = assert!(core::mem::size_of::<FileAllowValue>() == 8);

/// Converts a userspace `st_dev` (glibc `makedev` encoding) to the kernel's
/// internal `dev_t` (`MKDEV`), the form BPF programs read from `s_dev`.
pub const fn kernel_dev(st_dev: u64) -> u64 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    (major << 20) | minor
}

/// Path components carried in a file event (file upward to the root).
pub const FILE_EVENT_COMPONENTS: usize = 8;
pub const FILE_EVENT_NAME_LEN: usize = 48;

/// A file decision by an in-kernel backend (BPF-LSM).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileEvent {
    pub header: crate::DecisionHeader,
    /// `FOP_*`
    pub op: u8,
    /// 1 if write access was needed.
    pub write: u8,
    /// Components filled in `names`, file first; more levels existed if
    /// `truncated` is set.
    pub components: u8,
    pub truncated: u8,
    /// Which root of the segment matched (index in the agent's root list).
    pub root_index: u16,
    /// `FILE_REASON_*`: why the decision was made as it was, beyond the rules.
    pub reason: u8,
    pub _pad: u8,
    pub dev: u64,
    pub ino: u64,
    pub names: [[u8; FILE_EVENT_NAME_LEN]; FILE_EVENT_COMPONENTS],
}

const _: () = assert!(core::mem::size_of::<FileEvent>() == 80 + FILE_EVENT_NAME_LEN * FILE_EVENT_COMPONENTS);
const _: () = assert!(core::mem::offset_of!(FileEvent, op) == 56);
const _: () = assert!(core::mem::offset_of!(FileEvent, root_index) == 60);
const _: () = assert!(core::mem::offset_of!(FileEvent, dev) == 64);
const _: () = assert!(core::mem::offset_of!(FileEvent, ino) == 72);
const _: () = assert!(core::mem::offset_of!(FileEvent, names) == 80);
