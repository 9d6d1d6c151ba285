//! Generates the server side of kubelet pod-resources v1, CRI `runtime.v1`
//! and the OTLP logs service from the agent's vendored protos (the agent
//! itself only has the clients), so the fakes and the agent's clients meet
//! only on the wire.
use std::path::PathBuf;

const PROTOS: &[&str] =
    &["podresources/v1/api.proto", "cri/v1/api.proto", "opentelemetry/proto/collector/logs/v1/logs_service.proto"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../agent/proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(PROTOS.iter().map(|p| root.join(p)), [&root]).unwrap_or_else(|e| panic!("protos: {e:?}"));
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("protos codegen: {e}"));
}
