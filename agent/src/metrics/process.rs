//! The standard `process_*` metrics, read from /proc/self. Each parser takes
//! the file's text and gives `None` on anything unexpected: a metric is
//! left out rather than made up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
}

/// Fields of /proc/<pid>/stat used here, in clock ticks and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub utime: u64,
    pub stime: u64,
    pub starttime: u64,
}

/// `comm` (field 2) is in parentheses and may hold spaces and `)`: the
/// fields that follow start after the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest[0] is field 3 (state).
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { utime: field(14)?, stime: field(15)?, starttime: field(22)? })
}

/// (size, resident) in pages from /proc/<pid>/statm.
pub fn parse_statm(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_ascii_whitespace().map(|s| s.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

/// Boot time (seconds since the epoch) from /proc/stat.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

pub fn read() -> Process {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|&t| t > 0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().filter(|&p| p > 0);
    let stat = std::fs::read_to_string("/proc/self/stat").ok().and_then(|t| parse_stat(&t));
    let statm = std::fs::read_to_string("/proc/self/statm").ok().and_then(|t| parse_statm(&t));
    let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|t| parse_btime(&t));
    let per_tick = ticks.map(|t| 1.0 / t as f64);
    Process {
        cpu_seconds: stat.zip(per_tick).map(|(s, d)| (s.utime + s.stime) as f64 * d),
        resident_bytes: statm.zip(page).map(|((_, rss), p)| rss.saturating_mul(p as u64)),
        virtual_bytes: statm.zip(page).map(|((size, _), p)| size.saturating_mul(p as u64)),
        start_time_seconds: stat.zip(per_tick).zip(btime).map(|((s, d), b)| b as f64 + s.starttime as f64 * d),
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let t =
            "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 12345 1000 200 18446744073709551615";
        assert_eq!(parse_stat(t), Some(Stat { utime: 250, stime: 75, starttime: 12345 }));
        assert_eq!(parse_stat("42 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn statm_and_btime() {
        assert_eq!(parse_statm("1000 250 30 1 0 300 0\n"), Some((1000, 250)));
        assert_eq!(parse_statm("1000"), None);
        assert_eq!(parse_statm("x 2"), None);
        assert_eq!(parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
        assert_eq!(parse_btime("cpu 1 2 3\n"), None);
    }

    #[test]
    fn reads_own_process() {
        let p = read();
        assert!(p.resident_bytes.unwrap() > 0);
        assert!(p.cpu_seconds.unwrap() >= 0.0);
        assert!(p.start_time_seconds.unwrap() > 1.0e9);
        assert!(p.open_fds.unwrap() >= 3);
    }
}
