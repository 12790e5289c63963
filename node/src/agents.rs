//! The agent directory: the agents count as installed while it is a non-empty directory
//! (device health for the device plugin, `Probe` and publish for the CSI plugin).

use std::path::Path;

/// Whether `path` is a directory with at least one entry.
pub fn present(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
}
