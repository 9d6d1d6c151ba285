//! NVIDIA driver procfs: maps the GPU UUIDs kubelet reports (device ids of
//! `nvidia.com/gpu`) to device minors, i.e. `/dev/nvidia<minor>` (char major
//! 195), which is what the kernel hooks can see. Also finds a driver's char
//! major in `/proc/devices` (e.g. `nvidia-uvm`, whose major is dynamic).
//!
//! These files are kernel-written but parsed defensively: a malformed GPU
//! entry is skipped with a warning rather than guessed at, since a wrong
//! UUID → minor pair would hand one workload's GPU to another.
use std::{
    collections::HashMap,
    io::Read,
    path::{Path, PathBuf},
};

use super::KubeError;

/// Driver procfs root on a real node.
pub const DRIVER_ROOT: &str = "/proc/driver/nvidia";

/// Largest `information` file read; real ones are under 1 KiB.
const MAX_INFO_BYTES: u64 = 64 << 10;

/// Minors 0..=253 are GPUs; 254 is nvidia-modeset, 255 nvidiactl.
const MAX_GPU_MINOR: u32 = 253;

/// GPU UUID (as written, e.g. `GPU-5c2a…`) → device minor, from
/// `<driver_root>/gpus/<bus id>/information`. Fails only if the `gpus`
/// directory cannot be read; bad entries are skipped with a warning, and a
/// UUID or minor claimed by two GPUs is dropped on both.
pub fn gpu_minors(driver_root: &Path) -> Result<HashMap<String, u32>, KubeError> {
    let dir = driver_root.join("gpus");
    let io_err = |path: &Path, source| KubeError::Io { path: path.to_path_buf(), source };
    let mut found: Vec<(String, u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
        let path = match entry {
            Ok(e) => e.path().join("information"),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "nvidia: skipping unreadable gpus entry");
                continue;
            }
        };
        match read_capped(&path).and_then(|text| parse_information(&text)) {
            Ok((uuid, minor)) => found.push((uuid, minor, path)),
            Err(why) => tracing::warn!(file = %path.display(), %why, "nvidia: skipping GPU information file"),
        }
    }
    let (mut uuids, mut minors) = (HashMap::<&str, usize>::new(), HashMap::<u32, usize>::new());
    for (uuid, minor, _) in &found {
        *uuids.entry(uuid).or_default() += 1;
        *minors.entry(*minor).or_default() += 1;
    }
    let mut out = HashMap::new();
    for (uuid, minor, path) in &found {
        if uuids[uuid.as_str()] > 1 || minors[minor] > 1 {
            tracing::warn!(file = %path.display(), uuid, minor, "nvidia: UUID or minor claimed by two GPUs; ignoring");
            continue;
        }
        out.insert(uuid.clone(), *minor);
    }
    Ok(out)
}

fn read_capped(path: &Path) -> Result<String, String> {
    read_at_most(path, MAX_INFO_BYTES)
}

/// A driver file as UTF-8 text, refused past `max` bytes (procfs files
/// report size 0, so the cap is on what is read).
pub(super) fn read_at_most(path: &Path, max: u64) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    if buf.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "not UTF-8".to_string())
}

/// `(uuid, minor)` from an information file's `GPU UUID:` and
/// `Device Minor:` lines (each `Key: \t value`), each required exactly once.
pub fn parse_information(text: &str) -> Result<(String, u32), String> {
    let (mut uuid, mut minor) = (None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let (key, value) = (key.trim(), value.trim());
        let slot = match key {
            "GPU UUID" => &mut uuid,
            "Device Minor" => &mut minor,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(format!("duplicate {key:?} line"));
        }
    }
    let uuid = uuid.ok_or("no GPU UUID line")?;
    if uuid.is_empty() || !uuid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("bad GPU UUID {uuid:?}"));
    }
    let minor = minor.ok_or("no Device Minor line")?;
    let minor =
        minor.parse::<u32>().ok().filter(|m| *m <= MAX_GPU_MINOR).ok_or(format!("bad Device Minor {minor:?}"))?;
    Ok((uuid.to_string(), minor))
}

/// The char-device major registered under `name` in `/proc/devices` text
/// (e.g. 195 for `nvidia-frontend`). Block devices are never matched.
pub fn proc_devices_major(proc_devices_text: &str, name: &str) -> Option<u32> {
    let mut in_char = false;
    for line in proc_devices_text.lines() {
        let line = line.trim();
        match line {
            "Character devices:" => in_char = true,
            "Block devices:" | "" => in_char = false,
            _ if in_char => {
                let mut fields = line.split_whitespace();
                if let (Some(major), Some(dev), None) = (fields.next(), fields.next(), fields.next())
                    && dev == name
                {
                    return major.parse().ok();
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As printed by nv-procfs.c (driver 550, H100 SXM, GSP firmware line).
    fn information(uuid: &str, bus: &str, minor: u32) -> String {
        format!(
            "Model: \t\t NVIDIA H100 80GB HBM3\n\
             IRQ:   \t\t 156\n\
             GPU UUID: \t {uuid}\n\
             Video BIOS: \t 96.00.99.00.01\n\
             Bus Type: \t PCIe\n\
             DMA Size: \t 52 bits\n\
             DMA Mask: \t 0xfffffffffffff\n\
             Bus Location: \t {bus}\n\
             Device Minor: \t {minor}\n\
             GPU Firmware: \t 550.90.07\n\
             GPU Excluded:\t No\n"
        )
    }

    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n  4 tty\n 10 misc\n195 nvidia-frontend\n\
        195 nvidia\n226 drm\n234 nvidia-nvswitch\n235 nvidia-nvlink\n237 nvidia-caps\n511 nvidia-uvm\n\n\
        Block devices:\n  7 loop\n  8 sd\n259 blkext\n260 nvidia-uvm\n";

    fn driver_root(test: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("warden-nvidia-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (bus, contents) in files {
            let dir = root.join("gpus").join(bus);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("information"), contents).unwrap();
        }
        std::fs::create_dir_all(root.join("gpus")).unwrap();
        root
    }

    const UUID0: &str = "GPU-5c2a3e4f-1b2c-3d4e-5f60-718293a4b5c6";
    const UUID1: &str = "GPU-9e8d7c6b-5a49-3827-1605-f4e3d2c1b0a9";

    #[test]
    fn parses_real_information_files() {
        let (a, b) = (information(UUID0, "0000:18:00.0", 0), information(UUID1, "0000:2a:00.0", 1));
        let root = driver_root("real", &[("0000:18:00.0", a.as_bytes()), ("0000:2a:00.0", b.as_bytes())]);
        let minors = gpu_minors(&root).unwrap();
        assert_eq!(minors, HashMap::from([(UUID0.to_string(), 0), (UUID1.to_string(), 1)]));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn skips_malformed_files() {
        let good = information(UUID0, "0000:18:00.0", 3);
        let no_uuid = "Model: \t\t NVIDIA H100 80GB HBM3\nDevice Minor: \t 1\n";
        let ctl_minor = information(UUID1, "0000:2a:00.0", 255);
        let huge = vec![b'x'; 70 << 10];
        let root = driver_root(
            "malformed",
            &[
                ("0000:18:00.0", good.as_bytes()),
                ("0000:2a:00.0", ctl_minor.as_bytes()),
                ("0000:3a:00.0", no_uuid.as_bytes()),
                ("0000:5d:00.0", &huge),
                ("0000:9a:00.0", b"\xff\xfe GPU UUID: \t x\n"),
                ("0000:ab:00.0", b"GPU UUID: \t GPU-1\nDevice Minor: \t 1\nDevice Minor: \t 2\n"),
                ("0000:ba:00.0", b"GPU UUID: \t GPU-2\nDevice Minor: \t -1\n"),
            ],
        );
        std::fs::create_dir_all(root.join("gpus/0000:db:00.0")).unwrap(); // no information file
        assert_eq!(gpu_minors(&root).unwrap(), HashMap::from([(UUID0.to_string(), 3)]));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn drops_conflicting_entries() {
        let (a, b, c) = (
            information(UUID0, "0000:18:00.0", 0),
            information(UUID0, "0000:2a:00.0", 1),
            information(UUID1, "0000:3a:00.0", 1),
        );
        let root = driver_root(
            "conflict",
            &[("0000:18:00.0", a.as_bytes()), ("0000:2a:00.0", b.as_bytes()), ("0000:3a:00.0", c.as_bytes())],
        );
        assert!(gpu_minors(&root).unwrap().is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_driver_is_an_error_naming_the_dir() {
        let root = std::env::temp_dir().join(format!("warden-nvidia-none-{}", std::process::id()));
        let err = gpu_minors(&root).unwrap_err();
        assert!(matches!(&err, KubeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound));
        assert!(err.to_string().contains(&root.join("gpus").display().to_string()), "{err}");
    }

    #[test]
    fn proc_devices_char_section_only() {
        assert_eq!(proc_devices_major(PROC_DEVICES, "nvidia-frontend"), Some(195));
        assert_eq!(proc_devices_major(PROC_DEVICES, "nvidia-uvm"), Some(511));
        assert_eq!(proc_devices_major(PROC_DEVICES, "nvidia-caps"), Some(237));
        assert_eq!(proc_devices_major(PROC_DEVICES, "sd"), None);
        assert_eq!(proc_devices_major(PROC_DEVICES, "blkext"), None);
        assert_eq!(proc_devices_major(PROC_DEVICES, "nvidia-modeset"), None);
        assert_eq!(proc_devices_major("", "nvidia"), None);
        assert_eq!(proc_devices_major("Character devices:\nxyz nvidia\n", "nvidia"), None);
    }
}
