//! Builds the eBPF object (`ebpf/`) with nightly + bpf-linker.
//!
//! Shared by `agent/build.rs` (so `cargo build` always embeds a fresh object)
//! and `cargo xtask build-ebpf`. The kernel crate gets its own target dir,
//! `target/ebpf`, so this never waits on the lock of the outer cargo build.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub const EBPF_TARGET: &str = "bpfel-unknown-none";

/// Path of the built object for a workspace root.
pub fn object_path(workspace: &Path) -> PathBuf {
    workspace.join("target/ebpf").join(EBPF_TARGET).join("release/warden-ebpf")
}

/// `cargo` on the nightly toolchain for the eBPF crate, with the outer
/// cargo's target-specific variables removed (they would break the BPF build).
pub fn nightly_cargo(workspace: &Path, subcommand: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", subcommand]);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (k.starts_with("CARGO_") && k != "CARGO_HOME")
            || k.starts_with("RUSTC")
            || k == "RUSTUP_TOOLCHAIN"
            || k == "RUSTFLAGS"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.arg("--manifest-path").arg(workspace.join("ebpf/Cargo.toml"));
    cmd.env("CARGO_TARGET_DIR", workspace.join("target/ebpf"));
    cmd
}

/// Arguments that select the BPF target (after the subcommand).
pub const TARGET_ARGS: [&str; 5] = ["--release", "-Z", "build-std=core", "--target", EBPF_TARGET];

/// Runs the nightly build; returns the object path.
pub fn build(workspace: &Path) -> Result<PathBuf, String> {
    let mut cmd = nightly_cargo(workspace, "build");
    cmd.args(TARGET_ARGS);
    let status = cmd.status().map_err(|e| format!("cannot run rustup (is rustup installed?): {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the eBPF object failed ({status}); it needs the nightly toolchain with rust-src \
             and bpf-linker built against LLVM 22: run scripts/setup.sh"
        ));
    }
    Ok(object_path(workspace))
}
