//! Builds the eBPF object with the same code `agent/build.rs` uses.
#[path = "../../agent/build_ebpf.rs"]
mod build_ebpf;

use std::path::PathBuf;

pub fn build() -> anyhow::Result<PathBuf> {
    build_ebpf::build(&crate::util::workspace()).map_err(anyhow::Error::msg)
}

/// Clippy and rustfmt for the kernel crate (nightly, BPF target).
pub fn lint() -> anyhow::Result<()> {
    let ws = crate::util::workspace();
    let mut fmt = build_ebpf::nightly_cargo(&ws, "fmt");
    crate::util::run(fmt.arg("--check"))?;
    let mut clippy = build_ebpf::nightly_cargo(&ws, "clippy");
    crate::util::run(clippy.args(build_ebpf::TARGET_ARGS).args(["--", "-D", "warnings"]))
}
