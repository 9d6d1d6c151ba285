//! Process details the kernel record does not carry (executable path).
//!
//! Read from /proc when the event is enriched; a process that already
//! exited reports no exe. Cached briefly per tgid to keep floods cheap; the
//! short TTL bounds mis-attribution after pid reuse.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::name::Name;

const TTL: Duration = Duration::from_secs(2);
const MAX_ENTRIES: usize = 8192;

#[derive(Default)]
pub struct ExeCache {
    entries: HashMap<u32, (Option<Name>, Instant)>,
}

impl ExeCache {
    pub fn exe(&mut self, tgid: u32) -> Option<Name> {
        let now = Instant::now();
        if let Some((exe, at)) = self.entries.get(&tgid)
            && now.duration_since(*at) < TTL
        {
            return exe.clone();
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (_, at)| now.duration_since(*at) < TTL);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        let exe = std::fs::read_link(format!("/proc/{tgid}/exe")).ok().map(|p| Name::from(p.to_string_lossy()));
        self.entries.insert(tgid, (exe.clone(), now));
        exe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_exe_is_found() {
        let mut c = ExeCache::default();
        let me = std::process::id();
        let exe = c.exe(me).expect("own exe");
        assert_eq!(*exe, *std::env::current_exe().unwrap().to_string_lossy());
        assert_eq!(c.exe(me), Some(exe), "cached");
        assert_eq!(c.exe(u32::MAX - 1), None);
    }
}
