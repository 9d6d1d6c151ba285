//! `warden agent`: wires the pipeline together.
//!
//! policy → compiled maps → kernel hooks → ring buffer → identity enrichment → sinks
//!
//! The daemon is a few parts that own their state (`Parts`: the policy
//! cell, the identity store, health), the enforcement kinds that run the
//! lifecycle in `lifecycle` (registered in `kinds`), and the tasks that
//! feed them. `Agent` owns all of it and answers the control socket and
//! the metrics endpoint; no part holds a reference back to it.
mod cgroup_task;
mod events;
mod guard_task;
mod health;
mod heap;
mod identities;
mod kinds;
mod lifecycle;
mod metadata;
mod policy_cell;
mod reload;
mod status;
mod writer_priority;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use anyhow::Context;

use self::{
    health::Health,
    identities::IdentityStore,
    lifecycle::{Enforcer, StartCx},
    policy_cell::PolicyCell,
};
use crate::{
    control::{self, server::SocketGuard},
    enrich::Enricher,
    hooks::{Hooks, maps::PolicyMaps, pins::Pins},
    identity::CgroupTracker,
    policy,
    settings::{AgentConfig, EventsConfig, MetricsConfig},
    sinks::{Fanout, JsonlSink},
    system::{self, kernel, mountinfo, mounts},
};

/// Command-line overrides of the config file's `agent:` section.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    pub config: PathBuf,
    pub cgroup_root: Option<String>,
    pub socket: Option<PathBuf>,
    pub events: Option<String>,
    pub node_name: Option<String>,
    pub metrics_address: Option<String>,
    pub remove_on_delete: Option<crate::kube::owner::Owner>,
}

/// The parts every kind and task may be handed.
#[derive(Clone)]
pub struct Parts {
    pub cell: Arc<PolicyCell>,
    pub identities: Arc<IdentityStore>,
    pub health: Arc<Health>,
}

/// The running agent: its parts, the started enforcers, the sinks.
pub struct Agent {
    parts: Parts,
    /// The file's `agent:` section as the agent started with it: a reload
    /// never changes these, it only says which changed (`pending_restart`).
    settings: Arc<AgentConfig>,
    node: String,
    started_at: String,
    /// One per kind in `kinds::KINDS` order; `None`: not started (the first
    /// policy had no segments of that kind).
    enforcers: Vec<Option<Arc<dyn Enforcer>>>,
    /// Serializes reloads and rechecks (signal, command, file watch and the
    /// 500 ms rechecks may race).
    reload_lock: Mutex<()>,
    pipeline: OnceLock<events::SinkHandle>,
}

pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    system::require_root()?;
    heap::fix_thresholds();
    // Refuse bad policy before touching the kernel.
    let policy::Config { agent: settings, policy, warnings } =
        policy::load_file(&opts.config).map_err(|e| anyhow::anyhow!("invalid policy, not starting:\n{e}"))?;
    for w in &warnings {
        tracing::warn!("policy: {w}");
    }
    let settings = Arc::new(settings);
    let compiled = Arc::new(policy.compile());
    // Bind first: a second agent must fail before it touches the kernel.
    let socket_path = opts.socket.clone().unwrap_or_else(|| settings.socket.clone());
    let listener =
        control::server::bind(&socket_path).with_context(|| format!("control socket {}", socket_path.display()))?;
    let _socket_guard = SocketGuard(socket_path.clone());

    let (mut hooks, tracker, securityfs) = open_kernel(&settings, &opts)?;
    let (parts, set) = first_set(&opts, &settings, &policy, &compiled, &mut hooks, tracker)?;
    let event_ring = hooks.take_ring(warden_common::map_names::EVENTS)?;
    let cgroup_ring = hooks.take_ring(warden_common::map_names::CGROUP_EVENTS)?;
    // Tracepoints first, then the scan: a cgroup made in between is seen twice
    // (harmless), never zero times.
    hooks.attach_tracepoints()?;
    parts.identities.reconcile(&mut parts.cell.lock());

    let node = node_name(&opts, &settings);
    // The sequence continues where the last agent of this instance stopped.
    let numbering =
        crate::enrich::Numbering { seq: Arc::new(hooks.event_seq()?), agent_id: crate::enrich::seq::agent_id().into() };
    let (pipeline, enricher, sinks) = start_sinks(&settings.events, &opts, &node, numbering)?;
    let metrics_listener = bind_metrics(&parts.health, &settings.metrics, &opts).await?;
    let events_target = pipeline.fanout.jsonl_target.clone();
    // Identities are in the map: now enforcement can start, kind by kind.
    let mut cx = StartCx {
        parts: &parts,
        hooks: &mut hooks,
        compiled: &compiled,
        settings: &settings,
        set: &set,
        enforce: policy.mode == policy::Mode::Enforce,
        securityfs,
        pipeline: &pipeline,
        enricher: &enricher,
        tasks: Vec::new(),
    };
    let mut enforcers = Vec::new();
    for kind in &kinds::KINDS {
        enforcers.push((kind.start)(&mut cx).with_context(|| format!("starting {} enforcement", kind.name))?);
    }
    let kind_tasks = std::mem::take(&mut cx.tasks);
    // After every backend attached, so status lists all programs.
    parts.health.set_programs(&hooks);
    // From here on every link and pin is watched (and held: deleting a pin
    // no longer detaches anything while this agent lives).
    let report =
        guard_task::Report { fanout: pipeline.fanout.clone(), numbering: enricher.numbering(), node: node.clone() };
    let guard = match hooks.guard().and_then(|g| guard_task::start(g, parts.health.clone(), report)) {
        Ok(running) => Some(running),
        Err(e) => {
            tracing::error!(error = %e, "cannot verify enforcement: not ready");
            parts.health.note_guard_failed(format!("the guard could not start: {e}"));
            None
        }
    };
    let agent = Arc::new(Agent {
        parts: parts.clone(),
        settings: settings.clone(),
        node: node.clone(),
        started_at: crate::clock::now_rfc3339(),
        enforcers,
        reload_lock: Mutex::new(()),
        pipeline: OnceLock::from(sinks),
    });
    tracing::info!(
        cgroup_root = %parts.identities.cgroup_root_abs().display(),
        socket = %socket_path.display(),
        events = %events_target,
        "warden enforcing"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for t in kind_tasks {
        tasks.spawn(t);
    }
    tasks.spawn(cgroup_task::run(cgroup_ring, parts.clone()));
    tasks.spawn(events::run(event_ring, agent.clone(), pipeline, enricher));
    spawn_services(&agent, &mut tasks, listener, metrics_listener);
    parts.health.set_ready();
    let result = until_stopped(&mut tasks).await;
    // Asked while still enforcing: the answer may take a few seconds.
    let remove = match (&opts.remove_on_delete, &result) {
        (Some(owner), Ok(())) => uninstalled(owner, &settings).await,
        _ => false,
    };
    if let Some(guard) = guard {
        guard.stop();
    }
    for e in agent.enforcers() {
        e.stop();
    }
    drop(hooks);
    if remove {
        remove_enforcement(&parts.identities.cgroup_root_abs(), &opts, &settings);
    }
    result
}

/// Whether this stop is an uninstall (see `kube::owner`); anything unclear
/// keeps enforcement, and says so.
async fn uninstalled(owner: &crate::kube::owner::Owner, settings: &AgentConfig) -> bool {
    match crate::kube::owner::deleted(owner, &settings.kubernetes).await {
        Ok(true) => {
            tracing::warn!(daemonset = %owner, "the DaemonSet was deleted: removing enforcement from this node");
            true
        }
        Ok(false) => {
            tracing::info!(daemonset = %owner, "the DaemonSet is still there: enforcement stays for the next agent");
            false
        }
        Err(e) => {
            tracing::error!(
                daemonset = %owner,
                error = %e,
                "cannot tell an uninstall from a restart: enforcement stays; to remove it, run `warden uninstall --all` \
                 on the node (README: Uninstalling)"
            );
            false
        }
    }
}

/// What `warden uninstall` does for this instance, once this agent let go
/// of it (its lock went with the hooks).
fn remove_enforcement(root_abs: &std::path::Path, opts: &AgentOptions, settings: &AgentConfig) {
    let root = opts.cgroup_root.clone().unwrap_or_else(|| settings.cgroup_root.clone());
    let instance = crate::hooks::pins::instance_name(&root);
    match crate::hooks::pins::uninstall(std::path::Path::new(mounts::BPFFS), Some(&instance), false) {
        Ok(done) => tracing::warn!(
            cgroup_root = %root_abs.display(),
            removed = done.removed.len(),
            "enforcement removed: programs detached, pinned maps deleted"
        ),
        Err(e) => tracing::error!(error = %e, "removing enforcement failed: run `warden uninstall --all` on the node"),
    }
}

/// How long a starting agent waits for the previous agent of its instance
/// to exit (a restart's old process may still be shutting down).
const INSTANCE_LOCK_WAIT: Duration = Duration::from_secs(15);

/// Checks what the kernel must offer, mounts what is missing, finds the
/// cgroup root and loads the object over this instance's pins. Returns
/// the loaded hooks, the cgroup tracker and whether securityfs is mounted.
fn open_kernel(settings: &AgentConfig, opts: &AgentOptions) -> anyhow::Result<(Hooks, CgroupTracker, bool)> {
    kernel::require_btf()?;
    mounts::ensure_all()?;
    let securityfs = mounts::ensure("securityfs", "none", mounts::SECURITYFS).is_ok();
    kernel::raise_memlock();
    kernel::require_sock_addr_hooks()?;
    let mounts = mountinfo::current().context("reading /proc/self/mountinfo")?;
    let cg2 = mountinfo::cgroup2(&mounts).ok_or(system::SystemError::NoCgroup2)?;
    let cgroup_root = opts.cgroup_root.clone().unwrap_or_else(|| settings.cgroup_root.clone());
    let tracker = CgroupTracker::new(cg2, &cgroup_root)?;
    let root_level_id = tracker.root_level_id().context("reading the cgroup root's id")?;
    let mut pins = Pins::open(std::path::Path::new(mounts::BPFFS), &cgroup_root)
        .with_context(|| format!("creating the pin directory under {}", mounts::BPFFS))?;
    // One agent per instance: a second one (whatever its socket) stops here,
    // before it loads anything. An agent still exiting gets a moment.
    pins.lock(INSTANCE_LOCK_WAIT).context("refusing to start")?;
    if pins.adopted {
        tracing::info!(pins = %pins.dir.display(), "taking over pinned maps and links from an earlier agent");
    }
    let hooks = Hooks::load(settings.ring_buffer_bytes, root_level_id, pins)?;
    Ok((hooks, tracker, securityfs))
}

/// Builds the parts and installs the whole first policy set in one switch:
/// rules, cgroups identified by path, file roots and device nodes. An
/// earlier agent's pinned programs may be deciding from these maps right
/// now, so nothing may go missing.
fn first_set(
    opts: &AgentOptions,
    settings: &AgentConfig,
    policy: &policy::Policy,
    compiled: &Arc<policy::CompiledPolicy>,
    hooks: &mut Hooks,
    tracker: CgroupTracker,
) -> anyhow::Result<(Parts, lifecycle::SetParts)> {
    let maps = hooks.take_maps(settings.events.log_unprotected)?;
    let tag = policy::digest_tag(&policy.source_sha256);
    // Some when the earlier agent's set (about to become the other one) was
    // filled from this very file: its ids then name the same workloads.
    let carried = carried_identities(&maps, tag);
    let previous_same = carried.is_some();
    let identities = Arc::new(IdentityStore::new(tracker, carried.unwrap_or_default(), compiled.clone()));
    let cell = Arc::new(PolicyCell::new(opts.config.clone(), policy.clone(), compiled.clone(), maps, previous_same));
    let set = kinds::resolve(compiled, settings);
    let staged = identities.scan(compiled);
    cell.lock().install(policy.clone(), &set.contents(compiled, &staged.entries(), tag))?;
    Ok((Parts { cell, identities, health: Arc::new(Health::default()) }, set))
}

/// `--node-name`, then the policy, then `NODE_NAME`, then the hostname.
fn node_name(opts: &AgentOptions, settings: &AgentConfig) -> String {
    opts.node_name
        .clone()
        .or_else(|| settings.node_name.clone())
        .or_else(|| std::env::var("NODE_NAME").ok())
        .unwrap_or_else(|| nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default())
}

/// The rescans, metadata sources, metrics endpoint, control socket and
/// reload triggers.
fn spawn_services(
    agent: &Arc<Agent>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    control: tokio::net::UnixListener,
    metrics: Option<tokio::net::TcpListener>,
) {
    let parts = &agent.parts;
    tasks.spawn(cgroup_task::reconcile_loop(agent.clone(), Duration::from_secs(30)));
    metadata::start_kubernetes(parts, &agent.settings.kubernetes, &agent.node, tasks);
    tasks.spawn(metadata::slurm_loop(parts.clone(), agent.settings.slurm.clone()));
    if let Some(listener) = metrics {
        let source: Arc<dyn crate::metrics::Source> = agent.clone();
        tasks.spawn(async move {
            crate::metrics::serve(listener, source).await;
            Ok(())
        });
    }
    let handler: Arc<dyn control::server::Handler> = agent.clone();
    tasks.spawn(async move {
        control::server::serve(control, handler).await;
        Ok(())
    });
    tasks.spawn(reload::on_sighup(agent.clone()));
    tasks.spawn(reload::watch(agent.clone()));
}

/// Until SIGINT, SIGTERM or a task ending: a pipeline task ending is a bug
/// or a fatal I/O error, so the agent stops loudly.
async fn until_stopped(tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted, detaching"); Ok(()) }
        _ = term.recv() => { tracing::info!("terminated, detaching"); Ok(()) }
        Some(res) = tasks.join_next() => {
            res.context("pipeline task panicked").and_then(|r| r.context("pipeline task failed"))
        }
    }
}

impl Agent {
    fn enforcers(&self) -> impl Iterator<Item = &Arc<dyn Enforcer>> {
        self.enforcers.iter().flatten()
    }

    /// Device names for events (empty until the devices kind runs).
    fn device_table(&self) -> Arc<crate::devices::DeviceTable> {
        self.enforcers().find_map(|e| e.device_table()).unwrap_or_default()
    }
}

/// Opens the JSON lines sink (the `--events` flag overrides the policy)
/// and the exporters; returns the pipeline, the kernel task's enricher and
/// what status and the control socket see of the sinks.
fn start_sinks(
    cfg: &EventsConfig,
    opts: &AgentOptions,
    node: &str,
    numbering: crate::enrich::Numbering,
) -> anyhow::Result<(events::Pipeline, Enricher, events::SinkHandle)> {
    let target = opts.events.clone().unwrap_or_else(|| cfg.jsonl.clone());
    let jsonl = match target.as_str() {
        "off" => None,
        t => Some(JsonlSink::open(t, cfg.rotate).with_context(|| format!("opening event sink {t}"))?),
    };
    let mut forwards: Vec<Arc<dyn crate::sinks::Forward>> = Vec::new();
    let mut otlp = None;
    if let Some(o) = &cfg.otlp {
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        // Starts even with the collector down: it connects lazily and retries.
        let sink = Arc::new(
            crate::sinks::otlp::OtlpSink::start(o, node, &host)
                .with_context(|| format!("starting the OTLP exporter to {}", o.endpoint))?,
        );
        forwards.push(sink.clone());
        otlp = Some(sink);
    }
    let enricher = Enricher::with_numbering(node.into(), numbering);
    let fanout = Arc::new(Fanout::new(jsonl, target, forwards));
    let handle = events::SinkHandle { fanout: fanout.clone(), numbering: enricher.numbering(), otlp };
    let summary_ms = (cfg.allowed == crate::settings::AllowedEvents::Summary).then_some(cfg.summary_interval_ms);
    Ok((events::Pipeline { fanout, summary_ms }, enricher, handle))
}

/// The cgroup identities an earlier agent left pinned, if it ran the same
/// policy file (`tag`); `None` otherwise: with another file the ids may
/// name other workloads.
fn carried_identities(maps: &PolicyMaps, tag: [u8; 32]) -> Option<HashMap<u64, u32>> {
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

/// Binds the Prometheus endpoint (`--metrics-address` overrides the
/// policy). A configured address that cannot be bound stops the start:
/// the probes of a DaemonSet depend on it.
async fn bind_metrics(
    health: &Health,
    cfg: &MetricsConfig,
    opts: &AgentOptions,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let addr = match opts.metrics_address.as_deref() {
        Some("off") => None,
        Some(a) => Some(
            a.parse::<std::net::SocketAddr>()
                .with_context(|| format!("--metrics-address {a}: expected IP:port or off"))?,
        ),
        None => cfg.address,
    };
    let Some(addr) = addr else { return Ok(None) };
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint {addr}"))?;
    health.set_metrics_address(listener.local_addr()?.to_string());
    Ok(Some(listener))
}
