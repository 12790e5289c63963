//! The I/O half of [`crate::keeper`]: what sits at a socket path, and a wake-up whenever a
//! watched directory changes (inotify) or a poll is due, after which a plugin looks again.

use crate::flags::WatchMode;
use crate::keeper::FileId;
use notify::Watcher;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

/// The file at `path` (not following a symlink), or `None` when there is none.
pub fn file_id(path: &Path) -> Option<FileId> {
    std::fs::symlink_metadata(path).ok().map(|m| FileId {
        dev: m.dev(),
        ino: m.ino(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
    })
}

/// Wakes its owner when a watched directory changes or a poll is due.
pub struct DirWatch {
    /// Kept alive for as long as events should arrive; `None` when polling only.
    _watcher: Option<notify::RecommendedWatcher>,
    events: mpsc::Receiver<()>,
    poll: Interval,
}

impl DirWatch {
    /// Watches `dirs` with inotify (unless `mode` is [`WatchMode::Poll`], or inotify is
    /// unavailable), and polls every `interval` in every mode as a safety net.
    pub fn new(dirs: &[&Path], mode: WatchMode, interval: Duration) -> Self {
        // One slot is enough: a pending wake-up already makes the owner look at everything.
        let (wake, events) = mpsc::channel(1);
        let watcher = match mode {
            WatchMode::Poll => None,
            WatchMode::Auto => match watch(dirs, wake) {
                Ok(watcher) => Some(watcher),
                Err(e) => {
                    tracing::warn!(error = %e, "inotify unavailable; noticing socket changes by polling only");
                    None
                }
            },
        };
        let mut poll = tokio::time::interval(interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        DirWatch {
            _watcher: watcher,
            events,
            poll,
        }
    }

    /// Resolves at the next directory event or poll tick (the first tick comes at once).
    pub async fn changed(&mut self) {
        tokio::select! {
            Some(()) = self.events.recv() => {}
            _ = self.poll.tick() => {}
        }
    }
}

/// Sleeps until `at`, or forever without a deadline (a lifecycle with no timer pending).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn watch(dirs: &[&Path], wake: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Opening or reading a file changes no socket; everything else (create, delete,
        // rename, an overflowed queue reported as an error) is worth a look.
        let access = matches!(&event, Ok(e) if e.kind.is_access());
        if !access {
            // A full slot already holds a wake-up.
            let _ = wake.try_send(());
        }
    })?;
    for dir in dirs {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recreated_file_is_another_file_even_with_the_same_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubelet.sock");
        assert_eq!(file_id(&path), None);
        let first = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let id = file_id(&path).unwrap();
        assert_eq!(file_id(&path), Some(id), "stable while unchanged");
        drop(first);
        std::fs::remove_file(&path).unwrap();
        // Wait out the file system's timestamp granularity, as a real restart does (200 ms).
        std::thread::sleep(Duration::from_millis(20));
        let _second = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_ne!(file_id(&path), Some(id));
    }

    #[tokio::test]
    async fn wakes_on_a_directory_event_between_polls() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirWatch::new(&[dir.path()], WatchMode::Auto, Duration::from_secs(3600));
        watch.changed().await; // the first poll tick comes at once
        std::fs::write(dir.path().join("a"), b"").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("an inotify wake-up, long before the next poll");
    }

    #[tokio::test]
    async fn poll_mode_ignores_directory_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirWatch::new(&[dir.path()], WatchMode::Poll, Duration::from_secs(3600));
        watch.changed().await;
        std::fs::write(dir.path().join("a"), b"").unwrap();
        let woken = tokio::time::timeout(Duration::from_millis(300), watch.changed()).await;
        assert!(woken.is_err(), "poll mode must not use inotify");
    }
}
