//! What the installer tells: the installed version's manifest (its agents and their
//! versions), and the `agents gc` figures on `/metrics` ([`GcExporter`]).

use super::digest::Digest;
use super::{Collection, InstallError};
use crate::metrics::{Exporter, header, sample};
use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The manifest at the tree's root.
pub const MANIFEST: &str = "manifest.json";

/// The agents a manifest lists: `(directory, version)` in directory order; empty when the
/// tree has no readable manifest (a tree the user built by hand).
pub fn agents(manifest: &[u8]) -> Vec<(String, String)> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(manifest) else {
        return Vec::new();
    };
    let Some(agents) = value.get("agents").and_then(|a| a.as_object()) else {
        return Vec::new();
    };
    let mut listed: Vec<(String, String)> = agents
        .iter()
        .map(|(dir, agent)| {
            let version = agent
                .get("version")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown");
            (dir.clone(), version.to_string())
        })
        .collect();
    listed.sort();
    listed
}

/// The agents of the version `current` points at under `root` (read through `current`,
/// below the root's descriptor).
pub fn installed_agents(root: &Path) -> Vec<(String, String)> {
    let read = || -> std::io::Result<Vec<u8>> {
        let dir = std::fs::File::open(root)?;
        let fd = openat2(
            &dir,
            Path::new(super::layout::CURRENT).join(MANIFEST),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(1 << 20)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    read().map(|bytes| agents(&bytes)).unwrap_or_default()
}

/// The last collection of `agents gc --every`, as metrics.
#[derive(Default)]
pub struct GcExporter {
    state: Mutex<GcState>,
}

#[derive(Default)]
struct GcState {
    last: Option<Collection>,
    agents: Vec<(String, String)>,
    healthy: bool,
    runs_ok: u64,
    runs_failed: u64,
    collected: u64,
    seconds: f64,
}

impl GcExporter {
    /// Records one run: its outcome, the installed agents and how long it took.
    pub fn record(
        &self,
        outcome: &Result<Collection, InstallError>,
        agents: Vec<(String, String)>,
        took: Duration,
    ) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.seconds = took.as_secs_f64();
        state.agents = agents;
        match outcome {
            Ok(collection) => {
                state.runs_ok += 1;
                state.healthy = true;
                state.collected += collection
                    .versions
                    .iter()
                    .filter(|(_, verdict, _)| *verdict == super::gc::Verdict::Collect)
                    .count() as u64;
                state.last = Some(collection.clone());
            }
            Err(_) => {
                state.runs_failed += 1;
                state.healthy = false;
            }
        }
    }
}

impl Exporter for GcExporter {
    fn render(&self) -> String {
        let mut out = String::new();
        let Ok(state) = self.state.lock() else {
            return out;
        };
        let current = state.last.as_ref().and_then(|c| c.current.as_ref());
        if let Some(digest) = current {
            let name = "agent_mount_agents_installed_info";
            header(
                &mut out,
                name,
                "gauge",
                "The installed version (what <root>/current points at) and its manifest's agents.",
            );
            if state.agents.is_empty() {
                sample(
                    &mut out,
                    name,
                    &format!("digest=\"{digest}\",agent=\"\",version=\"\""),
                    1,
                );
            }
            for (agent, version) in &state.agents {
                let labels = format!(
                    "digest=\"{digest}\",agent=\"{}\",version=\"{}\"",
                    escape(agent),
                    escape(version)
                );
                sample(&mut out, name, &labels, 1);
            }
        }
        if let Some(last) = &state.last {
            let name = "agent_mount_agents_version_mounts";
            header(
                &mut out,
                name,
                "gauge",
                "Mounts on the node that show each kept version, and why it is kept (current, in-use, grace).",
            );
            for (digest, verdict, mounts) in last
                .versions
                .iter()
                .filter(|(_, v, _)| *v != super::gc::Verdict::Collect)
            {
                sample(
                    &mut out,
                    name,
                    &kept_labels(digest, verdict.label()),
                    *mounts as u64,
                );
            }
        }
        let name = "agent_mount_agents_collected_total";
        header(&mut out, name, "counter", "Old versions removed.");
        sample(&mut out, name, "", state.collected);
        let name = "agent_mount_agents_gc_runs_total";
        header(&mut out, name, "counter", "Collections, by result.");
        sample(&mut out, name, "result=\"ok\"", state.runs_ok);
        sample(&mut out, name, "result=\"error\"", state.runs_failed);
        let name = "agent_mount_agents_gc_duration_milliseconds";
        header(
            &mut out,
            name,
            "gauge",
            "How long the last collection took.",
        );
        sample(&mut out, name, "", (state.seconds * 1000.0) as u64);
        out
    }

    fn healthy(&self) -> bool {
        self.state.lock().is_ok_and(|state| state.healthy)
    }
}

fn kept_labels(digest: &Digest, why: &str) -> String {
    format!("digest=\"{digest}\",why=\"{why}\"")
}

/// Escapes a label value (Prometheus text format: backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_metrics_show_the_installed_agents_and_each_kept_version() {
        use super::super::gc::Verdict;
        let digest = |c: char| Digest::parse(c.to_string().repeat(64).as_bytes()).unwrap();
        let exporter = GcExporter::default();
        assert!(!exporter.healthy(), "unhealthy before the first collection");
        let collection = Collection {
            versions: vec![
                (digest('a'), Verdict::InUse(3), 3),
                (digest('b'), Verdict::Current, 0),
                (digest('c'), Verdict::Collect, 0),
            ],
            current: Some(digest('b')),
            leftovers: Vec::new(),
        };
        let agents = vec![("java".to_string(), "2.10.0".to_string())];
        exporter.record(&Ok(collection), agents, Duration::from_millis(12));
        let text = exporter.render();
        let b = "b".repeat(64);
        for line in [
            format!(
                "agent_mount_agents_installed_info{{digest=\"{b}\",agent=\"java\",version=\"2.10.0\"}} 1"
            ),
            format!(
                "agent_mount_agents_version_mounts{{digest=\"{}\",why=\"in-use\"}} 3",
                "a".repeat(64)
            ),
            format!("agent_mount_agents_version_mounts{{digest=\"{b}\",why=\"current\"}} 0"),
            "agent_mount_agents_collected_total 1".into(),
            "agent_mount_agents_gc_runs_total{result=\"ok\"} 1".into(),
            "agent_mount_agents_gc_duration_milliseconds 12".into(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains(&"c".repeat(64)),
            "a collected version is not kept"
        );
        assert!(exporter.healthy());
        let failed = Err(InstallError::Io {
            what: "x".into(),
            source: std::io::Error::other("y"),
        });
        exporter.record(&failed, Vec::new(), Duration::ZERO);
        assert!(!exporter.healthy());
        assert!(
            exporter
                .render()
                .contains("agent_mount_agents_gc_runs_total{result=\"error\"} 1")
        );
    }

    #[test]
    fn the_manifest_gives_each_agent_its_version() {
        let manifest =
            br#"{"agents": {"python": {"name": "opentelemetry-distro", "version": "0.48b0"},
            "java": {"name": "opentelemetry-javaagent", "version": "2.10.0"}, "odd": {}}}"#;
        assert_eq!(
            agents(manifest),
            [
                ("java".to_string(), "2.10.0".to_string()),
                ("odd".into(), "unknown".into()),
                ("python".into(), "0.48b0".into()),
            ]
        );
        assert!(agents(b"not json").is_empty());
        assert!(agents(b"{}").is_empty());
    }
}
