//! Device health from the agent directory: `Healthy` while it is a non-empty directory.

use super::state::{Counters, DeviceState, Health};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinError;

/// Checks the agent directory once.
pub fn check(path: &Path) -> Health {
    if crate::agents::present(path) {
        Health::Healthy
    } else {
        Health::Unhealthy
    }
}

/// Re-checks every `interval` and publishes changes, which `ListAndWatch` streams forward.
pub async fn watch(
    path: PathBuf,
    interval: Duration,
    state: watch::Sender<DeviceState>,
    counters: Arc<Counters>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let path_for_check = path.clone();
        // Off the async thread: a hung file system must not stall the gRPC handlers.
        let checked = tokio::task::spawn_blocking(move || check(&path_for_check)).await;
        let health = health_of(checked, &path, &counters);
        let changed = state.send_if_modified(|current| {
            let changed = current.health != health;
            current.health = health;
            changed
        });
        if changed {
            tracing::info!(path = %path.display(), health = health.as_str(), "device health changed");
        }
    }
}

/// The health a check task returned; a task that failed (it panicked, or the runtime is
/// stopping) is logged, counted, and reads `Unhealthy`: nothing proves the agents are there.
fn health_of(checked: Result<Health, JoinError>, path: &Path, counters: &Counters) -> Health {
    checked.unwrap_or_else(|e| {
        tracing::error!(path = %path.display(), error = %e, "the health check failed; reporting Unhealthy");
        counters
            .health_check_failures
            .fetch_add(1, Ordering::Relaxed);
        Health::Unhealthy
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_check_is_counted_and_unhealthy() {
        let counters = Counters::default();
        let path = Path::new("/var/odigos");
        let failed = tokio::task::spawn_blocking(|| -> Health { panic!("check failed") }).await;
        assert_eq!(health_of(failed, path, &counters), Health::Unhealthy);
        assert_eq!(counters.health_check_failures.load(Ordering::Relaxed), 1);
        let healthy = tokio::task::spawn_blocking(|| Health::Healthy).await;
        assert_eq!(health_of(healthy, path, &counters), Health::Healthy);
        assert_eq!(counters.health_check_failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn healthy_only_when_a_non_empty_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("agents");
        assert_eq!(check(&dir), Health::Unhealthy, "missing");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(check(&dir), Health::Unhealthy, "empty");
        std::fs::create_dir(dir.join("java")).unwrap();
        assert_eq!(check(&dir), Health::Healthy);
        let file = root.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(check(&file), Health::Unhealthy, "a file");
    }
}
