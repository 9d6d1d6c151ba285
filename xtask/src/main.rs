//! Developer tasks: `cargo xtask build-ebpf | test | layers | bench | fuzz | vm-smoke | image`.
mod bench;
mod ebpf;
mod fuzz;
mod image;
mod layers;
mod test;
mod util;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the eBPF object into target/ebpf (nightly + bpf-linker).
    BuildEbpf,
    /// Format check, import circles, clippy, then every test (unit + privileged integration).
    Test,
    /// Fail on import circles between the files of agent/src, common/src and ebpf/src (lists them).
    Layers(layers::Args),
    /// Benchmarks, each reported as ratios to a baseline measured in the same run.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Coverage-guided fuzzing of the policy, ring-buffer and host-text parsers and the metrics HTTP server.
    Fuzz(fuzz::Args),
    /// Boot Debian cloud kernels (6.1, 6.12) under QEMU and check BPF LSM prerequisites in the guest.
    VmSmoke(vm::SmokeArgs),
    /// The file case table and network checks on BPF-LSM in QEMU (Debian 6.1 and 6.12 kernels).
    VmTest(vm::cases::Args),
    /// open() latency on BPF-LSM in QEMU, with vs. without the agent (ratio).
    VmBench(vm::cases::Args),
    /// Render the Helm chart into config/kubernetes/warden.yaml (Helm's SDK,
    /// from target/tools/k8s: scripts/setup.sh installs it).
    Manifests,
    /// Build the agent's distroless OCI image with buildah (no daemon, no registry) into
    /// target/image/warden-<version>-<arch>.tar.
    Image(image::Args),
    /// Internal: the benchmark's client process.
    #[command(hide = true)]
    BenchClient(bench::client::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::BuildEbpf => {
            let obj = ebpf::build()?;
            println!("{}", obj.display());
            Ok(())
        }
        Cmd::Test => test::all(),
        Cmd::Layers(a) => layers::run(a),
        Cmd::Manifests => util::run(
            std::process::Command::new(util::workspace().join("target/tools/k8s/bin/python"))
                .arg(util::workspace().join("scripts/manifests.py"))
                .arg("render"),
        ),
        Cmd::Image(a) => image::run(a),
        Cmd::Bench(b) => bench::run(b),
        Cmd::BenchClient(a) => bench::client::run(a),
        Cmd::Fuzz(a) => fuzz::fuzz(a),
        Cmd::VmSmoke(a) => vm::smoke(a),
        Cmd::VmTest(a) => vm::cases::vm_test(a),
        Cmd::VmBench(a) => vm::cases::vm_bench(a),
    }
}
