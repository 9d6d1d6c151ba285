//! `warden agent`: wires the pipeline together.
//!
//! policy → compiled maps → kernel hooks → ring buffer → identity enrichment → sinks
pub mod devices;
mod events;
pub mod files;
mod identify;
mod identity;
mod metadata;
mod reload;
mod state;
mod writer_priority;

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;

use crate::{
    control::{self, server::SocketGuard},
    enrich::Enricher,
    hooks::{Hooks, pins::Pins},
    identity::CgroupTracker,
    policy,
    sinks::{Fanout, JsonlSink},
    system::{self, kernel, mountinfo, mounts},
};
pub use state::Shared;

/// Command-line overrides of the config file's `agent:` section.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    pub config: PathBuf,
    pub cgroup_root: Option<String>,
    pub socket: Option<PathBuf>,
    pub events: Option<String>,
    pub node_name: Option<String>,
    pub metrics_address: Option<String>,
}

pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    system::require_root()?;
    identify::fix_heap_thresholds();
    // Refuse bad policy before touching the kernel.
    let policy = policy::load_file(&opts.config).map_err(|e| anyhow::anyhow!("invalid policy, not starting:\n{e}"))?;
    let compiled = Arc::new(policy.compile());
    let compiled_has_files = compiled.has_file_segments();
    // Refuse to start without a backend unless the whole policy is audit.
    let file_enforce = policy.mode == policy::Mode::Enforce;
    // Bind first: a second agent must fail before it touches the kernel.
    let socket_path = opts.socket.clone().unwrap_or_else(|| policy.agent.socket.clone());
    let listener =
        control::server::bind(&socket_path).with_context(|| format!("control socket {}", socket_path.display()))?;
    let _socket_guard = SocketGuard(socket_path.clone());

    kernel::require_btf()?;
    mounts::ensure_all()?;
    let securityfs_ok = mounts::ensure("securityfs", "none", mounts::SECURITYFS).is_ok();
    kernel::raise_memlock();
    kernel::require_sock_addr_hooks()?;
    let mounts = mountinfo::current().context("reading /proc/self/mountinfo")?;
    let cg2 = mountinfo::cgroup2(&mounts).ok_or(system::SystemError::NoCgroup2)?;
    let cgroup_root = opts.cgroup_root.clone().unwrap_or_else(|| policy.agent.cgroup_root.clone());
    let tracker = CgroupTracker::new(cg2, &cgroup_root)?;

    let root_level_id = tracker.root_level_id().context("reading the cgroup root's id")?;
    let pins = Pins::open(std::path::Path::new(mounts::BPFFS), &cgroup_root)
        .with_context(|| format!("creating the pin directory under {}", mounts::BPFFS))?;
    if pins.adopted {
        tracing::info!(pins = %pins.dir.display(), "taking over pinned maps and links from an earlier agent");
    }
    let mut hooks = Hooks::load(policy.agent.ring_buffer_bytes, root_level_id, pins)?;
    let mut maps = hooks.take_maps()?;
    // The whole policy in one switch: rules, cgroups identified by path,
    // file roots and device nodes. An earlier agent's pinned programs may be
    // deciding from these maps right now, so nothing may go missing.
    let tag = policy::digest_tag(&policy.source_sha256);
    // Some when the earlier agent's set (about to become the other one) was
    // filled from this very file: its ids then name the same workloads.
    let carried = carried_identities(&maps, tag);
    let previous_same = carried.is_some();
    let carried = carried.unwrap_or_default();
    let initial = initial_contents(&tracker, &compiled, &carried);
    maps.install(&initial.contents(&compiled, tag))?;
    let event_ring = hooks.take_ring(warden_common::map_names::EVENTS)?;
    let cgroup_ring = hooks.take_ring(warden_common::map_names::CGROUP_EVENTS)?;

    // Tracepoints first, then the scan: a cgroup made in between is seen twice
    // (harmless), never zero times.
    hooks.attach_tracepoints()?;
    let node = opts
        .node_name
        .clone()
        .or_else(|| policy.agent.node_name.clone())
        .or_else(|| std::env::var("NODE_NAME").ok())
        .unwrap_or_else(|| nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default());
    let node_name = node.clone();
    let shared = Arc::new(Shared::new(state::Init {
        node: node.clone(),
        config: opts.config.clone(),
        policy,
        compiled,
        maps,
        tracker,
        carried,
        previous_same,
    }));
    shared.reconcile_cgroups();
    // Identities are in the map: now enforcement can start.
    let root_abs = shared.cgroup_root_abs();
    hooks.attach_network(&root_abs)?;

    let (pipeline, enricher) = start_sinks(&shared, &opts, node)?;
    let metrics_listener = bind_metrics(&shared, &opts).await?;
    let events_target = pipeline.fanout.jsonl_target.clone();
    let file_events = if compiled_has_files {
        let (roots, backend) = shared.with_compiled(|c| (c.files.clone(), c.file_backend));
        let try_lsm = || -> Result<crate::files::BackendChoice, String> {
            if !securityfs_ok {
                return Err("securityfs is not mounted (cannot read the active LSM list)".into());
            }
            let active = crate::files::require_bpf_lsm()?;
            hooks.attach_lsm()?;
            Ok(crate::files::BackendChoice {
                backend: "lsm".into(),
                reason: format!("BPF-LSM active (lsm={}) and the file hooks loaded", active.join(",")),
                enforces: files::LSM_ENFORCES.iter().map(|s| s.to_string()).collect(),
                not_enforced: vec![],
            })
        };
        files::start(&shared, &roots, backend, file_enforce, try_lsm)?
    } else {
        None
    };
    if shared.with_compiled(|c| c.has_device_segments()) {
        devices::start(&shared, &mut hooks, file_enforce)?;
    }
    // After every backend attached, so status lists all programs.
    shared.set_programs(&hooks);
    tracing::info!(
        cgroup_root = %root_abs.display(),
        socket = %socket_path.display(),
        events = %events_target,
        "warden enforcing"
    );

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(identity::run(cgroup_ring, shared.clone()));
    if let Some((rx, backend, priority)) = file_events {
        let e = enricher.sibling();
        tasks.spawn(events::run_files(rx, shared.clone(), pipeline.clone(), e, backend, priority));
    }
    tasks.spawn(events::run(event_ring, shared.clone(), pipeline, enricher));
    tasks.spawn(identity::reconcile_loop(shared.clone(), Duration::from_secs(30)));
    tasks.spawn(devices::assignment_loop(shared.clone()));
    metadata::start_kubernetes(&shared, &node_name, &mut tasks);
    tasks.spawn(metadata::slurm_loop(shared.clone()));
    if let Some(listener) = metrics_listener {
        let source: Arc<dyn crate::metrics::Source> = shared.clone();
        tasks.spawn(async move {
            crate::metrics::serve(listener, source).await;
            Ok(())
        });
    }
    let handler: Arc<dyn control::server::Handler> = shared.clone();
    tasks.spawn(async move {
        control::server::serve(listener, handler).await;
        Ok(())
    });

    tasks.spawn(reload::on_sighup(shared.clone()));
    tasks.spawn(reload::watch(shared.clone()));

    shared.set_ready();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, detaching"),
        _ = term.recv() => tracing::info!("terminated, detaching"),
        Some(res) = tasks.join_next() => {
            // A pipeline task ending is a bug or a fatal I/O error: stop loudly.
            res.context("pipeline task panicked")?.context("pipeline task failed")?;
        }
    }
    drop(hooks);
    Ok(())
}

/// Opens the JSON lines sink (the `--events` flag overrides the policy)
/// and the exporters; returns the pipeline and the kernel task's enricher.
fn start_sinks(
    shared: &Arc<Shared>,
    opts: &AgentOptions,
    node: String,
) -> anyhow::Result<(events::Pipeline, Enricher)> {
    let cfg = shared.events_config();
    let target = opts.events.clone().unwrap_or_else(|| cfg.jsonl.clone());
    let jsonl = match target.as_str() {
        "off" => None,
        t => Some(JsonlSink::open(t, cfg.rotate).with_context(|| format!("opening event sink {t}"))?),
    };
    let mut forwards: Vec<Arc<dyn crate::sinks::Forward>> = Vec::new();
    let mut otlp_status: Option<Arc<dyn Fn() -> crate::control::status::OtlpStatus + Send + Sync>> = None;
    if let Some(o) = &cfg.otlp {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        // Starts even with the collector down: it connects lazily and retries.
        let sink = Arc::new(
            crate::sinks::otlp::OtlpSink::start(o, &node, &host)
                .with_context(|| format!("starting the OTLP exporter to {}", o.endpoint))?,
        );
        forwards.push(sink.clone());
        otlp_status = Some(Arc::new(move || sink.status()));
    }
    let enricher = Enricher::new(node.into());
    let fanout = Arc::new(Fanout::new(jsonl, target, forwards));
    shared.set_pipeline(state::PipelineHandle {
        fanout: fanout.clone(),
        seq: enricher.seq_handle(),
        otlp: otlp_status,
    });
    let summary_ms = (cfg.allowed == policy::AllowedEvents::Summary).then_some(cfg.summary_interval_ms);
    Ok((events::Pipeline { fanout, summary_ms }, enricher))
}

/// What the first policy set holds, resolved before any program runs on it.
struct Initial {
    cgroups: Vec<(u64, u32)>,
    file_roots: Vec<(warden_common::InodeKey, u32)>,
    device_nodes: Vec<(warden_common::DeviceKey, warden_common::DeviceSegment)>,
}

impl Initial {
    fn contents<'a>(
        &'a self,
        policy: &'a Arc<policy::CompiledPolicy>,
        tag: [u8; 32],
    ) -> crate::hooks::maps::SetContents<'a> {
        crate::hooks::maps::SetContents {
            policy,
            cgroups: &self.cgroups,
            file_roots: &self.file_roots,
            device_nodes: &self.device_nodes,
            tag,
        }
    }
}

/// The cgroup identities an earlier agent left pinned, if it ran the same
/// policy file (`tag`); `None` otherwise: with another file the ids may
/// name other workloads.
fn carried_identities(maps: &crate::hooks::maps::PolicyMaps, tag: [u8; 32]) -> Option<HashMap<u64, u32>> {
    match maps.pinned_identities() {
        Some((pinned, cgroups)) if pinned == tag && tag != [0; 32] => Some(cgroups.into_iter().collect()),
        Some((_, cgroups)) if !cgroups.is_empty() => {
            tracing::info!(
                cgroups = cgroups.len(),
                "the pinned identities are of another policy file: metadata-selected workloads wait for their metadata"
            );
            None
        }
        _ => None,
    }
}

/// Cgroups identified by their path, or as the earlier agent pinned them
/// until their metadata is known; file roots and device nodes of `compiled`.
fn initial_contents(
    tracker: &CgroupTracker,
    compiled: &policy::CompiledPolicy,
    carried: &HashMap<u64, u32>,
) -> Initial {
    let meta = crate::identity::meta::MetaStore::default();
    let cgroups = tracker
        .scan()
        .into_iter()
        .filter_map(|(id, rel)| {
            identify::workload_of(compiled, carried, &meta, id, &rel, &tracker.origin_of(&rel)).map(|w| (id, w))
        })
        .collect();
    let file_roots = crate::files::roots::Roots::resolve(&compiled.files).kernel_entries();
    let table = crate::devices::resolve(&compiled.devices, &compiled.devices_config.proc_root);
    Initial { cgroups, file_roots, device_nodes: table.entries() }
}

/// Binds the Prometheus endpoint (`--metrics-address` overrides the
/// policy). A configured address that cannot be bound stops the start:
/// the probes of a DaemonSet depend on it.
async fn bind_metrics(shared: &Shared, opts: &AgentOptions) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let addr = match opts.metrics_address.as_deref() {
        Some("off") => None,
        Some(a) => Some(
            a.parse::<std::net::SocketAddr>()
                .with_context(|| format!("--metrics-address {a}: expected IP:port or off"))?,
        ),
        None => shared.metrics_config().address,
    };
    let Some(addr) = addr else { return Ok(None) };
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint {addr}"))?;
    shared.set_metrics_address(listener.local_addr()?.to_string());
    Ok(Some(listener))
}
