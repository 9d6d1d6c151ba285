//! QEMU virtual machines booting Debian's cloud kernels, for what the build machine's kernel refuses
//! (BPF LSM, fentry). A VM runs one payload: host files copied into an initramfs plus a shell script
//! that /init runs as root; its exit code comes back as [`VmOutput::rc`].
//!
//! ```ignore
//! let k = vm::kernel("6.12")?;
//! let payload = Payload::new("warden --version").binary("warden");
//! let out = vm::run(&k, "version", &payload, Duration::from_secs(60))?;
//! ```
//! Everything lives under target/vm/: debs/ and kernels/ (cached downloads), initramfs/ (per run),
//! and `<label>-<name>.log`, the serial console of the last run of that name.
//! Set `WARDEN_VM_VERBOSE=1` to echo the console live.
pub mod cases;
mod initramfs;
mod kernels;
mod qemu;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

pub(crate) use initramfs::{copy_file, parse_ldd, shared_libs};
pub use kernels::{Kernel, kernel};

/// Active LSMs the guest boots with; `bpf` must be listed for lsm/* programs to be attachable.
pub const DEFAULT_LSM: &str = "lockdown,capability,landlock,bpf";
/// Printed by /init just before the payload runs.
const BEGIN_MARKER: &str = "WARDEN-VM-BEGIN";
/// Printed by /init after the payload, followed by its exit code.
const RC_MARKER: &str = "WARDEN-VM-RC=";

/// What runs inside a VM.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    /// Host file (or directory, copied recursively) and the absolute guest path to put it at. Shared libraries
    /// of ELF executables (per ldd) and the dynamic loader are added on their own.
    pub files: Vec<(PathBuf, String)>,
    /// Run as root by /init with `sh -e` (busybox), after the guest's filesystems are mounted. Its
    /// stdout/stderr go to the serial console; its exit status becomes [`VmOutput::rc`].
    pub script: String,
}

impl Payload {
    pub fn new(script: impl Into<String>) -> Self {
        Payload { files: Vec::new(), script: script.into() }
    }

    /// Adds a host file or directory at `guest`.
    pub fn file(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.files.push((host.into(), guest.into()));
        self
    }

    /// Adds target/release/`name` as /usr/local/bin/`name` (on the guest's PATH).
    pub fn binary(self, name: &str) -> Self {
        self.file(host_binary(name), format!("/usr/local/bin/{name}"))
    }
}

/// The result of one boot.
#[derive(Debug, Clone)]
pub struct VmOutput {
    /// The payload script's exit status.
    pub rc: i32,
    /// Everything the serial console showed (kernel messages, /init and the payload), without `\r`.
    pub console: String,
    /// QEMU start to guest poweroff.
    pub elapsed: Duration,
}

impl VmOutput {
    /// What the payload printed: the console between the begin marker and the exit-code marker.
    pub fn payload_output(&self) -> &str {
        let start = self.console.find(BEGIN_MARKER).map_or(0, |i| i + BEGIN_MARKER.len() + 1);
        let end = self.console.rfind(RC_MARKER).unwrap_or(self.console.len()).max(start);
        self.console[start.min(end)..end].trim_end_matches('\n')
    }
}

/// Boots `kernel` with `payload` and [`DEFAULT_LSM`]; see [`run_with_lsm`].
pub fn run(kernel: &Kernel, name: &str, payload: &Payload, timeout: Duration) -> anyhow::Result<VmOutput> {
    run_with_lsm(kernel, name, payload, timeout, DEFAULT_LSM)
}

/// Builds target/vm/initramfs/<label>-<name>.cpio.gz, boots it with `lsm=<lsm>`, streams the console to
/// target/vm/<label>-<name>.log and returns the payload's exit code. Errors when the guest does not power off
/// within `timeout` (QEMU is killed) or never reports an exit code (e.g. a kernel panic).
pub fn run_with_lsm(
    kernel: &Kernel,
    name: &str,
    payload: &Payload,
    timeout: Duration,
    lsm: &str,
) -> anyhow::Result<VmOutput> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("VM run name {name:?} must be non-empty [A-Za-z0-9._-]");
    }
    let id = format!("{}-{name}", kernel.label);
    let dir = vm_dir().join("initramfs");
    fs::create_dir_all(&dir)?;
    let initrd = dir.join(format!("{id}.cpio.gz"));
    // The kernel's config at its usual path, for what reads Kconfig (bpftool, libbpf/aya `extern` kconfig).
    let mut payload = payload.clone();
    let config = kernel.vmlinuz.with_file_name(format!("config-{}", kernel.label));
    if config.is_file() {
        payload.files.push((config, format!("/boot/config-{}", kernel.label)));
    }
    initramfs::build(&payload, &dir.join(&id), &initrd).with_context(|| format!("building {}", initrd.display()))?;

    let log = vm_dir().join(format!("{id}.log"));
    let append = format!("console=ttyS0 lsm={lsm} panic=-1 quiet");
    let boot = qemu::boot(&kernel.vmlinuz, &initrd, &append, &log, timeout).with_context(|| format!("VM {id}"))?;
    let rc = parse_rc(&boot.console).with_context(|| {
        format!(
            "VM {id}: the guest powered off without reporting an exit code (kernel panic?); console ({}) ends with:\n{}",
            log.display(),
            qemu::tail(&boot.console, 30)
        )
    })?;
    Ok(VmOutput { rc, console: boot.console, elapsed: boot.elapsed })
}

/// The exit code from the last marker line /init printed.
fn parse_rc(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|l| l.trim().strip_prefix(RC_MARKER)?.trim().parse().ok())
}

/// The cargo target directory (CARGO_TARGET_DIR, else <workspace>/target).
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() { d } else { crate::util::workspace().join(d) }
        }
        _ => crate::util::workspace().join("target"),
    }
}

/// target/vm: downloads, extracted kernels, initramfs images and console logs.
pub fn vm_dir() -> PathBuf {
    target_dir().join("vm")
}

/// target/release/`name`: a host-built binary to ship into a VM (see [`Payload::binary`]).
pub fn host_binary(name: &str) -> PathBuf {
    target_dir().join("release").join(name)
}

/// The release binaries and the VM case runner. VM runs and `cargo xtask image` share this one cargo invocation:
/// another target set (e.g. without the example and its dev-dependencies) can unify features differently and
/// rebuild the whole agent.
pub fn build_release() -> anyhow::Result<()> {
    let args = ["build", "--release", "-p", "warden", "--bins", "--example", "vm_cases"];
    crate::util::run(crate::util::cargo().args(args))
}

/// `cargo xtask vm-smoke`.
#[derive(clap::Args)]
pub struct SmokeArgs {
    /// Kernel series to boot (repeatable); default: 6.1 and 6.12.
    #[arg(long = "series", value_name = "SERIES")]
    pub series: Vec<String>,
    /// Seconds each guest gets to power off.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// Boots each kernel series and checks what LSM tests need: the running kernel is the one asked for,
/// `bpf` is an active LSM, kernel BTF exists, cgroup2 is mounted; plus the harness itself (a dynamically
/// linked host tool runs in the guest).
pub fn smoke(args: SmokeArgs) -> anyhow::Result<()> {
    let series = if args.series.is_empty() { vec!["6.1".to_string(), "6.12".to_string()] } else { args.series };
    let mut results = Vec::new();
    for s in &series {
        let result = kernel(s).and_then(|k| {
            let out = run(&k, "smoke", &smoke_payload(&k), Duration::from_secs(args.timeout))?;
            Ok((k, out))
        });
        match &result {
            Ok((k, out)) => {
                eprintln!("--- {} (rc {}):\n{}", k.label, out.rc, out.payload_output());
            }
            Err(e) => eprintln!("--- {s}: {e:#}"),
        }
        results.push((s, result));
    }
    let mut failed = 0;
    for (s, r) in &results {
        match r {
            Ok((k, out)) if out.rc == 0 => println!("{:<28} {:>6.1}s  ok", k.label, out.elapsed.as_secs_f64()),
            Ok((k, out)) => {
                failed += 1;
                println!("{:<28} {:>6.1}s  FAILED (rc {})", k.label, out.elapsed.as_secs_f64(), out.rc)
            }
            Err(e) => {
                failed += 1;
                println!("{s:<28} {:>7}  FAILED: {}", "-", format!("{e:#}").lines().next().unwrap_or(""))
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} VM smoke boots failed", results.len());
    }
    Ok(())
}

fn smoke_payload(k: &Kernel) -> Payload {
    let mut payload = Payload::new(format!(
        r#"fail=0
check() {{ if eval "$2"; then echo "check $1: ok"; else echo "check $1: FAIL"; fail=1; fi; }}
echo "uname -r: $(uname -r)"
echo "lsm: $(cat /sys/kernel/security/lsm)"
check kernel '[ "$(uname -r)" = "{label}" ]'
check bpf-lsm 'case ",$(cat /sys/kernel/security/lsm)," in *,bpf,*) true;; *) false;; esac'
check btf '[ -s /sys/kernel/btf/vmlinux ]'
check cgroup2 'grep -q "^cgroup2 /sys/fs/cgroup cgroup2 " /proc/mounts'
check bpffs 'grep -q "^bpf /sys/fs/bpf bpf " /proc/mounts'
check loopback 'ip addr show lo | grep -q "inet 127.0.0.1"'
check kconfig 'grep -q "^CONFIG_BPF_LSM=y" "/boot/config-$(uname -r)"'
"#,
        label = k.label
    ));
    // bpftool is dynamically linked: proves library shipping, and probes lsm program loading for real.
    let bpftool = Path::new("/usr/sbin/bpftool");
    if bpftool.is_file() {
        payload = payload.file(bpftool, "/usr/sbin/bpftool");
        payload.script.push_str(
            "check bpftool 'bpftool version >/dev/null'\n\
             check lsm-prog-type 'bpftool feature probe kernel | grep -q \"program_type lsm is available\"'\n",
        );
    } else {
        payload.script.push_str("echo 'bpftool not on the host: skipping the shared-library and lsm probe checks'\n");
    }
    payload.script.push_str("exit $fail\n");
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_and_payload_output() {
        let out = VmOutput {
            rc: 0,
            console: format!("boot\n{BEGIN_MARKER}\nhello\n{RC_MARKER}1 fake\n\n{RC_MARKER}3\n"),
            elapsed: Duration::ZERO,
        };
        assert_eq!(parse_rc(&out.console), Some(3));
        assert_eq!(out.payload_output(), format!("hello\n{RC_MARKER}1 fake"));
        assert_eq!(parse_rc("no marker\n"), None);
    }

    /// Boots a VM three times (about 15–25 s). Runs in CI: `scripts/setup.sh`
    /// installs QEMU and the kernel is downloaded (or cached under target/vm).
    #[test]
    fn failure_paths() {
        let k = kernel("6.12").unwrap();
        let t = Duration::from_secs(120);
        // `sh -e`: the first failing command ends the script with its status.
        let out = run(&k, "test-rc", &Payload::new("echo before\nfalse\necho after\n"), t).unwrap();
        assert_eq!((out.rc, out.payload_output()), (1, "before"));
        // A kernel panic (panic=-1, -no-reboot) ends QEMU without an exit-code marker.
        let err = run(&k, "test-panic", &Payload::new("echo c > /proc/sysrq-trigger\n"), t).unwrap_err();
        assert!(format!("{err:#}").contains("without reporting an exit code"), "{err:#}");
        // A guest that never powers off is killed at the timeout.
        let err = run(&k, "test-timeout", &Payload::new("sleep 600\n"), Duration::from_secs(15)).unwrap_err();
        assert!(format!("{err:#}").contains("did not power off"), "{err:#}");
    }
}
