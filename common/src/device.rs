//! Device segments: GPUs and other device nodes, decided by the cgroup/dev
//! hook on every open and mknod of a device node.

/// Access bits as the kernel passes them to cgroup/dev programs
/// (`BPF_DEVCG_ACC_*`), and as allow rules grant them.
pub const DEV_ACC_MKNOD: u8 = 1;
pub const DEV_ACC_READ: u8 = 2;
pub const DEV_ACC_WRITE: u8 = 4;

/// Device types as the kernel passes them (`BPF_DEVCG_DEV_*`).
pub const DEV_TYPE_BLOCK: u8 = 1;
pub const DEV_TYPE_CHAR: u8 = 2;

/// NVIDIA GPU nodes: char major 195, minor = GPU index (0..=253; 254 is
/// nvidia-modeset, 255 nvidiactl).
pub const NVIDIA_MAJOR: u32 = 195;
pub const NVIDIA_MAX_GPUS: u32 = 254;

/// `DeviceSegment::gpu` of a node that is not a GPU (control nodes, RDMA...).
pub const GPU_NONE: u16 = 0xffff;

/// Where a rule's GPU set comes from.
pub const GPUS_LISTED: u8 = 0;
/// The container's kubelet assignment (`DEVICE_ASSIGNED`, by cgroup id).
pub const GPUS_ASSIGNED: u8 = 1;

/// A device node by number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    /// `DEV_TYPE_*`.
    pub kind: u8,
    pub _pad: [u8; 3],
    pub major: u32,
    pub minor: u32,
}

/// Value of `DEVICE_SEGMENTS`: which segment protects a node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceSegment {
    pub segment_id: u16,
    /// GPU index (checked against the rule's GPU set), or `GPU_NONE`.
    pub gpu: u16,
}

/// A set of GPU indices (bit i = GPU i).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GpuSet {
    pub bits: [u64; 4],
}

impl GpuSet {
    pub fn insert(&mut self, gpu: u16) {
        if let Some(w) = self.bits.get_mut((gpu >> 6) as usize) {
            *w |= 1 << (gpu & 63);
        }
    }

    #[inline(always)]
    pub fn contains(&self, gpu: u16) -> bool {
        let i = (gpu >> 6) as usize;
        i < 4 && self.bits[i] & (1 << (gpu & 63)) != 0
    }
}

/// Value of `DEVICE_ALLOW`, keyed by `AllowKey { workload, segment }`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceAllowValue {
    /// `DEV_ACC_*` bits granted; 0 = none (entry only carries a deny mode).
    pub access: u8,
    /// Mode for accesses beyond the grant.
    pub deny_mode: u8,
    /// `GPUS_LISTED` (use `gpus`) or `GPUS_ASSIGNED`.
    pub gpus_from: u8,
    pub _pad: u8,
    /// Rule that granted (or, for denies, governs) this pair; 0 = none.
    pub rule_id: u32,
    pub gpus: GpuSet,
}

/// A device decision.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceEvent {
    pub header: crate::DecisionHeader,
    /// `DEV_ACC_*` bits asked for.
    pub access: u8,
    /// `DEV_TYPE_*`.
    pub dev_type: u8,
    pub _pad: [u8; 2],
    pub major: u32,
    pub minor: u32,
    pub _pad2: u32,
}

const _: () = assert!(core::mem::size_of::<DeviceKey>() == 12);
const _: () = assert!(core::mem::size_of::<DeviceSegment>() == 4);
const _: () = assert!(core::mem::size_of::<DeviceAllowValue>() == 40);
const _: () = assert!(core::mem::size_of::<DeviceEvent>() == 72);
const _: () = assert!(core::mem::offset_of!(DeviceEvent, access) == 56);
const _: () = assert!(core::mem::offset_of!(DeviceEvent, major) == 60);
const _: () = assert!(core::mem::offset_of!(DeviceEvent, minor) == 64);
