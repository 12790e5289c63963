//! Device health from the agent directory: `Healthy` while it is a non-empty directory.

use super::state::{DeviceState, Health};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// Checks the agent directory once.
pub fn check(path: &Path) -> Health {
    if crate::agents::present(path) {
        Health::Healthy
    } else {
        Health::Unhealthy
    }
}

/// Re-checks every `interval` and publishes changes, which `ListAndWatch` streams forward.
pub async fn watch(path: PathBuf, interval: Duration, state: watch::Sender<DeviceState>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let path_for_check = path.clone();
        let health = tokio::task::spawn_blocking(move || check(&path_for_check))
            .await
            .unwrap_or(Health::Unhealthy);
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

#[cfg(test)]
mod tests {
    use super::*;

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
