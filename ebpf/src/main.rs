//! warden kernel programs.
//!
//! Pipeline position: policy → compiled maps → **kernel hooks** → ring buffer.
//! The network hooks decide every connect()/sendmsg() from maps alone (no
//! userspace round trip); the cgroup tracepoints tell the agent about new and
//! removed cgroups so it can attribute them to workloads.
#![no_std]
#![no_main]

mod backstop;
mod cgroup_tp;
mod devices;
mod file_place;
mod file_tail;
mod files;
mod locate;
mod maps;
mod net;
mod record;
mod scope;
mod sockets;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path; this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
