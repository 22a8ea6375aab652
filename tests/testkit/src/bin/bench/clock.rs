//! Clocks and times: the monotonic clock the kiosk and its monitor share, the
//! events' time of day, and the report's date.

use std::time::SystemTime;

/// `HH:MM:SS.mmm` of an RFC 3339 time, in ms since midnight.
pub fn time_of_day_ms(s: &str) -> Option<f64> {
    let t = s.split('T').nth(1)?;
    let h: f64 = t.get(0..2)?.parse().ok()?;
    let m: f64 = t.get(3..5)?.parse().ok()?;
    let end = t[6..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(t.len(), |i| i + 6);
    let sec: f64 = t.get(6..end)?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + sec) * 1000.0)
}

/// CLOCK_MONOTONIC in ns: one clock for this process and the monitor.
pub fn mono_ns() -> u64 {
    // SAFETY: timespec is plain old data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn ms_between(a: u64, b: u64) -> f64 {
    (b as f64 - a as f64) / 1e6
}

/// The report's date: `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    // humantime writes `YYYY-MM-DDTHH:MM:SSZ`; the report wants minutes.
    let t = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    format!("{} {} UTC", &t[..10], &t[11..16])
}
