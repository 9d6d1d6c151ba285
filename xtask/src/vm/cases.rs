//! `cargo xtask vm-test`: the shared file case table (agent/tests/file_cases/mod.rs)
//! and network checks on the BPF-LSM backend, inside QEMU VMs booting
//! Debian's 6.1 and 6.12 kernels with `lsm=…,bpf`. One built object, every
//! kernel: the offsets come from each guest kernel's BTF at start-up.
use std::time::Duration;

use anyhow::bail;

use super::{Payload, host_binary, kernel, run};
use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Kernel series to boot (repeatable; default 6.1 and 6.12).
    #[arg(long)]
    series: Vec<String>,
    #[arg(long, default_value_t = 420)]
    timeout: u64,
}

impl Default for Args {
    fn default() -> Self {
        Self { series: vec![], timeout: 420 }
    }
}

/// The release binaries and the case runner, starting `command` at boot.
fn payload(command: &str) -> Payload {
    Payload::new(command)
        .binary("warden")
        .binary("warden-fileprobe")
        .binary("warden-netprobe")
        .file(host_binary("examples/vm_cases"), "/usr/local/bin/vm_cases")
}

/// The attack cases need overlayfs and loop devices (modules in Debian's
/// kernels) and an ext4 image: loaded and attached before `command`.
fn with_modules(k: &super::Kernel, command: &str) -> anyhow::Result<Payload> {
    let dir = super::vm_dir().join("modules").join(&k.label);
    std::fs::create_dir_all(&dir)?;
    let tree = k.vmlinuz.parent().and_then(|b| b.parent()).map(|r| r.join("lib/modules").join(&k.label).join("kernel"));
    let tree = tree.ok_or_else(|| anyhow::anyhow!("no module tree beside {}", k.vmlinuz.display()))?;
    let mut script = String::new();
    let mut p = payload("");
    for (name, rel) in [("overlay", "fs/overlayfs/overlay.ko"), ("loop", "drivers/block/loop.ko")] {
        let out = dir.join(format!("{name}.ko"));
        let plain = tree.join(rel);
        let xz = tree.join(format!("{rel}.xz"));
        if plain.is_file() {
            std::fs::copy(&plain, &out)?;
        } else if xz.is_file() {
            let data = std::process::Command::new("xz").arg("-dc").arg(&xz).output()?;
            anyhow::ensure!(data.status.success(), "xz -dc {}", xz.display());
            std::fs::write(&out, data.stdout)?;
        } else {
            continue; // built in
        }
        p = p.file(&out, format!("/lib/modules/{name}.ko"));
        script.push_str(&format!("insmod /lib/modules/{name}.ko || echo 'WARDEN-VM-WARN: insmod {name} failed'\n"));
    }
    let img = dir.join("ext4.img");
    if !img.is_file() {
        util::run(std::process::Command::new("truncate").args(["-s", "16M"]).arg(&img))?;
        util::run(std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img))?;
    }
    p = p.file(&img, "/ext4.img");
    p.script = format!("{script}{command}");
    Ok(p)
}

/// `cargo xtask vm-bench`: open() latency on BPF-LSM in the guest, with vs.
/// without the agent in the same boot (TCG: only the ratio is meaningful).
pub fn vm_bench(a: Args) -> anyhow::Result<()> {
    super::build_release()?;
    let series = if a.series.is_empty() { vec!["6.12".to_string()] } else { a.series };
    for s in &series {
        let k = kernel(s)?;
        let payload = payload("/usr/local/bin/vm_cases bench\n");
        let out = run(&k, "bench", &payload, Duration::from_secs(a.timeout))?;
        for line in out.payload_output().lines().filter(|l| l.starts_with("BENCH")) {
            println!("{} {line}", k.label);
        }
        if out.rc != 0 {
            bail!("vm bench failed on {}:\n{}", k.label, out.payload_output());
        }
    }
    Ok(())
}

pub fn vm_test(a: Args) -> anyhow::Result<()> {
    super::build_release()?;
    let series = if a.series.is_empty() { vec!["6.1".to_string(), "6.12".to_string()] } else { a.series };
    let mut failed = Vec::new();
    for s in &series {
        let k = kernel(s)?;
        let payload = with_modules(&k, "/usr/local/bin/vm_cases\n")?;
        let out = run(&k, "cases", &payload, Duration::from_secs(a.timeout))?;
        println!("--- {} ({:.1}s, rc {}):\n{}", k.label, out.elapsed.as_secs_f64(), out.rc, out.payload_output());
        if out.rc != 0 {
            failed.push(k.label.clone());
        }
    }
    if !failed.is_empty() {
        bail!("VM cases failed on {}", failed.join(", "));
    }
    println!("vm-test: the case table passed on {}", series.join(", "));
    Ok(())
}
