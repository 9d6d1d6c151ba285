//! Kernel hooks: load the embedded eBPF object, fill its maps, attach it.
//!
//! Order matters for fail-closed start-up: policy maps and known cgroup
//! identities are written before the network hooks are attached.
pub mod bpf_obj;
pub mod btf;
pub mod guard;
pub mod instance_lock;
mod loader;
pub mod maps;
pub mod pins;
pub mod tracefs;

pub use loader::{AttachedProgram, HookError, Hooks};
