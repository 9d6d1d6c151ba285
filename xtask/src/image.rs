//! `cargo xtask image`: the agent as a distroless OCI image, assembled by buildah from scratch with no daemon and no
//! registry. The image holds the release `warden` binary (debug info stripped, symbols kept for backtraces), the
//! shared libraries ldd names, the dynamic loader and a two-line /etc/passwd: no shell, no package manager. It is
//! written as an OCI archive, target/image/warden-<version>-<arch>.tar, for `skopeo copy` or `podman load`.
//!
//! buildah keeps its storage (vfs: works as root anywhere, no overlay or FUSE needed) under target/image/buildah, so
//! `cargo clean` removes it. arm64 (NVIDIA Grace) is cross-built on x86_64 with Debian's aarch64 gcc and glibc; its
//! shared libraries are listed by the arm64 loader under qemu-user, and the assembled root filesystem runs
//! `warden --version` under qemu-user before it is packed.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::{
    util::{self, cargo},
    vm,
};

/// The entrypoint: where the agent lives in the image.
const ENTRYPOINT: &str = "/usr/local/bin/warden";
/// What the image runs without arguments (the chart passes its own).
const CMD: &str = r#"["agent","--config","/etc/warden/policy.yaml"]"#;

/// `cargo xtask image`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory for the archive [default: target/image].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Name recorded in the archive, what `podman load` calls the image [default: localhost/warden:<version>].
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// CPU architecture; arm64 (NVIDIA Grace) is cross-built on x86_64 [default: this machine's].
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    fn native() -> anyhow::Result<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Arch::Amd64),
            "aarch64" => Ok(Arch::Arm64),
            other => bail!("no image architecture for a {other} build machine"),
        }
    }

    /// The name OCI (and Go, and Kubernetes node labels) use.
    fn oci(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    fn rust_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Debian's cross-tool prefix.
    fn gnu(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
        }
    }
}

/// Debian's arm64 glibc for cross builds (libc6-dev-arm64-cross, libgcc-s1-arm64-cross).
const ARM64_SYSROOT: &str = "/usr/aarch64-linux-gnu";
const QEMU_ARM64: &str = "qemu-aarch64-static";

pub fn run(a: Args) -> anyhow::Result<()> {
    let archive = build(a)?;
    println!("{}", archive.display());
    Ok(())
}

/// Builds the image and returns the archive's path.
fn build(a: Args) -> anyhow::Result<PathBuf> {
    let arch = match a.arch {
        Some(arch) => arch,
        None => Arch::native()?,
    };
    let cross = arch != Arch::native()?;
    for tool in ["buildah", "ldd", "strip"] {
        if !on_path(tool) {
            bail!("{tool} is missing: run scripts/setup.sh (installs buildah)");
        }
    }
    let meta = Meta::read()?;
    let tag = a.tag.unwrap_or_else(|| format!("localhost/warden:{}", meta.version));
    let out = a.out.unwrap_or_else(|| vm::target_dir().join("image"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let started = std::time::Instant::now();
    let binary = if cross { cross_build(arch)? } else { native_build()? };
    // Per process: concurrent builds (parallel tests) never share a staging tree, a container or an image name.
    let id = format!("{}-{}", arch.oci(), std::process::id());
    let staging = Remove(vm::target_dir().join("image").join(format!("rootfs-{id}")));
    root_fs(arch, cross, &binary, &staging.0)?;
    if cross {
        smoke_under_qemu(&staging.0, &meta.version)?;
    }

    let archive = out.join(format!("warden-{}-{}.tar", meta.version, arch.oci()));
    let partial = out.join(format!(".warden-{id}.tar.partial"));
    if let Err(e) = assemble(arch, &meta, &staging.0, &tag, &id, &partial) {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    // A reader (a parallel test, CI's upload) never sees a half-written archive.
    fs::rename(&partial, &archive).with_context(|| format!("moving the archive to {}", archive.display()))?;
    let size = fs::metadata(&archive)?.len();
    eprintln!(
        "image: {} ({tag}, {}, {:.1} MiB) in {:.0}s",
        archive.display(),
        arch.oci(),
        size as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
    Ok(archive)
}

/// The crate's version and description, for labels.
struct Meta {
    version: String,
    description: String,
    license: String,
}

impl Meta {
    fn read() -> anyhow::Result<Meta> {
        let out = cargo().args(["metadata", "--no-deps", "--format-version", "1"]).output()?;
        if !out.status.success() {
            bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let pkg = v["packages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "warden"))
            .context("cargo metadata lists no warden package")?;
        let field = |k: &str| pkg[k].as_str().unwrap_or_default().to_string();
        Ok(Meta { version: field("version"), description: field("description"), license: field("license") })
    }
}

/// The same release build as the VM tests (cached: CI's earlier steps already made it).
fn native_build() -> anyhow::Result<PathBuf> {
    vm::build_release()?;
    Ok(vm::host_binary("warden"))
}

/// `cargo build --target aarch64-unknown-linux-gnu`, linked by Debian's cross gcc. The eBPF object is the same for
/// both: BPF bytecode is little-endian on both, and the agent reads kernel layouts from BTF at start-up.
fn cross_build(arch: Arch) -> anyhow::Result<PathBuf> {
    if Arch::native()? != Arch::Amd64 || arch != Arch::Arm64 {
        bail!("only arm64 is cross-built, on x86_64; build {} images on an {} machine", arch.oci(), arch.oci());
    }
    let gcc = format!("{}-gcc", arch.gnu());
    let mut missing = Vec::new();
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if !installed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == arch.rust_target())) {
        missing.push(format!("rustup target add {}", arch.rust_target()));
    }
    let mut debs = Vec::new();
    for (tool, deb) in [(gcc.as_str(), "gcc-aarch64-linux-gnu"), (QEMU_ARM64, "qemu-user-static")] {
        if !on_path(tool) {
            debs.push(deb);
        }
    }
    if !Path::new(ARM64_SYSROOT).join("lib/libc.so.6").is_file() {
        debs.push("libc6-dev-arm64-cross");
    }
    if !debs.is_empty() {
        missing.push(format!("apt-get install {}", debs.join(" ")));
    }
    if !missing.is_empty() {
        bail!("cross-building the arm64 image needs: {}", missing.join("; "));
    }
    let target = arch.rust_target();
    let env_target = target.replace('-', "_");
    util::run(
        cargo()
            .args(["build", "--release", "-p", "warden", "--bin", "warden", "--target", target])
            .env(format!("CARGO_TARGET_{}_LINKER", env_target.to_uppercase()), &gcc)
            // C code in dependencies (ring) is compiled for the target too.
            .env(format!("CC_{env_target}"), &gcc)
            .env(format!("AR_{env_target}"), format!("{}-ar", arch.gnu())),
    )?;
    Ok(vm::target_dir().join(target).join("release/warden"))
}

/// The image's root filesystem: merged /usr as on Debian, so the library paths ldd prints resolve as spelled.
fn root_fs(arch: Arch, cross: bool, binary: &Path, staging: &Path) -> anyhow::Result<()> {
    if staging.exists() {
        fs::remove_dir_all(staging)?;
    }
    for d in ["usr/local/bin", "usr/lib", "usr/lib64", "etc"] {
        fs::create_dir_all(staging.join(d))?;
    }
    for (link, target) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        std::os::unix::fs::symlink(target, staging.join(link))?;
    }
    // release keeps line tables (`debug = 1`, ~110 MB of them): the image keeps symbols only.
    let strip = if cross { format!("{}-strip", arch.gnu()) } else { "strip".to_string() };
    let dest = staging.join(ENTRYPOINT.trim_start_matches('/'));
    util::run(Command::new(strip).arg("--strip-debug").arg("-o").arg(&dest).arg(binary))?;

    let libs = if cross {
        cross_libs(binary)?
    } else {
        vm::shared_libs(binary)?.into_iter().map(|l| (l.clone(), l)).collect()
    };
    if libs.is_empty() {
        bail!("ldd found no libraries for {}: expected a dynamically linked glibc binary", binary.display());
    }
    for (host, guest) in &libs {
        vm::copy_file(host, staging, guest.to_str().context("non-UTF-8 library path")?)?;
    }
    // uid 0 gets a name (user lookups, `podman top`); the agent runs as root and never starts a shell.
    fs::write(staging.join("etc/passwd"), "root:x:0:0:root:/:/nonexistent\n")?;
    fs::write(staging.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

/// (host path, image path) of each library the arm64 loader resolves for `binary`, and the loader itself: ldd's
/// own mechanism (LD_TRACE_LOADED_OBJECTS) run under qemu-user with Debian's arm64 glibc as the root.
fn cross_libs(binary: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let out = Command::new(QEMU_ARM64)
        .arg("-L")
        .arg(ARM64_SYSROOT)
        .arg(binary)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .with_context(|| format!("running {QEMU_ARM64}"))?;
    if !out.status.success() {
        bail!("listing the libraries of {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    }
    let mut libs = Vec::new();
    for guest in vm::parse_ldd(binary, &String::from_utf8_lossy(&out.stdout))? {
        let host = Path::new(ARM64_SYSROOT).join(guest.strip_prefix("/")?);
        if !host.is_file() {
            bail!("{} needs {}, not in {ARM64_SYSROOT}", binary.display(), guest.display());
        }
        libs.push((host, guest));
    }
    Ok(libs)
}

/// Runs the staged arm64 binary under qemu-user with the staged tree as its root: the loader and libraries the
/// image holds are enough.
fn smoke_under_qemu(staging: &Path, version: &str) -> anyhow::Result<()> {
    let out = Command::new(QEMU_ARM64)
        .arg("-L")
        .arg(staging)
        .arg(staging.join(ENTRYPOINT.trim_start_matches('/')))
        .arg("--version")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(version) {
        bail!(
            "the arm64 rootfs does not run `warden --version` under qemu: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("image: arm64 rootfs runs under qemu-user: {}", text.trim());
    Ok(())
}

/// `buildah from scratch`, one layer holding `staging`, the config, commit, and the OCI archive at `archive`.
fn assemble(arch: Arch, meta: &Meta, staging: &Path, tag: &str, id: &str, archive: &Path) -> anyhow::Result<()> {
    let container = format!("warden-image-{id}");
    let image = format!("localhost/warden-build:{id}");
    // Removes what this run left in buildah's storage, on success and on failure (the archive is the product).
    struct Leftovers(String, String);
    impl Drop for Leftovers {
        fn drop(&mut self) {
            let _ = buildah().args(["rm", &self.0]).output();
            let _ = buildah().args(["rmi", "--force", &self.1]).output();
        }
    }
    let _leftovers = Leftovers(container.clone(), image.clone());

    util::run(buildah().args([
        "from",
        "--quiet",
        "--name",
        &container,
        "--arch",
        arch.oci(),
        "--os",
        "linux",
        "scratch",
    ]))?;
    // A trailing slash copies the directory's contents; ownership becomes 0:0.
    let src = format!("{}/", staging.display());
    util::run(buildah().args(["copy", "--quiet", &container, &src, "/"]))?;
    let labels = [
        ("title", "warden".to_string()),
        ("description", meta.description.clone()),
        ("version", meta.version.clone()),
        ("source", env!("CARGO_PKG_REPOSITORY").to_string()),
        ("licenses", meta.license.clone()),
    ];
    let mut config = buildah();
    config.args(["config", "--entrypoint", &format!(r#"["{ENTRYPOINT}"]"#), "--cmd", CMD]);
    // Root: loading eBPF programs and answering fanotify need it (with the capabilities the chart grants).
    config.args(["--user", "0:0", "--workingdir", "/", "--arch", arch.oci(), "--os", "linux"]);
    // `kubectl debug … -- warden uninstall` and `podman run --entrypoint warden` find it by name.
    config.args(["--env", "PATH=/usr/local/bin"]);
    // The layer's history entry (buildah writes "/bin/sh" otherwise, in an image without one).
    config.args(["--created-by", "cargo xtask image"]);
    for (k, v) in &labels {
        config.arg("--label").arg(format!("org.opencontainers.image.{k}={v}"));
    }
    util::run(config.arg(&container))?;
    util::run(buildah().args(["commit", "--quiet", "--rm", &container, &image]))?;
    let dest = format!("oci-archive:{}:{tag}", archive.display());
    util::run(buildah().args(["push", "--quiet", &image, &dest]))
}

/// buildah on its own storage under target/ (root, no daemon).
fn buildah() -> Command {
    let dir = vm::target_dir().join("image/buildah");
    let mut c = Command::new("buildah");
    c.arg("--root").arg(dir.join("root")).arg("--runroot").arg(dir.join("run")).args(["--storage-driver", "vfs"]);
    c
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A directory removed on drop (success or failure).
struct Remove(PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
