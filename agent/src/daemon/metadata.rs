//! Metadata sources feeding identity: the Kubernetes API (this node's pods)
//! and Slurm (`scontrol` per job). Both run beside enforcement and never
//! hold it up; what they report shows in `warden status`.
use std::time::Duration;

use super::Parts;
use crate::{
    clock::now_rfc3339,
    identity::meta::Changed,
    kube::pods::{self, PodUpdate},
    policy::MetaSelector,
    settings::{KubernetesConfig, SlurmConfig},
};

/// Starts the Kubernetes pod watch if `agent.kubernetes` enables one.
pub fn start_kubernetes(
    parts: &Parts,
    k: &KubernetesConfig,
    node: &str,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) {
    let config = match pods::client_config(k) {
        Ok(Some(c)) => c,
        Ok(None) => {
            // Not under the sources lock: `unserved` takes the state lock.
            let why = unserved(parts, "pod metadata", "agent.kubernetes", |m| m.needs_pod_metadata());
            let mut s = parts.identities.sources();
            s.kubernetes.state = "off".into();
            s.kubernetes.last_error = why;
            return;
        }
        Err(e) => {
            // Pods stay unidentified for metadata selectors: fail closed, loudly.
            tracing::error!(error = %e, "Kubernetes API source disabled");
            let mut s = parts.identities.sources();
            s.kubernetes.state = "failed".into();
            s.kubernetes.last_error = Some(e);
            return;
        }
    };
    {
        let mut s = parts.identities.sources();
        s.kubernetes.state = "connecting".into();
        s.kubernetes.endpoint = config.cluster_url.to_string();
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(pods::watch(config, node.to_string(), tx));
    let parts = parts.clone();
    tasks.spawn(async move {
        while let Some(update) = rx.recv().await {
            apply_pod_update(&parts, update);
        }
        // The watch ended (a bug): keep enforcing with what is known, say so.
        tracing::error!("Kubernetes pod watch stopped; pod metadata is no longer updated");
        parts.identities.sources().kubernetes.state = "failed".into();
        std::future::pending::<anyhow::Result<()>>().await
    });
}

/// With a source off, workloads that need it can never match: say so (in
/// the log and in status) rather than leave them silently empty.
fn unserved(parts: &Parts, what: &str, key: &str, needs: impl Fn(&MetaSelector) -> bool) -> Option<String> {
    let names: Vec<String> =
        parts.cell.with_policy(|p| p.workloads.iter().filter(|w| needs(&w.meta)).map(|w| w.name.clone()).collect());
    if names.is_empty() {
        return None;
    }
    let why =
        format!("workloads {} select on {what}, but {key} is off: they match nothing (fail closed)", names.join(", "));
    tracing::warn!("{why}");
    Some(why)
}

fn apply_pod_update(parts: &Parts, update: PodUpdate) {
    let switched = match update {
        PodUpdate::Error(e) => {
            tracing::warn!(error = %e, "Kubernetes pod watch failed; retrying with backoff");
            let mut s = parts.identities.sources();
            s.kubernetes.state = "retrying".into();
            s.kubernetes.errors += 1;
            s.kubernetes.last_error = Some(e);
            s.kubernetes.last_error_at = Some(now_rfc3339());
            return;
        }
        PodUpdate::Relisted(list) => {
            let n = parts.identities.update_metadata(&parts.cell, |m| Changed {
                pods: m.replace_pods(list).into_iter().collect(),
                ..Default::default()
            });
            let mut s = parts.identities.sources();
            s.kubernetes.state = "synced".into();
            s.kubernetes.relists += 1;
            n
        }
        PodUpdate::Applied(pod) => parts.identities.update_metadata(&parts.cell, |m| {
            let uid = pod.uid.clone();
            Changed { pods: m.upsert_pod(pod).then_some(uid).into_iter().collect(), ..Default::default() }
        }),
        PodUpdate::Deleted(uid) => parts.identities.update_metadata(&parts.cell, |m| Changed {
            pods: m.remove_pod(&uid).then_some(uid).into_iter().collect(),
            ..Default::default()
        }),
    };
    let (pods, _) = parts.identities.metadata_counts();
    let mut s = parts.identities.sources();
    s.kubernetes.updates += 1;
    s.kubernetes.objects = pods;
    if switched > 0 {
        tracing::info!(cgroups = switched, "pod metadata changed workload identities");
    }
}

/// Looks up Slurm jobs that have cgroups here but no record yet, and
/// forgets jobs whose cgroups are gone.
pub async fn slurm_loop(parts: Parts, slurm: SlurmConfig) -> anyhow::Result<()> {
    let scontrol = match slurm {
        SlurmConfig::Off => {
            let why = unserved(&parts, "Slurm job records", "agent.slurm", |m| m.needs_slurm_metadata());
            {
                let mut s = parts.identities.sources();
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
        let generation = parts.identities.cgroups_generation();
        if seen_generation == Some(generation) && failed.is_empty() {
            continue;
        }
        seen_generation = Some(generation);
        let jobs = parts.identities.slurm_jobs_present();
        let gone: Vec<u64> = parts.identities.known_jobs().into_iter().filter(|j| !jobs.contains(j)).collect();
        if !gone.is_empty() {
            parts.identities.update_metadata(&parts.cell, |m| Changed {
                jobs: gone.into_iter().filter(|j| m.remove_job(*j)).collect(),
                ..Default::default()
            });
            parts.identities.sources().slurm.objects = parts.identities.metadata_counts().1;
        }
        failed.retain(|j, at| jobs.contains(j) && at.elapsed() < retry_after);
        let wanted: Vec<u64> =
            jobs.iter().copied().filter(|j| !parts.identities.has_job(*j) && !failed.contains_key(j)).collect();
        if wanted.is_empty() {
            continue;
        }
        let Some(bin) = scontrol.clone().or_else(crate::identity::slurm::find_scontrol) else {
            parts.identities.sources().slurm.state = "unavailable (no scontrol on PATH)".into();
            continue;
        };
        parts.identities.sources().slurm.endpoint = bin.display().to_string();
        for id in wanted {
            let bin = bin.clone();
            let result =
                tokio::task::spawn_blocking(move || crate::identity::slurm::query(&bin, id, Duration::from_secs(5)))
                    .await?;
            match result {
                Ok(job) => {
                    parts.identities.update_metadata(&parts.cell, |m| Changed {
                        jobs: m.upsert_job(job).then_some(id).into_iter().collect(),
                        ..Default::default()
                    });
                    let mut s = parts.identities.sources();
                    s.slurm.state = "ok".into();
                    s.slurm.updates += 1;
                }
                Err(e) => {
                    failed.insert(id, std::time::Instant::now());
                    let mut s = parts.identities.sources();
                    s.slurm.errors += 1;
                    s.slurm.last_error = Some(e);
                    s.slurm.last_error_at = Some(now_rfc3339());
                }
            }
        }
        let (_, jobs) = parts.identities.metadata_counts();
        parts.identities.sources().slurm.objects = jobs;
    }
}
