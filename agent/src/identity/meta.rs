//! Metadata about the workloads behind cgroups, from sources other than the
//! path: Kubernetes pods (API server watch), Slurm jobs (scontrol). Keyed by
//! what the path names (pod UID, container id, job id), so a cgroup's facts
//! are one lookup away, and a metadata change tells exactly which cgroups to
//! re-identify.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use super::path::PathIdentity;
use crate::policy::Facts;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// Bare id, as in the cgroup path (no `containerd://` prefix).
    pub id: String,
    pub name: String,
    pub image: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub containers: Vec<ContainerMeta>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlurmJob {
    pub id: u64,
    pub user: Option<String>,
    pub account: Option<String>,
    pub partition: Option<String>,
}

/// Identity of a cgroup's processes as events and status show it: OpenTelemetry
/// resource attribute names where they exist.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadIdentity {
    #[serde(rename = "k8s.namespace.name", skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(rename = "k8s.pod.name", skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(rename = "k8s.pod.uid", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(rename = "k8s.pod.qos_class", skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    #[serde(rename = "k8s.serviceaccount.name", skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(rename = "k8s.container.name", skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(rename = "container.id", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(rename = "container.runtime", skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(rename = "container.image.name", skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(rename = "slurm.job.id", skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<u64>,
    #[serde(rename = "slurm.step", skip_serializing_if = "Option::is_none")]
    pub slurm_step: Option<String>,
    #[serde(rename = "slurm.uid", skip_serializing_if = "Option::is_none")]
    pub slurm_uid: Option<u32>,
    #[serde(rename = "slurm.user", skip_serializing_if = "Option::is_none")]
    pub slurm_user: Option<String>,
    #[serde(rename = "slurm.account", skip_serializing_if = "Option::is_none")]
    pub slurm_account: Option<String>,
    #[serde(rename = "slurm.partition", skip_serializing_if = "Option::is_none")]
    pub slurm_partition: Option<String>,
    #[serde(rename = "systemd.unit", skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// What changed in a metadata update: the cgroups to re-identify.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub pods: HashSet<String>,
    pub jobs: HashSet<u64>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.jobs.is_empty()
    }

    /// Whether a cgroup with this path identity is affected.
    pub fn touches(&self, o: &PathIdentity) -> bool {
        o.pod_uid.as_ref().is_some_and(|u| self.pods.contains(u.as_str()))
            || o.slurm_job.is_some_and(|j| self.jobs.contains(&j))
    }
}

#[derive(Debug, Default)]
pub struct MetaStore {
    pods: HashMap<String, Arc<PodMeta>>,
    jobs: HashMap<u64, Arc<SlurmJob>>,
    /// A full pod list has arrived: a pod missing from it does not exist.
    pods_listed: bool,
}

impl WorkloadIdentity {
    /// Short human form: `ns/pod (container)`, `slurm job 7 (alice)`, a unit.
    pub fn label(&self) -> String {
        let opt = |o: &Option<String>| o.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
        match (&self.namespace, &self.pod_name, &self.pod_uid, self.slurm_job, &self.unit) {
            (Some(ns), Some(pod), ..) => format!("{ns}/{pod}{}", opt(&self.container_name)),
            (_, _, Some(uid), ..) => format!("pod {uid}"),
            (_, _, _, Some(job), _) => format!("slurm job {job}{}", opt(&self.slurm_user)),
            (.., Some(unit)) => unit.clone(),
            _ => "?".into(),
        }
    }

    /// The pod, job or unit this identity belongs to (one per member).
    pub fn member_key(&self) -> Option<String> {
        self.pod_uid.clone().or_else(|| self.slurm_job.map(|j| format!("slurm job {j}"))).or_else(|| self.unit.clone())
    }
}

impl MetaStore {
    #[cfg(test)]
    pub fn pod(&self, uid: &str) -> Option<&PodMeta> {
        self.pods.get(uid).map(|p| &**p)
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Adds or replaces a pod; returns whether anything changed.
    pub fn upsert_pod(&mut self, pod: PodMeta) -> bool {
        if self.pods.get(&pod.uid).is_some_and(|p| **p == pod) {
            return false;
        }
        self.pods.insert(pod.uid.clone(), Arc::new(pod));
        true
    }

    pub fn remove_pod(&mut self, uid: &str) -> bool {
        self.pods.remove(uid).is_some()
    }

    /// Makes the pod set exactly `pods` (a full relist); returns the UIDs
    /// added, changed or removed.
    pub fn replace_pods(&mut self, pods: Vec<PodMeta>) -> Vec<String> {
        let mut changed = Vec::new();
        let mut keep: HashMap<String, Arc<PodMeta>> = HashMap::with_capacity(pods.len());
        for pod in pods {
            if self.pods.get(&pod.uid).is_none_or(|p| **p != pod) {
                changed.push(pod.uid.clone());
            }
            keep.insert(pod.uid.clone(), Arc::new(pod));
        }
        changed.extend(self.pods.keys().filter(|u| !keep.contains_key(*u)).cloned());
        self.pods = keep;
        self.pods_listed = true;
        changed
    }

    pub fn upsert_job(&mut self, job: SlurmJob) -> bool {
        if self.jobs.get(&job.id).is_some_and(|j| **j == job) {
            return false;
        }
        self.jobs.insert(job.id, Arc::new(job));
        true
    }

    pub fn remove_job(&mut self, id: u64) -> bool {
        self.jobs.remove(&id).is_some()
    }

    pub fn job_ids(&self) -> Vec<u64> {
        self.jobs.keys().copied().collect()
    }

    pub fn has_job(&self, id: u64) -> bool {
        self.jobs.contains_key(&id)
    }

    /// Whether the metadata a cgroup's selectors may need is known: its
    /// pod (or a full list without it), its Slurm job, or none is needed.
    pub fn knows(&self, o: &PathIdentity) -> bool {
        match (&o.pod_uid, o.slurm_job) {
            (Some(uid), _) => self.pods_listed || self.pods.contains_key(uid),
            (None, Some(job)) => self.jobs.contains_key(&job),
            (None, None) => true,
        }
    }

    fn parts<'a>(&'a self, o: &PathIdentity) -> (Option<&'a PodMeta>, Option<&'a ContainerMeta>, Option<&'a SlurmJob>) {
        let pod = o.pod_uid.as_ref().and_then(|u| self.pods.get(u)).map(|p| &**p);
        let container = pod.zip(o.container_id.as_ref()).and_then(|(p, id)| p.containers.iter().find(|c| &c.id == id));
        let job = o.slurm_job.and_then(|j| self.jobs.get(&j)).map(|j| &**j);
        (pod, container, job)
    }

    /// What selectors may test about a cgroup with this path identity.
    pub fn facts<'a>(&'a self, o: &'a PathIdentity) -> Facts<'a> {
        let (pod, container, job) = self.parts(o);
        Facts {
            namespace: pod.map(|p| p.namespace.as_str()),
            pod_labels: pod.map(|p| &p.labels),
            service_account: pod.and_then(|p| p.service_account.as_deref()),
            container: container.map(|c| c.name.as_str()),
            image: container.map(|c| c.image.as_str()),
            slurm_job: o.slurm_job,
            slurm_user: job.and_then(|j| j.user.as_deref()),
            slurm_account: job.and_then(|j| j.account.as_deref()),
            slurm_partition: job.and_then(|j| j.partition.as_deref()),
            unit: o.unit.as_deref(),
        }
    }

    /// The identity events carry for a cgroup with this path identity.
    pub fn identity(&self, o: &PathIdentity) -> WorkloadIdentity {
        let (pod, container, job) = self.parts(o);
        WorkloadIdentity {
            namespace: pod.map(|p| p.namespace.clone()),
            pod_name: pod.map(|p| p.name.clone()),
            pod_uid: o.pod_uid.clone(),
            qos: o.qos.map(str::to_string),
            service_account: pod.and_then(|p| p.service_account.clone()),
            container_name: container.map(|c| c.name.clone()),
            container_id: o.container_id.clone(),
            runtime: o.runtime.map(str::to_string),
            image: container.map(|c| c.image.clone()),
            slurm_job: o.slurm_job,
            slurm_step: o.slurm_step.clone(),
            slurm_uid: o.slurm_uid,
            slurm_user: job.and_then(|j| j.user.clone()),
            slurm_account: job.and_then(|j| j.account.clone()),
            slurm_partition: job.and_then(|j| j.partition.clone()),
            unit: o.unit.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, ns: &str) -> PodMeta {
        PodMeta {
            uid: uid.into(),
            namespace: ns.into(),
            name: format!("{ns}-pod"),
            containers: vec![ContainerMeta { id: "abc".repeat(4), name: "main".into(), image: "img:1".into() }],
            ..Default::default()
        }
    }

    #[test]
    fn facts_follow_the_path_identity() {
        let mut m = MetaStore::default();
        assert!(m.upsert_pod(pod("u1", "ml")));
        assert!(!m.upsert_pod(pod("u1", "ml")), "same pod again is no change");
        let o = PathIdentity { pod_uid: Some("u1".into()), container_id: Some("abc".repeat(4)), ..Default::default() };
        let f = m.facts(&o);
        assert_eq!((f.namespace, f.container, f.image), (Some("ml"), Some("main"), Some("img:1")));
        let pod_level = PathIdentity { pod_uid: Some("u1".into()), ..Default::default() };
        assert_eq!(m.facts(&pod_level).container, None);
        let id = m.identity(&o);
        assert_eq!((id.pod_name.as_deref(), id.container_name.as_deref()), (Some("ml-pod"), Some("main")));
        assert_eq!(m.facts(&PathIdentity::default()).namespace, None);
    }

    #[test]
    fn relist_reports_added_changed_and_removed() {
        let mut m = MetaStore::default();
        m.upsert_pod(pod("keep", "a"));
        m.upsert_pod(pod("change", "a"));
        m.upsert_pod(pod("gone", "a"));
        let mut changed = m.replace_pods(vec![pod("keep", "a"), pod("change", "b"), pod("new", "a")]);
        changed.sort();
        assert_eq!(changed, ["change", "gone", "new"]);
        assert_eq!(m.pod_count(), 3);
        assert!(m.pod("gone").is_none());
    }

    #[test]
    fn metadata_is_known_once_listed_or_looked_up() {
        let mut m = MetaStore::default();
        let pod_cg = PathIdentity { pod_uid: Some("u1".into()), ..Default::default() };
        let other_pod = PathIdentity { pod_uid: Some("u2".into()), ..Default::default() };
        let job_cg = PathIdentity { slurm_job: Some(7), ..Default::default() };
        assert!(m.knows(&PathIdentity::default()), "a plain unit needs no metadata");
        assert!(!m.knows(&pod_cg) && !m.knows(&job_cg));
        m.upsert_pod(pod("u1", "ml"));
        assert!(m.knows(&pod_cg) && !m.knows(&other_pod), "one pod seen, no list yet");
        m.replace_pods(vec![pod("u1", "ml")]);
        assert!(m.knows(&other_pod), "after a full list, a pod missing from it is known not to exist");
        m.upsert_job(SlurmJob { id: 7, ..Default::default() });
        assert!(m.knows(&job_cg));
    }
}
