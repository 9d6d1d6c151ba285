//! Builds and embeds the eBPF object. Set WARDEN_EBPF_OBJECT to embed a
//! prebuilt object instead (e.g. in a container build stage). Also generates
//! the kubelet / CRI gRPC code (`build_proto.rs`).
#[path = "build_ebpf.rs"]
mod build_ebpf;
#[path = "build_proto.rs"]
mod build_proto;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest.parent().unwrap().to_path_buf();
    if let Err(e) = build_proto::build(&manifest) {
        panic!("{e}");
    }
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
