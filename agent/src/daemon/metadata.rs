//! Metadata sources feeding identity: the Kubernetes API (this node's pods)
//! and Slurm (`scontrol` per job). Both run beside enforcement and never
//! hold it up; what they report shows in `warden status`.
use std::{collections::HashSet, sync::Arc, time::Duration};

use super::state::Shared;
use crate::{
    control::status::SourceStatus,
    enrich::time::now_rfc3339,
    identity::meta::Changed,
    kube::pods::{self, PodUpdate},
    policy::SlurmConfig,
};

/// Both sources' status, for `warden status`.
#[derive(Debug, Default)]
pub struct SourcesState {
    pub kubernetes: SourceStatus,
    pub slurm: SourceStatus,
}

/// Starts the Kubernetes pod watch if `agent.kubernetes` enables one.
pub fn start_kubernetes(shared: &Arc<Shared>, node: &str, tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>) {
    let k = shared.with_policy(|p| p.agent.kubernetes.clone());
    let config = match pods::client_config(&k) {
        Ok(Some(c)) => c,
        Ok(None) => {
            shared.sources().kubernetes.state = "off".into();
            return;
        }
        Err(e) => {
            // Pods stay unidentified for metadata selectors: fail closed, loudly.
            tracing::error!(error = %e, "Kubernetes API source disabled");
            let mut s = shared.sources();
            s.kubernetes.state = "failed".into();
            s.kubernetes.last_error = Some(e);
            return;
        }
    };
    {
        let mut s = shared.sources();
        s.kubernetes.state = "connecting".into();
        s.kubernetes.endpoint = config.cluster_url.to_string();
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(pods::watch(config, node.to_string(), tx));
    let shared = shared.clone();
    tasks.spawn(async move {
        while let Some(update) = rx.recv().await {
            apply_pod_update(&shared, update);
        }
        // The watch ended (a bug): keep enforcing with what is known, say so.
        tracing::error!("Kubernetes pod watch stopped; pod metadata is no longer updated");
        shared.sources().kubernetes.state = "failed".into();
        std::future::pending::<anyhow::Result<()>>().await
    });
}

fn apply_pod_update(shared: &Shared, update: PodUpdate) {
    let switched = match update {
        PodUpdate::Error(e) => {
            tracing::warn!(error = %e, "Kubernetes pod watch failed; retrying with backoff");
            let mut s = shared.sources();
            s.kubernetes.state = "retrying".into();
            s.kubernetes.errors += 1;
            s.kubernetes.last_error = Some(e);
            s.kubernetes.last_error_at = Some(now_rfc3339());
            return;
        }
        PodUpdate::Relisted(list) => {
            let n = shared.update_metadata(|m| Changed { pods: m.replace_pods(list), jobs: vec![] });
            let mut s = shared.sources();
            s.kubernetes.state = "synced".into();
            s.kubernetes.relists += 1;
            n
        }
        PodUpdate::Applied(pod) => shared.update_metadata(|m| {
            let uid = pod.uid.clone();
            Changed { pods: if m.upsert_pod(pod) { vec![uid] } else { vec![] }, jobs: vec![] }
        }),
        PodUpdate::Deleted(uid) => shared
            .update_metadata(|m| Changed { pods: if m.remove_pod(&uid) { vec![uid] } else { vec![] }, jobs: vec![] }),
    };
    let (pods, _) = shared.metadata_counts();
    let mut s = shared.sources();
    s.kubernetes.updates += 1;
    s.kubernetes.objects = pods;
    if switched > 0 {
        tracing::info!(cgroups = switched, "pod metadata changed workload identities");
    }
}

/// Looks up Slurm jobs that have cgroups here but no record yet, and
/// forgets jobs whose cgroups are gone.
pub async fn slurm_loop(shared: Arc<Shared>) -> anyhow::Result<()> {
    let scontrol = match shared.with_policy(|p| p.agent.slurm.clone()) {
        SlurmConfig::Off => {
            shared.sources().slurm.state = "off".into();
            return std::future::pending().await;
        }
        SlurmConfig::Scontrol(p) => Some(p),
        SlurmConfig::Auto => None,
    };
    // A job whose lookup failed is retried after this long, not every tick.
    let retry_after = Duration::from_secs(10);
    let mut failed: std::collections::HashMap<u64, std::time::Instant> = Default::default();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let jobs = shared.slurm_jobs_present();
        let gone: Vec<u64> = shared.known_jobs().into_iter().filter(|j| !jobs.contains(j)).collect();
        if !gone.is_empty() {
            shared.update_metadata(|m| Changed {
                pods: vec![],
                jobs: gone.into_iter().filter(|j| m.remove_job(*j)).collect(),
            });
            shared.sources().slurm.objects = shared.metadata_counts().1;
        }
        failed.retain(|j, at| jobs.contains(j) && at.elapsed() < retry_after);
        let wanted: Vec<u64> =
            jobs.iter().copied().filter(|j| !shared.has_job(*j) && !failed.contains_key(j)).collect();
        if wanted.is_empty() {
            continue;
        }
        let Some(bin) = scontrol.clone().or_else(crate::identity::slurm::find_scontrol) else {
            shared.sources().slurm.state = "unavailable (no scontrol on PATH)".into();
            continue;
        };
        shared.sources().slurm.endpoint = bin.display().to_string();
        for id in wanted {
            let bin = bin.clone();
            let result =
                tokio::task::spawn_blocking(move || crate::identity::slurm::query(&bin, id, Duration::from_secs(5)))
                    .await?;
            match result {
                Ok(job) => {
                    shared.update_metadata(|m| Changed {
                        pods: vec![],
                        jobs: if m.upsert_job(job) { vec![id] } else { vec![] },
                    });
                    let mut s = shared.sources();
                    s.slurm.state = "ok".into();
                    s.slurm.updates += 1;
                }
                Err(e) => {
                    failed.insert(id, std::time::Instant::now());
                    let mut s = shared.sources();
                    s.slurm.errors += 1;
                    s.slurm.last_error = Some(e);
                    s.slurm.last_error_at = Some(now_rfc3339());
                }
            }
        }
        let (_, jobs) = shared.metadata_counts();
        shared.sources().slurm.objects = jobs;
    }
}

impl Shared {
    pub fn sources(&self) -> std::sync::MutexGuard<'_, SourcesState> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Slurm job ids that tracked cgroups name.
    fn slurm_jobs_present(&self) -> HashSet<u64> {
        self.with_identity(|t, _| t.iter().filter_map(|(_, i)| i.origin.slurm_job).collect())
    }
}
