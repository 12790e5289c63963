//! What the node benches measure with: percentiles of sorted timings, a process's memory
//! from `/proc/<pid>/status`, the units the tables print, and the bench's main loop.
#![allow(dead_code)] // each bench uses its own subset

use report::{measured_by, publish};
use std::time::Duration;

#[path = "../../../common/bench/report.rs"]
mod report;

/// Runs a bench's measurements on one thread (as the plugins run), then prints its
/// table and writes it into its section of BENCHMARKS.md.
pub fn run_bench(section: &str, command: &str, note: &str, measure: impl AsyncFnOnce(&mut String)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut out = measured_by(command, note);
    runtime.block_on(measure(&mut out));
    publish(section, &out);
}

/// The `p` quantile (0.0–1.0) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Whole microseconds.
pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Microseconds below a millisecond, milliseconds with one decimal above.
pub fn short(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        us(d)
    } else {
        ms(d)
    }
}

/// MiB with one decimal, from KiB.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A `/proc/<pid>/status` field in KiB, e.g. `VmRSS` or `VmHWM`.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
