//! Generates the gRPC code for `src/kube` (kubelet pod-resources v1 and CRI
//! `runtime.v1`) and `src/sinks/otlp` (OTLP logs) from the vendored `proto/`
//! files. `protox` compiles them in pure Rust, so no `protoc` binary is needed
//! at build time.
use std::path::Path;

/// Protos under `proto/`, relative to it (their import names).
const PROTOS: &[&str] = &["podresources/v1/api.proto", "cri/v1/api.proto"];

/// OTLP logs export: the agent is only ever a client of a collector.
const OTLP_PROTOS: &[&str] = &["opentelemetry/proto/collector/logs/v1/logs_service.proto"];

/// Compiles the protos into `OUT_DIR` with client code only (`v1.rs`,
/// `runtime.v1.rs`, `opentelemetry.proto.*.rs`): the agent is a client of
/// kubelet, the runtime and a collector. The fakes the tests serve generate
/// their server code in the testkit crate.
pub fn build(manifest: &Path) -> Result<(), String> {
    let root = manifest.join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(PROTOS.iter().map(|p| root.join(p)), [&root]).map_err(|e| format!("protos: {e:?}"))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)
        .map_err(|e| format!("protos codegen: {e}"))?;
    let fds = protox::compile(OTLP_PROTOS.iter().map(|p| root.join(p)), [&root])
        .map_err(|e| format!("OTLP protos: {e:?}"))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)
        .map_err(|e| format!("OTLP protos codegen: {e}"))
}
