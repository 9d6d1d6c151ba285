//! The device ids the NVIDIA device plugin hands kubelet, which kubelet's
//! pod-resources API reports per container:
//! - `GPU-<uuid>`: a whole GPU (`deviceIDStrategy: uuid`, the default);
//! - `3`: a whole GPU by index (`deviceIDStrategy: index`), which the plugin
//!   takes from NVML's enumeration and the driver's device minor matches;
//! - `MIG-<uuid>`: a MIG device, as drivers from R470 name them;
//! - `MIG-GPU-<uuid>/<gi>/<ci>`: a MIG device as older drivers named it,
//!   with its GPU instance and compute instance ids spelled out;
//! - `0:1`: a MIG device by index (NVML's MIG enumeration order);
//! - any of these with `::<n>` appended: replica n of a time-sliced (or MPS)
//!   device (`sharing.timeSlicing.resources[].replicas`).
//!
//! Parsing is strict: an id of no known form is refused, never guessed at.

/// What a device id names (borrowing from the id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceId<'a> {
    /// A whole GPU by UUID (`GPU-…`).
    GpuUuid(&'a str),
    /// A whole GPU by index.
    Index(u32),
    /// A MIG device by its own UUID (`MIG-…`, not `MIG-GPU-…`).
    MigUuid(&'a str),
    /// A MIG device in the pre-R470 form: parent GPU UUID (`GPU-…`), GPU
    /// instance and compute instance ids.
    MigLegacy { gpu_uuid: &'a str, gi: u32, ci: u32 },
    /// A MIG device by (GPU index, MIG index): NVML's enumeration order,
    /// which no file on the node records.
    MigIndex { gpu: u32, mig: u32 },
}

/// A parsed id and its time-slicing replica number, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub device: DeviceId<'a>,
    pub replica: Option<u32>,
}

/// Parses one device id; the error says what is wrong with it.
pub fn parse(id: &str) -> Result<Parsed<'_>, String> {
    let (base, replica) = match id.split_once("::") {
        None => (id, None),
        Some((base, n)) => (base, Some(number(n).ok_or_else(|| format!("replica suffix `::{n}` is not a number"))?)),
    };
    Ok(Parsed { device: device(base)?, replica })
}

fn device(id: &str) -> Result<DeviceId<'_>, String> {
    if let Some(rest) = id.strip_prefix("MIG-GPU-") {
        let mut parts = rest.split('/');
        let (Some(uuid), Some(gi), Some(ci), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("legacy MIG id is not MIG-GPU-<uuid>/<gi>/<ci>".into());
        };
        let (Some(gi), Some(ci)) = (number(gi), number(ci)) else {
            return Err("legacy MIG id has a non-numeric instance id".into());
        };
        if !is_uuid_body(uuid) {
            return Err("legacy MIG id has a malformed GPU UUID".into());
        }
        // The GPU's own UUID is the id less its `MIG-` prefix and instance ids.
        return Ok(DeviceId::MigLegacy { gpu_uuid: &id[4..4 + 4 + uuid.len()], gi, ci });
    }
    if let Some(uuid) = id.strip_prefix("MIG-") {
        return if is_uuid_body(uuid) { Ok(DeviceId::MigUuid(id)) } else { Err("malformed MIG UUID".into()) };
    }
    if let Some(uuid) = id.strip_prefix("GPU-") {
        return if is_uuid_body(uuid) { Ok(DeviceId::GpuUuid(id)) } else { Err("malformed GPU UUID".into()) };
    }
    if let Some((gpu, mig)) = id.split_once(':') {
        return match (number(gpu), number(mig)) {
            (Some(gpu), Some(mig)) => Ok(DeviceId::MigIndex { gpu, mig }),
            _ => Err("not <gpu index>:<MIG index>".into()),
        };
    }
    number(id).map(DeviceId::Index).ok_or_else(|| "not a GPU UUID, MIG UUID or index".into())
}

/// A decimal number without sign or leading zeros (as the plugin prints them).
fn number(s: &str) -> Option<u32> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if ok { s.parse().ok() } else { None }
}

/// NVML prints UUIDs as hex groups joined by `-` (8-4-4-4-12); accept any
/// grouping of hex digits and dashes, but nothing that could hide a path or
/// a second id.
fn is_uuid_body(s: &str) -> bool {
    (8..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPU: &str = "GPU-5c2a3e4f-1b2c-3d4e-5f60-718293a4b5c6";
    const MIG: &str = "MIG-8e9b8a84-52a2-5a3e-9d4b-3c1c7f2e6d10";

    fn dev(id: &str) -> DeviceId<'_> {
        parse(id).unwrap().device
    }

    #[test]
    fn whole_gpus() {
        assert_eq!(dev(GPU), DeviceId::GpuUuid(GPU));
        assert_eq!(dev("0"), DeviceId::Index(0));
        assert_eq!(dev("17"), DeviceId::Index(17));
        assert_eq!(parse(GPU).unwrap().replica, None);
    }

    #[test]
    fn time_sliced_replicas_name_their_device() {
        let p = parse("GPU-5c2a3e4f-1b2c-3d4e-5f60-718293a4b5c6::3").unwrap();
        assert_eq!((p.device, p.replica), (DeviceId::GpuUuid(GPU), Some(3)));
        assert_eq!(parse("2::0").unwrap(), Parsed { device: DeviceId::Index(2), replica: Some(0) });
        let replica = format!("{MIG}::1");
        let p = parse(&replica).unwrap();
        assert_eq!((p.device, p.replica), (DeviceId::MigUuid(MIG), Some(1)));
        for bad in ["GPU-5c2a3e4f::", "GPU-5c2a3e4f::x", "GPU-5c2a3e4f::-1", "GPU-5c2a3e4f::1::2", "0::01"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mig_forms() {
        assert_eq!(dev(MIG), DeviceId::MigUuid(MIG));
        let legacy = "MIG-GPU-5c2a3e4f-1b2c-3d4e-5f60-718293a4b5c6/7/0";
        assert_eq!(dev(legacy), DeviceId::MigLegacy { gpu_uuid: GPU, gi: 7, ci: 0 });
        assert_eq!(dev(&format!("{legacy}::2")), DeviceId::MigLegacy { gpu_uuid: GPU, gi: 7, ci: 0 });
        assert_eq!(dev("0:1"), DeviceId::MigIndex { gpu: 0, mig: 1 });
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "GPU-",
            "GPU-xyz",
            "GPU-5c2a3e4f/../x",
            "MIG-GPU-5c2a3e4f-1b2c/7",
            "MIG-GPU-5c2a3e4f-1b2c/7/0/1",
            "MIG-GPU-5c2a3e4f-1b2c/x/0",
            "MIG-GPU-/1/0",
            "MIG-zz",
            "gpu0",
            "-1",
            "01",
            "0:x",
            "4294967296",
            "GPU-5c2a3e4f-1b2c-3d4e-5f60-718293a4b5c6 ",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted: {:?}", parse(bad));
        }
    }
}
