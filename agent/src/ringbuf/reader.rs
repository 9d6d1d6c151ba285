//! Drains a kernel ring buffer from tokio: waits for readiness on the
//! map fd (epoll), then reads every available record.
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use super::decode::{Record, decode};

/// Records a batch holds between bursts.
const BATCH: usize = 1024;

/// Runs forever, calling `on_batch` with each batch of decoded records
/// (batches let sinks flush once per wake-up instead of per record), and
/// with an empty batch on a tick with nothing new.
///
/// The kernel wakes us only once a batch is queued (see `EVENTS_WAKEUP_BYTES`
/// in ebpf/src/record.rs), so we also drain every `tick`: that bounds latency.
pub async fn drain<F>(ring: RingBuf<MapData>, tick: Duration, mut on_batch: F) -> std::io::Result<()>
where
    F: FnMut(&mut Vec<Record>, u64),
{
    // SAFETY: the RingBuf owns its map fd for its whole life and always
    // returns the same fd; the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                // Clear readiness *before* draining: a record submitted while
                // we drain re-arms it, so no wake-up is lost.
                guard?.clear_ready();
            }
            _ = tokio::time::sleep(tick) => {}
        }
        let mut bad = 0u64;
        {
            let ring = fd.get_mut();
            while let Some(item) = ring.next() {
                match decode(&item) {
                    Ok(r) => batch.push(r),
                    Err(e) => {
                        bad += 1;
                        tracing::warn!(error = %e, "undecodable kernel record");
                    }
                }
                if batch.len() >= 4096 {
                    on_batch(&mut batch, bad);
                    batch.clear();
                    bad = 0;
                }
            }
        }
        // Also on an empty tick: consumers flush timed work (summaries).
        let quiet = batch.len() < BATCH;
        on_batch(&mut batch, bad);
        batch.clear();
        // A burst (10,000 cgroups made at once) grew the batch to 4096
        // records of up to ~0.5 KiB: once it has passed, give that back
        // rather than keep it for the agent's lifetime.
        if quiet && batch.capacity() > BATCH {
            batch.shrink_to(BATCH);
        }
    }
}
