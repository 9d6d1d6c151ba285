//! Which tasks the agent governs: those in its cgroup root. Programs
//! attached to that cgroup run only for it; LSM programs run for every task
//! and ask here.
use aya_ebpf::helpers::bpf_get_current_ancestor_cgroup_id;

// The root's level and id (level 0 = the whole hierarchy), set by the loader.
#[unsafe(no_mangle)]
static ROOT_CGROUP_LEVEL: u32 = 0;
#[unsafe(no_mangle)]
static ROOT_CGROUP_ID: u64 = 0;

/// Whether the current task is in the agent's cgroup root.
#[inline(always)]
pub fn governed() -> bool {
    // SAFETY: reading statics the loader patched.
    let level = unsafe { core::ptr::read_volatile(&ROOT_CGROUP_LEVEL) };
    if level == 0 {
        return true;
    }
    // SAFETY: as above.
    let root = unsafe { core::ptr::read_volatile(&ROOT_CGROUP_ID) };
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) == root }
}
