//! Bench reporting shared by the runner's and the node's benches: the line that says what
//! measured a section, and the sections of BENCHMARKS.md that they fill.
//!
//! Both bench sets include this file (`#[path]`), so neither depends on the other's crate.
//! It is not a module of the `agent-mount-common` library: the policy and the node binary
//! never compile it.

use std::path::Path;

/// The machine the figures come from: CPU model, cores and memory.
fn machine() -> String {
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
    // Every including crate (runner/, node/) sits one directory below the workspace root.
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("BENCHMARKS.md");
    if let Err(e) = write_section(&file, section, body) {
        eprintln!("not written to BENCHMARKS.md: {e}");
    }
}

/// Replaces the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->` in `file`.
fn write_section(file: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let text = std::fs::read_to_string(file)?;
    let (Some(before), Some(after)) = (
        text.find(&begin).and_then(|at| text.get(..at)),
        text.find(&end).and_then(|at| text.get(at..)),
    ) else {
        return Err(std::io::Error::other(format!(
            "{} lacks the {begin} … {end} markers",
            file.display()
        )));
    };
    std::fs::write(file, format!("{before}{begin}\n{body}\n{after}"))
}
