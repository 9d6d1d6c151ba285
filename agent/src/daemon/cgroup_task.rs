//! cgroup tasks: lifecycle records → workload ids in the kernel map, and
//! the periodic rescan that also drives every kind's recheck.
use std::{sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use warden_common::{CGROUP_PATH_MAX, STAT_CGROUP_EVENTS_DROPPED};

use super::{Agent, Parts};
use crate::{
    identity::cgroups::DEFAULT_HIERARCHY, identity::delay::monotonic_ns, ringbuf::decode::Record, ringbuf::reader,
};

pub async fn run(ring: RingBuf<MapData>, parts: Parts) -> anyhow::Result<()> {
    let Parts { cell, identities, health } = parts;
    // Cgroup records wake the agent immediately (identity delay matters);
    // the tick is only a safety net.
    reader::drain(ring, Duration::from_millis(100), |batch, bad| {
        health.note_decode_errors(bad);
        if batch.is_empty() {
            return;
        }
        let mut removed = false;
        for rec in batch.drain(..) {
            match rec {
                Record::CgroupMkdir { cgroup_id, hierarchy, ktime_ns, path } if hierarchy == DEFAULT_HIERARCHY => {
                    // A path that filled the record may be truncated: look it up by id.
                    let truncated = path.len() >= CGROUP_PATH_MAX - 1;
                    if identities.add_cgroup(&mut cell.lock(), cgroup_id, &path, truncated) {
                        let delay_us = monotonic_ns().saturating_sub(ktime_ns) / 1000;
                        identities.record_delay(delay_us);
                    }
                }
                Record::CgroupRmdir { cgroup_id, hierarchy, .. } if hierarchy == DEFAULT_HIERARCHY => {
                    identities.remove_cgroup(&mut cell.lock(), cgroup_id);
                    removed = true;
                }
                _ => {}
            }
        }
        if removed {
            identities.compact(&mut cell.lock());
        }
    })
    .await?;
    Ok(())
}

/// Rescans the tree when the kernel reports lost cgroup records, and every
/// `period` as a safety net; every 500 ms each kind rechecks what the node
/// may have changed under it (a root mounted, a device node created).
pub async fn reconcile_loop(agent: Arc<Agent>, period: Duration) -> anyhow::Result<()> {
    let Parts { cell, identities, .. } = agent.parts.clone();
    let mut last_dropped = cell.stat(STAT_CGROUP_EVENTS_DROPPED);
    let mut since_full = Duration::ZERO;
    let tick = Duration::from_millis(500);
    loop {
        tokio::time::sleep(tick).await;
        since_full += tick;
        let dropped = cell.stat(STAT_CGROUP_EVENTS_DROPPED);
        let full = dropped != last_dropped || since_full >= period;
        if full {
            if dropped != last_dropped {
                tracing::warn!(lost = dropped - last_dropped, "cgroup records lost in the kernel; rescanning");
            }
            last_dropped = dropped;
            since_full = Duration::ZERO;
            identities.reconcile(&mut cell.lock());
            identities.compact(&mut cell.lock());
        }
        agent.recheck(full);
    }
}
