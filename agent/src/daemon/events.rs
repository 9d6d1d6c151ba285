//! Event tasks: kernel decision records and file-backend decisions →
//! enrichment → sinks. Both share one writer so `seq` is one per node.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::sync::mpsc;

use super::state::Shared;
use crate::{enrich::Enricher, ringbuf::decode::Record, ringbuf::reader, sinks::JsonlSink};

pub struct Writer {
    pub enricher: Enricher,
    pub sink: JsonlSink,
}

pub type SharedWriter = Arc<Mutex<Writer>>;

fn lock(w: &SharedWriter) -> std::sync::MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn run(ring: RingBuf<MapData>, shared: Arc<Shared>, writer: SharedWriter) -> anyhow::Result<()> {
    reader::drain(ring, Duration::from_millis(10), |batch, bad| {
        shared.note_decode_errors(bad);
        let mut w = lock(&writer);
        let w = &mut *w;
        // Enrich under the identity lock, taken per record so identity
        // updates, status and fanotify decisions never wait for a whole
        // batch; write outside it, so a slow sink holds up nothing.
        let devices = shared.device_table();
        let events: Vec<_> = batch
            .iter()
            .filter_map(|rec| {
                shared.with_identity(|tracker, policy| match rec {
                    Record::Net(ev) => Some(w.enricher.network(ev, tracker, policy)),
                    Record::File(ev) => Some(w.enricher.kernel_file(ev, tracker, policy)),
                    Record::Device(ev) => Some(w.enricher.device(ev, &devices, tracker, policy)),
                    _ => None,
                })
            })
            .collect();
        for ev in &events {
            w.sink.write(ev);
        }
        w.sink.flush();
        shared.note_sink(w.sink.written, w.sink.errors, w.enricher.seq());
    })
    .await?;
    Ok(())
}

/// Writes decisions of a userspace file backend (fanotify) on a thread of
/// its own at the lowest priority: on a busy node the opener and the
/// decision thread always run first (measured on 2 cores: event work on a
/// default-priority tokio worker added +70 µs to the p99 of protected
/// opens). The bounded channel keeps memory flat if this thread lags;
/// overflow is counted as dropped.
pub async fn run_files(
    rx: mpsc::Receiver<crate::files::FileDecision>,
    shared: Arc<Shared>,
    writer: SharedWriter,
    backend: &'static str,
) -> anyhow::Result<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("warden-file-events".into()).spawn(move || {
        lower_priority();
        write_files(rx, &shared, &writer, backend);
        let _ = done_tx.send(());
    })?;
    // Resolves when the thread ends (channel closed) or panics (sender dropped).
    let _ = done_rx.await;
    Ok(())
}

fn lower_priority() {
    // SAFETY: setpriority on the calling thread (who = 0 is per-thread on Linux).
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
        tracing::debug!("could not lower the file event thread's priority");
    }
}

fn write_files(
    mut rx: mpsc::Receiver<crate::files::FileDecision>,
    shared: &Shared,
    writer: &SharedWriter,
    backend: &'static str,
) {
    let mut batch = Vec::with_capacity(256);
    loop {
        // Drain on a tick instead of waiting on each send: a waiting receiver
        // is woken by every send, a wake-up per open for the decision thread.
        std::thread::sleep(Duration::from_millis(10));
        loop {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut w = lock(writer);
        let w = &mut *w;
        // /proc reads first, with no shared lock held: the decision thread
        // needs that lock for every open.
        let procs: Vec<_> = batch.iter().map(|d| w.enricher.file_proc(d)).collect();
        // The identity lock is taken per event, never across a batch: the
        // decision thread takes it for every open (a batch-long hold showed
        // up as +50 µs on the p99 of protected opens).
        let events: Vec<_> = batch
            .drain(..)
            .zip(procs)
            .map(|(d, mut p)| {
                shared.with_identity(|tracker, policy| {
                    // Same form as network events: the cgroup's filesystem path.
                    p.cgroup =
                        p.cgroup.and_then(|c| tracker.abs_of_hierarchy_path(&c)).map(|c| c.display().to_string());
                    w.enricher.file(&d, p, policy, backend)
                })
            })
            .collect();
        for ev in &events {
            w.sink.write(ev);
        }
        w.sink.flush();
        shared.note_sink(w.sink.written, w.sink.errors, w.enricher.seq());
    }
}
