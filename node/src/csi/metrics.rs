//! The CSI plugin's counters (DESIGN §3b "Metrics") and their Prometheus text.

use crate::metrics;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a publish or unpublish ended, one counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Mounted (publish) or unmounted (unpublish).
    Done,
    /// Nothing to do: already mounted, or not mounted (a repeated call).
    Unchanged,
    /// Refused before touching the node, or the node's state is wrong (INVALID_ARGUMENT, FAILED_PRECONDITION).
    Refused,
    /// A system call failed (INTERNAL).
    Failed,
}

impl Outcome {
    /// Every outcome, in label order.
    const ALL: [Outcome; 4] = [
        Outcome::Done,
        Outcome::Unchanged,
        Outcome::Refused,
        Outcome::Failed,
    ];

    /// The outcome for a failed call's gRPC code.
    pub fn of_code(code: tonic::Code) -> Outcome {
        if code == tonic::Code::Internal {
            Outcome::Failed
        } else {
            Outcome::Refused
        }
    }

    /// The `outcome` label value.
    fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// One counter per [`Outcome`].
#[derive(Debug, Default)]
pub struct Outcomes([AtomicU64; 4]);

impl Outcomes {
    /// Counts one call that ended with `outcome`.
    pub fn add(&self, outcome: Outcome) {
        if let Some(counter) = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .and_then(|i| self.0.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current count for `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .and_then(|i| self.0.get(i))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }
}

/// Counters the CSI plugin keeps.
#[derive(Debug, Default)]
pub struct CsiMetrics {
    /// `NodePublishVolume` calls by outcome.
    pub publishes: Outcomes,
    /// `NodeUnpublishVolume` calls by outcome.
    pub unpublishes: Outcomes,
    /// `NotifyRegistrationStatus` with `plugin_registered: true`.
    pub registrations_accepted: AtomicU64,
    /// `NotifyRegistrationStatus` with `plugin_registered: false`.
    pub registrations_refused: AtomicU64,
    /// `Probe` calls whose check of the agent directory failed to run (answered not ready).
    pub probe_failures: AtomicU64,
}

impl CsiMetrics {
    /// The Prometheus text of the counters and of `published`, the volumes mounted now.
    pub fn render(&self, published: Option<usize>) -> String {
        let mut text = String::new();
        for (name, help, outcomes) in [
            (
                "agent_mount_csi_publishes_total",
                "NodePublishVolume calls, by outcome.",
                &self.publishes,
            ),
            (
                "agent_mount_csi_unpublishes_total",
                "NodeUnpublishVolume calls, by outcome.",
                &self.unpublishes,
            ),
        ] {
            metrics::header(&mut text, name, "counter", help);
            for outcome in Outcome::ALL {
                let labels = format!("outcome=\"{}\"", outcome.label());
                metrics::sample(&mut text, name, &labels, outcomes.get(outcome));
            }
        }
        let name = "agent_mount_csi_registrations_total";
        metrics::header(
            &mut text,
            name,
            "counter",
            "Registrations the kubelet reported, by result.",
        );
        for (labels, counter) in [
            ("result=\"accepted\"", &self.registrations_accepted),
            ("result=\"refused\"", &self.registrations_refused),
        ] {
            metrics::sample(&mut text, name, labels, counter.load(Ordering::Relaxed));
        }
        let name = "agent_mount_csi_probe_failures_total";
        metrics::header(
            &mut text,
            name,
            "counter",
            "Probe calls whose check of the agent directory failed to run.",
        );
        metrics::sample(
            &mut text,
            name,
            "",
            self.probe_failures.load(Ordering::Relaxed),
        );
        // Read from the mount table at scrape time, so it survives restarts; absent when unreadable.
        if let Some(published) = published {
            let name = "agent_mount_csi_volumes_published";
            metrics::header(
                &mut text,
                name,
                "gauge",
                "Volumes mounted now: the agent directory bound under the kubelet's pod directory.",
            );
            metrics::sample(&mut text, name, "", published as u64);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_outcome_and_the_gauge() {
        let metrics = CsiMetrics::default();
        metrics.publishes.add(Outcome::Done);
        metrics.publishes.add(Outcome::Done);
        metrics
            .unpublishes
            .add(Outcome::of_code(tonic::Code::InvalidArgument));
        metrics
            .registrations_refused
            .fetch_add(1, Ordering::Relaxed);
        let text = metrics.render(Some(3));
        for line in [
            "agent_mount_csi_publishes_total{outcome=\"done\"} 2",
            "agent_mount_csi_publishes_total{outcome=\"failed\"} 0",
            "agent_mount_csi_unpublishes_total{outcome=\"refused\"} 1",
            "agent_mount_csi_registrations_total{result=\"accepted\"} 0",
            "agent_mount_csi_registrations_total{result=\"refused\"} 1",
            "agent_mount_csi_probe_failures_total 0",
            "agent_mount_csi_volumes_published 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!metrics.render(None).contains("volumes_published"));
    }
}
