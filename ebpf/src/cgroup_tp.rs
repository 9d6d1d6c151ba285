//! cgroup:cgroup_mkdir / cgroup_rmdir tracepoints → CGROUP_EVENTS.
//!
//! Field offsets come from tracefs format files, read by the agent at start
//! and set as globals: tracepoint layouts are ABI-described, not guessed.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use warden_common::{
    CgroupEvent, EVENT_CGROUP_MKDIR, EVENT_CGROUP_RMDIR, STAT_CGROUP_EVENTS, STAT_CGROUP_EVENTS_DROPPED,
};

use crate::maps::{CGROUP_EVENTS, STATS, bump};

#[unsafe(no_mangle)]
static TP_OFF_ROOT: u32 = 8;
#[unsafe(no_mangle)]
static TP_OFF_ID: u32 = 16;
#[unsafe(no_mangle)]
static TP_OFF_PATH: u32 = 24;

#[inline(always)]
fn global(v: &'static u32) -> usize {
    // Volatile so the compiler keeps the load the loader patches.
    // SAFETY: reading a static.
    unsafe { core::ptr::read_volatile(v) as usize }
}

#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    record(&ctx, EVENT_CGROUP_MKDIR);
    0
}

#[tracepoint]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    record(&ctx, EVENT_CGROUP_RMDIR);
    0
}

#[inline(always)]
fn record(ctx: &TracePointContext, kind: u8) {
    let Some(mut entry) = CGROUP_EVENTS.reserve::<CgroupEvent>(0) else {
        bump(&STATS, STAT_CGROUP_EVENTS_DROPPED);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: ev points at a reserved record of the right size; the reads
    // use probe helpers, which fail cleanly on bad offsets.
    unsafe {
        (*ev).kind = kind;
        (*ev)._pad = [0; 3];
        (*ev).hierarchy = ctx.read_at::<u32>(global(&TP_OFF_ROOT)).unwrap_or(0);
        (*ev).cgroup_id = ctx.read_at::<u64>(global(&TP_OFF_ID)).unwrap_or(0);
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).path[0] = 0;
        let loc = ctx.read_at::<u32>(global(&TP_OFF_PATH)).unwrap_or(0);
        let off = (loc & 0xffff) as usize;
        let src = (ctx.as_ptr() as *const u8).add(off);
        let _ = bpf_probe_read_kernel_str_bytes(src, &mut (*ev).path);
    }
    entry.submit(0);
    bump(&STATS, STAT_CGROUP_EVENTS);
}
