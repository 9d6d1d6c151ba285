//! glibc heap tunables: memory freed after cgroup churn goes back to the
//! system instead of ratcheting up.

/// Fixes glibc's mmap and trim thresholds at their defaults (128 KiB). Left
/// dynamic, freeing one large table (10,000 cgroups' worth) raises them to
/// megabytes, and later frees then stay resident at a thread arena's top,
/// which `malloc_trim` never trims: churn would ratchet memory up.
pub fn fix_thresholds() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

/// Hands freed heap pages back to the kernel (glibc keeps them otherwise).
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointers are involved.
    unsafe {
        libc::malloc_trim(0);
    }
}
