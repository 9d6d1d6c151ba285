//! What a cgroup's path alone says about who runs in it: Kubernetes pod UID,
//! QoS class and container id (kubelet's layouts for both cgroup drivers and
//! the containerd, CRI-O and Docker scopes), Slurm job and step, systemd unit.
//!
//! Paths are parsed component by component wherever the `kubepods` (or
//! Slurm) subtree starts, so it works whatever `agent.cgroupRoot` is. A
//! cgroup below a container's own cgroup inherits its identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathIdentity {
    pub pod_uid: Option<String>,
    /// guaranteed | burstable | besteffort
    pub qos: Option<&'static str>,
    pub container_id: Option<String>,
    /// containerd | cri-o | docker (from the scope name; None with cgroupfs)
    pub runtime: Option<&'static str>,
    pub slurm_job: Option<u64>,
    pub slurm_step: Option<String>,
    /// From Slurm's cgroup v1 layout (`uid_<n>`).
    pub slurm_uid: Option<u32>,
    /// The deepest systemd unit (`*.service`, `*.scope`) that is not a container.
    pub unit: Option<String>,
}

const SCOPES: [(&str, &str); 4] =
    [("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("docker-", "docker"), ("cri-o-", "cri-o")];

/// A container id named by one path component: `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `docker-<id>.scope`, or a bare `<id>` (cgroupfs).
pub fn container_component(c: &str) -> Option<(&str, Option<&'static str>)> {
    let (id, runtime) = match c.strip_suffix(".scope") {
        Some(s) => {
            let (prefix, runtime) = SCOPES.iter().find(|(p, _)| s.starts_with(p))?;
            (&s[prefix.len()..], Some(*runtime))
        }
        None => (c, None),
    };
    (id.len() >= 12 && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some((id, runtime))
}

/// The pod UID of a pod cgroup: `kubepods[-<qos>]-pod<uid with _>.slice`
/// (systemd driver) or `pod<uid>` (cgroupfs driver).
fn pod_component(c: &str) -> Option<String> {
    let uid = match c.strip_suffix(".slice") {
        Some(s) => s.rsplit_once("-pod")?.1.replace('_', "-"),
        None => c.strip_prefix("pod")?.to_string(),
    };
    let ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(uid)
}

fn qos_of(c: &str) -> Option<&'static str> {
    if c.contains("burstable") {
        Some("burstable")
    } else if c.contains("besteffort") {
        Some("besteffort")
    } else {
        None
    }
}

pub fn parse(path: &str) -> PathIdentity {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut id = PathIdentity::default();
    if let Some(k) = parts.iter().position(|c| *c == "kubepods" || c.starts_with("kubepods.") || *c == "kubepods.slice")
    {
        let mut qos = "guaranteed";
        for c in &parts[k + 1..] {
            if id.pod_uid.is_none() {
                if let Some(uid) = pod_component(c) {
                    id.pod_uid = Some(uid);
                    qos = qos_of(c).unwrap_or(qos);
                } else if let Some(q) = qos_of(c) {
                    qos = q;
                }
            } else if id.container_id.is_none()
                && let Some((cid, runtime)) = container_component(c)
            {
                id.container_id = Some(cid.to_string());
                id.runtime = runtime;
            }
        }
        if id.pod_uid.is_some() {
            id.qos = Some(qos);
        }
        return id;
    }
    for c in &parts {
        if let Some(job) = c.strip_prefix("job_").and_then(|j| j.parse().ok()) {
            id.slurm_job = Some(job);
        } else if id.slurm_job.is_some() && id.slurm_step.is_none() {
            if let Some(step) = c.strip_prefix("step_") {
                id.slurm_step = Some(step.to_string());
            }
        } else if let Some(uid) = c.strip_prefix("uid_").and_then(|u| u.parse().ok()) {
            id.slurm_uid = Some(uid);
        }
    }
    id.unit = parts
        .iter()
        .rev()
        .find(|c| (c.ends_with(".service") || c.ends_with(".scope")) && container_component(c).is_none())
        .map(|c| c.to_string());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6b1d3c1e-6a8e-4c63-9f0a-2b7d1e4c5a90";
    const CID: &str = "3f1c9a7e5b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6";

    #[test]
    fn kubelet_systemd_driver() {
        let u = UID.replace('-', "_");
        let burstable = format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{CID}.scope"
        );
        let id = parse(&burstable);
        assert_eq!(id.pod_uid.as_deref(), Some(UID));
        assert_eq!(id.qos, Some("burstable"));
        assert_eq!(id.container_id.as_deref(), Some(CID));
        assert_eq!(id.runtime, Some("containerd"));
        assert_eq!(id.unit, None);
        let guaranteed = format!("kubepods.slice/kubepods-pod{u}.slice/crio-{CID}.scope");
        let id = parse(&guaranteed);
        assert_eq!((id.qos, id.runtime), (Some("guaranteed"), Some("cri-o")));
        let besteffort =
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/docker-{CID}.scope/sub");
        let id = parse(&besteffort);
        assert_eq!((id.qos, id.runtime, id.container_id.as_deref()), (Some("besteffort"), Some("docker"), Some(CID)));
        // The pod cgroup itself (pause/sandbox level): pod, no container.
        let pod = parse(&format!("kubepods.slice/kubepods-pod{u}.slice"));
        assert_eq!((pod.pod_uid.as_deref(), pod.container_id), (Some(UID), None));
    }

    #[test]
    fn kubelet_cgroupfs_driver_below_any_root() {
        let id = parse(&format!("test-root/kubepods/burstable/pod{UID}/{CID}"));
        assert_eq!(id.pod_uid.as_deref(), Some(UID));
        assert_eq!((id.qos, id.runtime), (Some("burstable"), None));
        assert_eq!(id.container_id.as_deref(), Some(CID));
        let id = parse(&format!("kubepods/pod{UID}/{CID}"));
        assert_eq!(id.qos, Some("guaranteed"));
        // Not a pod: the QoS level alone, or a malformed UID.
        assert_eq!(parse("kubepods/besteffort"), PathIdentity::default());
        assert_eq!(parse("kubepods/podxyz/abc").pod_uid, None);
    }

    #[test]
    fn slurm_and_systemd() {
        let v2 = parse("system.slice/slurmstepd.scope/job_4242/step_batch/user/task_0");
        assert_eq!((v2.slurm_job, v2.slurm_step.as_deref()), (Some(4242), Some("batch")));
        assert_eq!(v2.unit.as_deref(), Some("slurmstepd.scope"));
        let v1 = parse("slurm/uid_1001/job_7/step_0");
        assert_eq!((v1.slurm_job, v1.slurm_uid, v1.slurm_step.as_deref()), (Some(7), Some(1001), Some("0")));
        let unit = parse("system.slice/nvidia-dcgm.service");
        assert_eq!(unit.unit.as_deref(), Some("nvidia-dcgm.service"));
        assert_eq!(parse("user.slice/user-1000.slice/session-3.scope").unit.as_deref(), Some("session-3.scope"));
        assert_eq!(parse("training/job-1"), PathIdentity::default());
    }
}
