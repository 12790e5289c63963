//! Benchmark reporting: timing loops and the BENCHMARKS.md sections they fill.

use std::path::Path;
use std::time::{Duration, Instant};

/// Mean time of `f` over as many runs as fit in `budget` (at least `min_runs`), after a warm-up.
pub fn mean_time(budget: Duration, min_runs: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let started = Instant::now();
    let mut runs = 0u32;
    while runs < min_runs || started.elapsed() < budget {
        f();
        runs += 1;
    }
    started.elapsed() / runs
}

/// A duration in microseconds with one decimal.
pub fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

/// The machine the figures come from: CPU model, cores and memory.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "{model}, {cores} cores, {:.0} GiB",
        memory_kb as f64 / 1024.0 / 1024.0
    )
}

/// The first line of a bench's section: the command that measured it, a note, and the machine.
pub fn measured_by(command: &str, note: &str) -> String {
    format!("Measured by `{command}`{note} on {}.\n\n", machine())
}

/// Prints a bench's section and writes it into BENCHMARKS.md between its markers.
pub fn publish(section: &str, body: &str) {
    print!("{body}");
    let file = crate::build::workspace_root().join("BENCHMARKS.md");
    if let Err(e) = write_section(&file, section, body) {
        eprintln!("not written to BENCHMARKS.md: {e}");
    }
}

/// Replaces the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->` in `file`.
pub fn write_section(file: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let text = std::fs::read_to_string(file)?;
    let (Some(start), Some(stop)) = (text.find(&begin), text.find(&end)) else {
        return Err(std::io::Error::other(format!(
            "{} lacks the {begin} … {end} markers",
            file.display()
        )));
    };
    let updated = format!("{}{begin}\n{body}\n{}", &text[..start], &text[stop..]);
    std::fs::write(file, updated)
}
