//! `resolve` on a fixture procfs: MIG capability nodes join their GPU's
//! segment, existing instances borrow free GPU-set bits, the rest are
//! protected from everyone.
use std::path::PathBuf;

use warden_common::{DeviceSegment, GpuSet};

use super::{mig::NO_SLOT, *};
use crate::policy::{DeviceSegmentSpec, DeviceSpec, GpuSelection, Origin};

const CAPS_MAJOR: u32 = 508;

fn proc_tree(test: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("warden-devices-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let w = |rel: &str, text: String| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "devices",
        format!(
            "Character devices:\n195 nvidia-frontend\n{CAPS_MAJOR} nvidia-caps\n510 nvidia-uvm\n\nBlock devices:\n"
        ),
    );
    for (bus, uuid, minor) in [("0000:18:00.0", "GPU-aaaaaaaa-0000", 0), ("0000:2a:00.0", "GPU-bbbbbbbb-0000", 1)] {
        w(&format!("driver/nvidia/gpus/{bus}/information"), format!("GPU UUID: \t {uuid}\nDevice Minor: \t {minor}\n"));
    }
    let access = |m: u32| format!("DeviceFileMinor: {m}\nDeviceFileMode: 292\nDeviceFileModify: 1\n");
    w("driver/nvidia/capabilities/mig/config", access(1));
    w("driver/nvidia/capabilities/mig/monitor", access(2));
    w("driver/nvidia/capabilities/gpu0/mig/gi1/access", access(12));
    w("driver/nvidia/capabilities/gpu0/mig/gi1/ci0/access", access(13));
    w("driver/nvidia/capabilities/gpu1/mig/gi2/access", access(156));
    w("driver/nvidia/capabilities/gpu1/mig/gi2/ci0/access", access(157));
    // What the driver could create (GIs 1 and 2 with CI 0 on GPUs 0, 1 and 2;
    // GPU 2 is not on this node), numbered as mig-minors does: 9 per GI.
    let mut minors = String::from("config 1\nmonitor 2\n");
    for gpu in 0..3u32 {
        for gi in [1u32, 2] {
            let base = 3 + gpu * 135 + gi * 9;
            minors += &format!("gpu{gpu}/gi{gi}/access {base}\ngpu{gpu}/gi{gi}/ci0/access {}\n", base + 1);
        }
    }
    w("driver/nvidia-caps/mig-minors", minors);
    root
}

fn spec(id: u16, gpus: GpuSelection, control: bool, reserved: &[u16]) -> DeviceSegmentSpec {
    DeviceSegmentSpec {
        segment_id: id,
        spec: DeviceSpec {
            gpus: Some(gpus),
            gpus_given: true,
            nvidia_control: control,
            paths: vec![],
            origin: Origin::default(),
        },
        reserved: reserved.to_vec(),
    }
}

fn cap(t: &DeviceTable, minor: u32) -> Option<DeviceSegment> {
    t.nodes.get(&char_dev(CAPS_MAJOR, minor)).map(|(s, _)| *s)
}

#[test]
fn mig_capabilities_join_their_gpus_segment() {
    let root = proc_tree("mig");
    let mut slots = mig::MigSlots::new();
    let t = resolve(&[spec(1, GpuSelection::All, true, &[255])], &root, &mut slots);
    assert!(t.mig && t.missing.is_empty(), "{:?}", t.missing);
    // Existing instances and config/monitor borrow bits: not 255 (named by the
    // policy), not 0 or 1 (GPUs here).
    let bits: Vec<u16> = [1, 2, 12, 13, 156, 157].iter().map(|m| cap(&t, *m).unwrap().gpu).collect();
    assert_eq!(bits, [254, 253, 252, 251, 250, 249]);
    assert_eq!(t.cap_slots.len(), 6);
    assert_eq!(t.nodes[&char_dev(CAPS_MAJOR, 13)].1, "/dev/nvidia-caps/nvidia-cap13");
    // Instances not created yet: protected, granted to nobody.
    for m in [21, 22, 147, 148] {
        assert_eq!(cap(&t, m).map(|s| s.gpu), Some(NO_SLOT), "minor {m}");
    }
    // GPU 2 is not on this node: its possible instances are not listed.
    assert_eq!(cap(&t, 3 + 2 * 135 + 9), None);
    // Stable on a re-read.
    assert_eq!(resolve(&[spec(1, GpuSelection::All, true, &[255])], &root, &mut slots), t);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn capabilities_follow_the_segment_of_their_gpu() {
    let root = proc_tree("split");
    let mut slots = mig::MigSlots::new();
    let specs =
        [spec(1, GpuSelection::Indices(vec![0]), true, &[0]), spec(2, GpuSelection::Indices(vec![1]), false, &[1])];
    let t = resolve(&specs, &root, &mut slots);
    let seg = |m| cap(&t, m).unwrap().segment_id;
    assert_eq!((seg(1), seg(2), seg(12), seg(13), seg(156), seg(157)), (1, 1, 1, 1, 2, 2));
    // No segment with GPUs: no capability nodes.
    let t = resolve(&[spec(1, GpuSelection::Indices(vec![]), false, &[])], &root, &mut slots);
    assert!(!t.mig && t.nodes.keys().all(|k| k.major != CAPS_MAJOR));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_full_set_of_bits_leaves_instances_denied_and_says_so() {
    let root = proc_tree("full");
    let reserved: Vec<u16> = (0..255).collect();
    let t = resolve(&[spec(1, GpuSelection::All, true, &reserved)], &root, &mut mig::MigSlots::new());
    // One bit (255) for six capabilities.
    assert_eq!(t.cap_slots.len(), 1);
    assert_eq!(t.missing.iter().filter(|m| m.contains("no free GPU-set bit")).count(), 5, "{:?}", t.missing);
    assert!(!GpuSet { bits: [u64::MAX; 4] }.contains(cap(&t, 157).unwrap().gpu));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn no_caps_major_means_unresolved() {
    let root = proc_tree("nomajor");
    std::fs::write(root.join("devices"), "Character devices:\n195 nvidia-frontend\n\nBlock devices:\n").unwrap();
    let t = resolve(&[spec(1, GpuSelection::All, true, &[])], &root, &mut mig::MigSlots::new());
    assert!(t.missing.iter().any(|m| m.contains("no nvidia-caps in")), "{:?}", t.missing);
    assert!(!t.mig);
    std::fs::remove_dir_all(&root).unwrap();
}
