//! Builds and embeds the eBPF object. Set WARDEN_EBPF_OBJECT to embed a
//! prebuilt object instead (e.g. in a container build stage).
#[path = "build_ebpf.rs"]
mod build_ebpf;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.parent().unwrap().to_path_buf();
    println!("cargo:rerun-if-env-changed=WARDEN_EBPF_OBJECT");
    let object = match std::env::var("WARDEN_EBPF_OBJECT") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            for dir in ["ebpf/src", "ebpf/Cargo.toml", "common/src"] {
                println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
            }
            match build_ebpf::build(&workspace) {
                Ok(p) => p,
                Err(e) => panic!("{e}"),
            }
        }
    };
    println!("cargo:rustc-env=WARDEN_EBPF_OBJECT_PATH={}", object.display());
}
