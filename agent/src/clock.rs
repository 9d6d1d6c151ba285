//! Kernel timestamps (CLOCK_MONOTONIC) to RFC 3339 wall-clock time.
use nix::time::{ClockId, clock_gettime};

fn now_ns(clock: ClockId) -> i128 {
    let ts = clock_gettime(clock).expect("clock_gettime");
    ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128
}

/// Offset between CLOCK_REALTIME and CLOCK_MONOTONIC, taken at creation.
pub struct WallClock {
    offset_ns: i128,
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WallClock {
    pub fn new() -> Self {
        Self { offset_ns: now_ns(ClockId::CLOCK_REALTIME) - now_ns(ClockId::CLOCK_MONOTONIC) }
    }

    pub fn format(&self, ktime_ns: u64) -> String {
        rfc3339(self.unix_ns(ktime_ns) as i128)
    }

    /// A CLOCK_MONOTONIC time as Unix-epoch nanoseconds.
    pub fn unix_ns(&self, ktime_ns: u64) -> u64 {
        (ktime_ns as i128 + self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }
}

/// Formats Unix-epoch nanoseconds as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
/// Wall-clock now, RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_nanos() as i128)
}

pub fn rfc3339(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // Written digit by digit: this runs once per event, and `format!` was
    // the largest single cost of the event pipeline.
    let mut out = [0u8; 30];
    put_digits(&mut out[0..4], y.clamp(0, 9999) as u64);
    put_digits(&mut out[5..7], m as u64);
    put_digits(&mut out[8..10], d as u64);
    put_digits(&mut out[11..13], (sod / 3600) as u64);
    put_digits(&mut out[14..16], (sod % 3600 / 60) as u64);
    put_digits(&mut out[17..19], (sod % 60) as u64);
    put_digits(&mut out[20..29], nanos as u64);
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (29, b'Z')] {
        out[i] = c;
    }
    std::str::from_utf8(&out).unwrap_or_default().to_owned()
}

/// Fills `out` with `v`'s last `out.len()` decimal digits, zero-padded.
fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Howard Hinnant's days → (year, month, day) for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 (leap day) 12:34:56.789
        assert_eq!(rfc3339(951_827_696_789_000_000), "2000-02-29T12:34:56.789000000Z");
        assert_eq!(rfc3339(1_795_305_600_000_000_001), "2026-11-22T00:00:00.000000001Z");
    }

    #[test]
    fn wall_clock_is_near_now() {
        let c = WallClock::new();
        let before = now_ns(ClockId::CLOCK_REALTIME) - 5_000_000;
        let formatted = c.format(now_ns(ClockId::CLOCK_MONOTONIC) as u64);
        let after = now_ns(ClockId::CLOCK_REALTIME) + 5_000_000;
        // Same fixed-width format, so string order is time order.
        assert!(rfc3339(before) <= formatted && formatted <= rfc3339(after), "{formatted}");
    }
}
