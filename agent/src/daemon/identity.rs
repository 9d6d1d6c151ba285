//! Identity task: cgroup lifecycle records → workload ids in the kernel map.
use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use warden_common::{CGROUP_PATH_MAX, STAT_CGROUP_EVENTS_DROPPED};

use super::state::Shared;
use crate::{
    identity::cgroups::DEFAULT_HIERARCHY, identity::delay::monotonic_ns, ringbuf::decode::Record, ringbuf::reader,
};

pub async fn run(ring: RingBuf<MapData>, shared: Arc<Shared>) -> anyhow::Result<()> {
    // Cgroup records wake the agent immediately (identity delay matters);
    // the tick is only a safety net.
    reader::drain(ring, Duration::from_millis(100), |batch, bad| {
        shared.note_decode_errors(bad);
        if batch.is_empty() {
            return;
        }
        let mut removed = false;
        for rec in batch.drain(..) {
            match rec {
                Record::CgroupMkdir { cgroup_id, hierarchy, ktime_ns, path } if hierarchy == DEFAULT_HIERARCHY => {
                    // A path that filled the record may be truncated: look it up by id.
                    let truncated = path.len() >= CGROUP_PATH_MAX - 1;
                    if shared.add_cgroup(cgroup_id, &path, truncated) {
                        let delay_us = monotonic_ns().saturating_sub(ktime_ns) / 1000;
                        shared.record_delay(delay_us);
                    }
                }
                Record::CgroupRmdir { cgroup_id, hierarchy, .. } if hierarchy == DEFAULT_HIERARCHY => {
                    shared.remove_cgroup(cgroup_id);
                    removed = true;
                }
                _ => {}
            }
        }
        if removed {
            shared.compact();
        }
    })
    .await?;
    Ok(())
}

/// Rescans the tree when the kernel reports lost cgroup records, and every
/// `period` as a safety net.
pub async fn reconcile_loop(shared: Arc<Shared>, period: Duration) -> anyhow::Result<()> {
    let mut last_dropped = shared.stat(STAT_CGROUP_EVENTS_DROPPED);
    let mut since_full = Duration::ZERO;
    let tick = Duration::from_millis(500);
    loop {
        tokio::time::sleep(tick).await;
        since_full += tick;
        super::files::recheck_missing_roots(&shared);
        let dropped = shared.stat(STAT_CGROUP_EVENTS_DROPPED);
        let full = dropped != last_dropped || since_full >= period;
        super::devices::recheck_nodes(&shared, full);
        if full {
            if dropped != last_dropped {
                tracing::warn!(lost = dropped - last_dropped, "cgroup records lost in the kernel; rescanning");
            }
            last_dropped = dropped;
            since_full = Duration::ZERO;
            shared.reconcile_cgroups();
            shared.compact();
            super::devices::reapply_assignment(&shared);
        }
    }
}
