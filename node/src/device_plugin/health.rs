//! Device health from the agent directory: `Healthy` while it holds agents, resolved again
//! at every check ([`crate::agents`]): with `--host-path <root>/current`, the devices turn
//! healthy when the first version is installed and stay so through every switch.

use super::state::{Counters, DeviceState, Health};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinError;

/// Checks the agent directory once.
pub fn check(path: &Path) -> Health {
    diagnose(path).0
}

/// Checks the agent directory once, with the reason when it holds no agents.
fn diagnose(path: &Path) -> (Health, Option<String>) {
    match crate::agents::installed(path) {
        Ok(_) => (Health::Healthy, None),
        Err(why) => (Health::Unhealthy, Some(why.to_string())),
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
        let checked = tokio::task::spawn_blocking(move || diagnose(&path_for_check)).await;
        let (checked, why) = match checked {
            Ok((health, why)) => (Ok(health), why),
            Err(e) => (Err(e), None),
        };
        let health = health_of(checked, &path, &counters);
        let changed = state.send_if_modified(|current| {
            let changed = current.health != health;
            current.health = health;
            changed
        });
        if changed {
            tracing::info!(path = %path.display(), health = health.as_str(), why = why.unwrap_or_default(), "device health changed");
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
        // The installer's layout: healthy through its link only; a link elsewhere is refused.
        let current = root.path().join("current");
        std::os::unix::fs::symlink(&dir, &current).unwrap();
        let (health, why) = diagnose(&current);
        assert_eq!(health, Health::Unhealthy, "an absolute link");
        assert!(why.unwrap().contains("only link followed"));
        std::fs::remove_file(&current).unwrap();
        std::fs::create_dir_all(root.path().join("versions/v1/java")).unwrap();
        std::os::unix::fs::symlink("versions/v1", &current).unwrap();
        assert_eq!(check(&current), Health::Healthy, "the installer's link");
    }
}
