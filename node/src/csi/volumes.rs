//! Publish and unpublish (DESIGN §3b "Rules"), after [`super::request`] has checked the
//! arguments: idempotent from the mount table, as the CSI spec asks, and confined to the
//! kubelet's pod directory even when a symlink on the way points elsewhere.

use super::mounts::{Mount, Mounts, mount_of};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tonic::Code;

/// Most mounts one unpublish takes off a target: more means something else keeps mounting there.
const MAX_STACKED: usize = 16;

/// What a successful publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// The agent directory is now mounted at the target.
    Mounted,
    /// It already was (a repeated call): nothing changed.
    AlreadyMounted,
}

/// What a successful unpublish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpublished {
    /// The target was unmounted and removed.
    Unmounted,
    /// Nothing was mounted there (a repeated call, or never published); the empty directory, if any, is gone.
    NotMounted,
}

/// Why a publish or unpublish failed; the message names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The agent directory is missing or empty on this node.
    #[error(
        "the agent directory {} (--agent-dir) is missing or empty on this node: install the agents on the node, or point --agent-dir at them; the kubelet retries",
        path.display()
    )]
    AgentsMissing {
        /// `--agent-dir`.
        path: PathBuf,
    },
    /// The directory holding `target_path` does not exist.
    #[error(
        "the parent of target_path {} does not exist: the kubelet creates it before NodePublishVolume, so check that --kubelet-dir is the kubelet's --root-dir and is mounted into this container",
        path.display()
    )]
    ParentMissing {
        /// `target_path`.
        path: PathBuf,
    },
    /// A symlink leads `target_path` out of the pod directory.
    #[error(
        "target_path {} resolves to {}, outside {}: this plugin mounts only into the kubelet's pod volumes",
        path.display(), resolved.display(), pods.display()
    )]
    ResolvesOutside {
        /// `target_path`.
        path: PathBuf,
        /// Where its parent really is.
        resolved: PathBuf,
        /// `<kubelet-dir>/pods`, resolved.
        pods: PathBuf,
    },
    /// `target_path` exists and is not a directory (or is a symlink).
    #[error("target_path {} exists and is not a directory: remove it, or delete the pod", path.display())]
    NotADirectory {
        /// `target_path`.
        path: PathBuf,
    },
    /// Something other than the agent directory is mounted at `target_path`.
    #[error(
        "target_path {} already has a mount that is not the agent directory read-only: unmount it, or delete the pod",
        path.display()
    )]
    OtherMount {
        /// `target_path`.
        path: PathBuf,
    },
    /// `target_path` is not a mount point and not empty, so this plugin did not make it.
    #[error(
        "target_path {} is not a mount point and not empty: this plugin did not create it and leaves it alone; remove it by hand",
        path.display()
    )]
    NotEmpty {
        /// `target_path`.
        path: PathBuf,
    },
    /// Mounts keep reappearing at `target_path`.
    #[error("target_path {} still has mounts after {MAX_STACKED} unmounts", path.display())]
    StillMounted {
        /// `target_path`.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "bind-mount the agents at".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl VolumeError {
    /// The gRPC code the CSI spec gives this failure.
    pub fn code(&self) -> Code {
        match self {
            VolumeError::AgentsMissing { .. }
            | VolumeError::ParentMissing { .. }
            | VolumeError::NotADirectory { .. }
            | VolumeError::NotEmpty { .. } => Code::FailedPrecondition,
            VolumeError::ResolvesOutside { .. } => Code::InvalidArgument,
            VolumeError::OtherMount { .. } => Code::AlreadyExists,
            VolumeError::StillMounted { .. } | VolumeError::Io { .. } => Code::Internal,
        }
    }
}

impl From<VolumeError> for tonic::Status {
    fn from(error: VolumeError) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}

/// An `Io` error builder for `map_err`.
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io {
        action,
        path,
        source,
    }
}

/// The node's volumes: the agent directory bound into the kubelet's pod directory.
pub struct Volumes<M> {
    mounts: M,
    agent_dir: PathBuf,
    pods_dir: PathBuf,
    /// Serialises publish and unpublish: check-then-mount must not interleave for one target.
    busy: Mutex<()>,
}

impl<M: Mounts> Volumes<M> {
    /// Volumes binding `agent_dir` into `pods_dir` (`<kubelet-dir>/pods`) through `mounts`.
    pub fn new(mounts: M, agent_dir: &Path, pods_dir: &Path) -> Self {
        Volumes {
            mounts,
            agent_dir: agent_dir.to_path_buf(),
            pods_dir: pods_dir.to_path_buf(),
            busy: Mutex::new(()),
        }
    }

    /// The agent directory, the source of every mount.
    pub fn agent_dir(&self) -> &Path {
        &self.agent_dir
    }

    /// `target` with its parent's symlinks resolved (the form the mount table shows), or
    /// `None` when the parent does not exist; refused when it leads out of the pod directory.
    fn resolve(&self, target: &Path) -> Result<Option<PathBuf>, VolumeError> {
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Ok(None); // the request check admits no such path
        };
        let parent = match std::fs::canonicalize(parent) {
            Ok(parent) => parent,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("resolve the parent of", target)(e)),
        };
        let pods = std::fs::canonicalize(&self.pods_dir)
            .map_err(io_error("resolve the pod directory", &self.pods_dir))?;
        if !parent.starts_with(&pods) {
            return Err(VolumeError::ResolvesOutside {
                path: target.to_path_buf(),
                resolved: parent,
                pods,
            });
        }
        Ok(Some(parent.join(name)))
    }

    /// The mount table; `target` names the request in an error.
    fn table(&self, target: &Path) -> Result<Vec<Mount>, VolumeError> {
        self.mounts
            .table()
            .map_err(io_error("read the mount table for", target))
    }

    /// The agent directory's device and directory on it, as the mount table shows them.
    fn agents_source(&self, table: &[Mount]) -> Option<(String, PathBuf)> {
        let agents = std::fs::canonicalize(&self.agent_dir).ok()?;
        mount_of(table, &agents)?.source_of(&agents)
    }

    /// How many mounts are stacked at `target` (a resolved path).
    fn mounts_at(&self, target: &Path) -> Result<usize, VolumeError> {
        let table = self.table(target)?;
        Ok(table.iter().filter(|m| m.point == target).count())
    }

    /// Creates `target` (and only it) and binds the agent directory there read-only.
    pub fn publish(&self, target: &Path) -> Result<Published, VolumeError> {
        let _busy = self
            .busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !crate::agents::present(&self.agent_dir) {
            return Err(VolumeError::AgentsMissing {
                path: self.agent_dir.clone(),
            });
        }
        let resolved = self
            .resolve(target)?
            .ok_or_else(|| VolumeError::ParentMissing {
                path: target.to_path_buf(),
            })?;
        // "Creation of target_path is the responsibility of the SP" (CSI spec).
        let created = match std::fs::create_dir(&resolved) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // symlink_metadata: a symlink here would send the mount elsewhere.
                let is_dir = std::fs::symlink_metadata(&resolved).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    return Err(VolumeError::NotADirectory {
                        path: target.to_path_buf(),
                    });
                }
                false
            }
            Err(e) => return Err(io_error("create", target)(e)),
        };
        let table = self.table(target)?;
        // The top mount decides: the one a container bound there would see.
        if let Some(top) = table.iter().rev().find(|m| m.point == resolved) {
            let source = top.source_of(&resolved);
            // A writable mount of the agents is not ours, even from the right directory:
            // nothing of ours is ever writable.
            let ours = top.read_only && source.is_some() && source == self.agents_source(&table);
            return if ours {
                Ok(Published::AlreadyMounted)
            } else {
                Err(VolumeError::OtherMount {
                    path: target.to_path_buf(),
                })
            };
        }
        if let Err(e) = self.mounts.bind_read_only(&self.agent_dir, &resolved) {
            if created {
                let _ = std::fs::remove_dir(&resolved);
            }
            return Err(io_error(
                "bind-mount the agent directory read-only at",
                target,
            )(e));
        }
        Ok(Published::Mounted)
    }

    /// Unmounts `target` when mounted, then removes the directory publish created.
    pub fn unpublish(&self, target: &Path) -> Result<Unpublished, VolumeError> {
        let _busy = self
            .busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(resolved) = self.resolve(target)? else {
            return Ok(Unpublished::NotMounted);
        };
        let mut outcome = Unpublished::NotMounted;
        for _ in 0..MAX_STACKED {
            if self.mounts_at(&resolved)? == 0 {
                break;
            }
            self.mounts
                .unmount(&resolved)
                .map_err(io_error("unmount", target))?;
            outcome = Unpublished::Unmounted;
        }
        if self.mounts_at(&resolved)? > 0 {
            return Err(VolumeError::StillMounted {
                path: target.to_path_buf(),
            });
        }
        match std::fs::remove_dir(&resolved) {
            Ok(()) => Ok(outcome),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(outcome),
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Err(VolumeError::NotEmpty {
                path: target.to_path_buf(),
            }),
            Err(e) => Err(io_error("remove", target)(e)),
        }
    }

    /// How many volumes are published now: mounts of the agent directory under the pod directory.
    pub fn published(&self) -> io::Result<usize> {
        let pods = std::fs::canonicalize(&self.pods_dir)?;
        let table = self.mounts.table()?;
        let Some(agents) = self.agents_source(&table) else {
            return Ok(0);
        };
        Ok(table
            .iter()
            .filter(|m| {
                m.point.starts_with(&pods) && m.source_of(&m.point).as_ref() == Some(&agents)
            })
            .count())
    }
}
