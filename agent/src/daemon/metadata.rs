//! Metadata sources feeding identity: the Kubernetes API (this node's pods)
//! and Slurm (`scontrol` per job). Both run beside enforcement and never
//! hold it up; what they report shows in `warden status`.
use std::{collections::HashSet, sync::Arc, time::Duration};

use super::state::Shared;
use crate::{
    clock::now_rfc3339,
    identity::meta::Changed,
    kube::pods::{self, PodUpdate},
    policy::{MetaSelector, SlurmConfig},
    report::SourceStatus,
};

/// Both sources' status, for `warden status`.
#[derive(Clone, Debug, Default)]
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
            // Not under the sources lock: `unserved` takes the state lock.
            let why = unserved(shared, "pod metadata", "agent.kubernetes", |m| m.needs_pod_metadata());
            let mut s = shared.sources();
            s.kubernetes.state = "off".into();
            s.kubernetes.last_error = why;
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

/// With a source off, workloads that need it can never match: say so (in
/// the log and in status) rather than leave them silently empty.
fn unserved(shared: &Shared, what: &str, key: &str, needs: impl Fn(&MetaSelector) -> bool) -> Option<String> {
    let names: Vec<String> =
        shared.with_policy(|p| p.workloads.iter().filter(|w| needs(&w.meta)).map(|w| w.name.clone()).collect());
    if names.is_empty() {
        return None;
    }
    let why =
        format!("workloads {} select on {what}, but {key} is off: they match nothing (fail closed)", names.join(", "));
    tracing::warn!("{why}");
    Some(why)
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
            let n = shared.update_metadata(|m| Changed {
                pods: m.replace_pods(list).into_iter().collect(),
                ..Default::default()
            });
            let mut s = shared.sources();
            s.kubernetes.state = "synced".into();
            s.kubernetes.relists += 1;
            n
        }
        PodUpdate::Applied(pod) => shared.update_metadata(|m| {
            let uid = pod.uid.clone();
            Changed { pods: m.upsert_pod(pod).then_some(uid).into_iter().collect(), ..Default::default() }
        }),
        PodUpdate::Deleted(uid) => shared.update_metadata(|m| Changed {
            pods: m.remove_pod(&uid).then_some(uid).into_iter().collect(),
            ..Default::default()
        }),
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
            let why = unserved(&shared, "Slurm job records", "agent.slurm", |m| m.needs_slurm_metadata());
            {
                let mut s = shared.sources();
                s.slurm.state = "off".into();
                s.slurm.last_error = why;
            }
            return std::future::pending().await;
        }
        SlurmConfig::Scontrol(p) => Some(p),
        SlurmConfig::Auto => None,
    };
    // A job whose lookup failed is retried after this long, not every tick.
    let retry_after = Duration::from_secs(10);
    let mut failed: std::collections::HashMap<u64, std::time::Instant> = Default::default();
    let mut seen_generation = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Nothing to look up unless cgroups came or went, or a lookup awaits a retry.
        let generation = shared.cgroups_generation();
        if seen_generation == Some(generation) && failed.is_empty() {
            continue;
        }
        seen_generation = Some(generation);
        let jobs = shared.slurm_jobs_present();
        let gone: Vec<u64> = shared.known_jobs().into_iter().filter(|j| !jobs.contains(j)).collect();
        if !gone.is_empty() {
            shared.update_metadata(|m| Changed {
                jobs: gone.into_iter().filter(|j| m.remove_job(*j)).collect(),
                ..Default::default()
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
                        jobs: m.upsert_job(job).then_some(id).into_iter().collect(),
                        ..Default::default()
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

    /// Changes whenever the tracked cgroups do.
    fn cgroups_generation(&self) -> u64 {
        self.cgroups_gen.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Slurm job ids that tracked cgroups name.
    fn slurm_jobs_present(&self) -> HashSet<u64> {
        self.with_identity(|t, _| t.iter().filter_map(|(_, i)| i.origin.slurm_job).collect())
    }
}
