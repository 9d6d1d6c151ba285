//! Debian cloud kernels, fetched from the archive with apt without installing them.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use super::vm_dir;
use crate::util::run;

/// A bootable kernel image.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Kernel release, as `uname -r` prints it inside the guest, e.g. `6.1.0-50-cloud-amd64`.
    pub label: String,
    /// The bzImage handed to `qemu -kernel`.
    pub vmlinuz: PathBuf,
}

const PREFIX: &str = "linux-image-";
const SUFFIX: &str = "-cloud-amd64";

/// Finds the newest Debian cloud kernel of a series (`"6.1"`, `"6.12"`), downloads its package into
/// target/vm/debs/ and extracts it into target/vm/kernels/<label>/ (both cached), and returns it.
///
/// Package names carry the ABI and change with every Debian update (`linux-image-6.1.0-50-cloud-amd64`,
/// `linux-image-6.12.100+deb12-cloud-amd64`), so they are looked up with apt-cache. When apt knows none
/// (no `apt-get update` yet, or offline), the newest kernel of the series already extracted is used.
pub fn kernel(series: &str) -> anyhow::Result<Kernel> {
    if series.is_empty() || !series.chars().all(|c| c.is_ascii_digit() || c == '.') {
        bail!("kernel series must look like 6.1 or 6.12, not {series:?}");
    }
    let candidates = apt_candidates(series)?;
    if candidates.is_empty() {
        if let Some(k) = cached(series)? {
            eprintln!("vm: apt knows no {series} cloud kernel; using cached {}", k.label);
            return Ok(k);
        }
        bail!(
            "apt-cache finds no linux-image-{series}.*{SUFFIX} package and none is cached in {}; \
             run `apt-get update` (scripts/setup.sh)",
            kernels_dir().display()
        );
    }
    // Newest first; fall back to older ones when the archive no longer serves a listed package.
    let mut last_err = None;
    for pkg in &candidates {
        let label = pkg.strip_prefix(PREFIX).expect("filtered").to_string();
        if let Some(k) = extracted(&label) {
            return Ok(k);
        }
        match download(pkg).and_then(|deb| extract(&deb, &label)) {
            Ok(k) => return Ok(k),
            Err(e) => {
                eprintln!("vm: {pkg}: {e:#}; trying an older one");
                last_err = Some(e);
            }
        }
    }
    Err(last_err.expect("at least one candidate")).context(format!("no {series} cloud kernel could be fetched"))
}

fn kernels_dir() -> PathBuf {
    vm_dir().join("kernels")
}

/// Package names of the series known to apt, newest first.
fn apt_candidates(series: &str) -> anyhow::Result<Vec<String>> {
    let pattern = format!("^{PREFIX}{}\\.[0-9][^ ]*{SUFFIX}$", series.replace('.', "\\."));
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", &pattern])
        .stderr(Stdio::inherit())
        .output()
        .context("running apt-cache (is this Debian?)")?;
    if !out.status.success() {
        bail!("apt-cache search {pattern} failed: {}", out.status);
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX) && in_series(&n[PREFIX.len()..], series))
        .map(str::to_string)
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(version_key(n)));
    names.dedup();
    Ok(names)
}

/// `6.1.0-50-cloud-amd64` is in series `6.1`; `6.12.100+deb12-cloud-amd64` is not.
fn in_series(label: &str, series: &str) -> bool {
    label.strip_prefix(series).is_some_and(|rest| rest.starts_with('.'))
}

/// Orders kernel names by the numbers in them: 6.1.0-50 < 6.1.0-56, 6.12.100+deb12 < 6.12.117+deb12.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(u64::MAX)).collect()
}

fn vmlinuz_of(label: &str) -> PathBuf {
    kernels_dir().join(label).join("boot").join(format!("vmlinuz-{label}"))
}

fn extracted(label: &str) -> Option<Kernel> {
    let vmlinuz = vmlinuz_of(label);
    vmlinuz.is_file().then(|| Kernel { label: label.to_string(), vmlinuz })
}

/// The newest kernel of the series already extracted under target/vm/kernels/.
fn cached(series: &str) -> anyhow::Result<Option<Kernel>> {
    let Ok(dir) = fs::read_dir(kernels_dir()) else { return Ok(None) };
    let mut labels = Vec::new();
    for e in dir {
        let name = e?.file_name().to_string_lossy().into_owned();
        if in_series(&name, series) && extracted(&name).is_some() {
            labels.push(name);
        }
    }
    Ok(labels.into_iter().max_by_key(|l| version_key(l)).and_then(|l| extracted(&l)))
}

/// `apt-get download`s the package into target/vm/debs/ unless a .deb of it is already there.
fn download(pkg: &str) -> anyhow::Result<PathBuf> {
    let debs = vm_dir().join("debs");
    fs::create_dir_all(&debs)?;
    if let Some(deb) = find_deb(&debs, pkg)? {
        return Ok(deb);
    }
    let mut cmd = Command::new("apt-get");
    cmd.arg("download").arg("-q").current_dir(&debs);
    // As root, apt drops to the `_apt` user, which cannot write into target/: it would warn and download
    // unsandboxed anyway.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    run(cmd.arg(pkg))?;
    find_deb(&debs, pkg)?.with_context(|| format!("apt-get download {pkg} left no .deb in {}", debs.display()))
}

fn find_deb(dir: &Path, pkg: &str) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{pkg}_");
    for e in fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(Some(dir.join(name)));
        }
    }
    Ok(None)
}

/// `dpkg -x` into a scratch directory, renamed into place once complete.
fn extract(deb: &Path, label: &str) -> anyhow::Result<Kernel> {
    let dest = kernels_dir().join(label);
    let tmp = kernels_dir().join(format!(".{label}.partial"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    run(Command::new("dpkg").arg("-x").arg(deb).arg(&tmp))?;
    let _ = fs::remove_dir_all(&dest);
    fs::rename(&tmp, &dest)?;
    extracted(label).with_context(|| format!("{} has no boot/vmlinuz-{label}", deb.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_order() {
        assert!(in_series("6.1.0-50-cloud-amd64", "6.1"));
        assert!(!in_series("6.12.100+deb12-cloud-amd64", "6.1"));
        assert!(in_series("6.12.100+deb12-cloud-amd64", "6.12"));
        assert!(version_key("linux-image-6.1.0-9-cloud-amd64") < version_key("linux-image-6.1.0-50-cloud-amd64"));
        assert!(
            version_key("linux-image-6.12.101+deb12-cloud-amd64")
                < version_key("linux-image-6.12.117+deb12-cloud-amd64")
        );
    }
}
