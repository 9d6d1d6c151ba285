//! Kernel hooks: load the embedded eBPF object, fill its maps, attach it.
//!
//! Order matters for fail-closed start-up: policy maps and known cgroup
//! identities are written before the network hooks are attached.
pub mod btf;
mod loader;
pub mod maps;
pub mod pins;
pub mod tracefs;

pub use loader::{AttachedProgram, HookError, Hooks};
