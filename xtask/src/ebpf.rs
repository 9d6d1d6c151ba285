//! Builds the eBPF object with the same code `agent/build.rs` uses.
#[path = "../../agent/build_ebpf.rs"]
mod build_ebpf;

use std::path::PathBuf;

pub fn build() -> anyhow::Result<PathBuf> {
    build_ebpf::build(&crate::util::workspace()).map_err(anyhow::Error::msg)
}
