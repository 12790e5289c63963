//! Publish and unpublish (DESIGN §3b "Rules") on kernel objects, after
//! [`super::request`] has checked the target's shape: the volume's directory is resolved
//! below a descriptor of `<kubelet-dir>/pods` without following a symlink, and every later
//! step (create, check, mount, unmount, remove) acts on descriptors, so a path swapped in
//! between cannot redirect it. The agent directory is resolved again at every publish
//! ([`crate::agents`]: `<root>/current` follows the installer's switch), and the version
//! it resolved to is what gets mounted. Whether a mount is ours is decided from its
//! descriptor, in constant time; the mount table is read only for the published-volumes gauge.

use super::mounts::{self, KernelError, Mount, Mounts, Node, SEALED, mount_of};
use super::request::{MOUNT, Target};
use crate::agents::{self, AgentsError, Resolved, VERSIONS};
use crate::beneath::{open_beneath, open_directory};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, StatVfsMountFlags, mkdirat, unlinkat};
use rustix::io::Errno;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tonic::Code;

/// Most mounts of ours one unpublish takes off a target: more means something keeps mounting there.
const MAX_STACKED: usize = 16;
/// The mode of a target directory publish creates (the kubelet's own for volume directories).
const TARGET_MODE: u32 = 0o750;

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
    /// Our mount was detached and its empty directory removed.
    Unmounted,
    /// Nothing of ours was mounted there (a repeated call, or never published); an empty
    /// directory is removed, a non-empty one left as it is.
    NotMounted,
}

/// Why the plugin cannot start serving volumes.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The kernel lacks the new mount API.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// `<kubelet-dir>/pods` cannot be opened or identified.
    #[error(
        "cannot use the kubelet's pod directory {}: {source}; set --kubelet-dir to the kubelet's --root-dir and mount it into this container",
        path.display()
    )]
    PodsDir {
        /// `<kubelet-dir>/pods`.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
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
    /// The agent directory is a symlink other than the installer's, or cannot be opened.
    #[error("{0} (--agent-dir)")]
    Agents(AgentsError),
    /// The directory holding `target_path` does not exist.
    #[error(
        "the parent of target_path {} does not exist: the kubelet creates it before NodePublishVolume, so check that --kubelet-dir is the kubelet's --root-dir and is mounted into this container",
        path.display()
    )]
    ParentMissing {
        /// `target_path`.
        path: PathBuf,
    },
    /// A symlink, or something else that is not a directory, is on the way to `target_path`.
    #[error(
        "the way to target_path {} below the pod directory goes through a symlink or a file: the kubelet makes only directories there, so the node's kubelet directory has been tampered with; nothing was created or mounted",
        path.display()
    )]
    NotPlainDirectories {
        /// `target_path`.
        path: PathBuf,
    },
    /// `target_path` exists and is not a directory (or is a symlink).
    #[error("target_path {} exists and is not a directory: remove it, or delete the pod", path.display())]
    NotADirectory {
        /// `target_path`.
        path: PathBuf,
    },
    /// Something other than our mount of the agent directory is mounted at `target_path`.
    #[error(
        "target_path {} has a mount that is not this plugin's (the agent directory, or one of its installed versions, mounted read-only, nosuid, nodev): this plugin neither reuses nor removes it; unmount it by hand, or delete the pod",
        path.display()
    )]
    OtherMount {
        /// `target_path`.
        path: PathBuf,
    },
    /// Mounts of ours keep reappearing at `target_path`.
    #[error("target_path {} still has mounts after {MAX_STACKED} unmounts", path.display())]
    StillMounted {
        /// `target_path`.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "mount the agent directory at".
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
            VolumeError::Agents(AgentsError::Io { .. }) => Code::Internal,
            VolumeError::AgentsMissing { .. }
            | VolumeError::Agents(_)
            | VolumeError::ParentMissing { .. }
            | VolumeError::NotPlainDirectories { .. }
            | VolumeError::NotADirectory { .. }
            | VolumeError::OtherMount { .. } => Code::FailedPrecondition,
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

/// What is at a target, decided from its descriptor and its parent's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtTarget {
    /// A directory, no mount on it.
    Plain,
    /// Our mount: the agent directory (or one of its versions), read-only, `nosuid`, `nodev`.
    Ours,
    /// Any other mount.
    Foreign,
}

/// The agent directory's device and inode, as last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
}

/// Ours means: a separate mount (its mount ID differs from its parent's), sealed (`ro`,
/// `nosuid`, `nodev`), whose root is the agent directory, or a directory on its device
/// that is no longer linked (published before the agents were replaced), or, asked last
/// because it takes a look at the disk, one of the installer's versions (`is_version`:
/// published before `current` was switched).
pub fn classify(
    parent: &Node,
    target: &Node,
    flags: StatVfsMountFlags,
    agents: Option<Identity>,
    is_version: impl FnOnce(&Node) -> bool,
) -> AtTarget {
    if target.mount_id == parent.mount_id {
        return AtTarget::Plain;
    }
    let root_is_agents = agents.is_some_and(|agents| {
        target.dev == agents.dev && (target.ino == agents.ino || target.nlink == 0)
    });
    if flags.contains(SEALED) && (root_is_agents || is_version(target)) {
        AtTarget::Ours
    } else {
        AtTarget::Foreign
    }
}

/// The node's volumes: the agent directory mounted into the kubelet's pod directory.
pub struct Volumes<M> {
    mounts: M,
    agent_dir: PathBuf,
    /// `<kubelet-dir>/pods`, opened once at start (`O_PATH`).
    pods: OwnedFd,
    /// `<kubelet-dir>/pods` as given and as resolved: the kubelet may send either.
    pods_dirs: Vec<PathBuf>,
    /// The agent directory's identity (the version `current` resolved to), refreshed
    /// whenever a call resolves it.
    agents: Mutex<Option<Identity>>,
    /// Serialises publish and unpublish: check-then-mount must not interleave for one target.
    busy: Mutex<()>,
}

impl<M: Mounts> Volumes<M> {
    /// Volumes mounting `agent_dir` into `<kubelet_dir>/pods` through `mounts`; opens the
    /// pod directory now, so it is resolved once.
    pub fn open(mounts: M, agent_dir: &Path, kubelet_dir: &Path) -> Result<Self, StartError> {
        let given = kubelet_dir.join("pods");
        let pods_error = |source| StartError::PodsDir {
            path: given.clone(),
            source,
        };
        let resolved = std::fs::canonicalize(&given).map_err(pods_error)?;
        let pods = rustix::fs::open(
            &resolved,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| pods_error(e.into()))?;
        // Mount IDs are how a mount is told apart: make sure the kernel reports them.
        mounts::node_of(pods.as_fd()).map_err(pods_error)?;
        let mut pods_dirs = vec![given.clone()];
        if resolved != given {
            pods_dirs.push(resolved);
        }
        if mounts.legacy() {
            tracing::warn!(
                "--allow-legacy-mount: mounts are a bind followed by a read-only remount, which reaches only this plugin's copy; the host's copy is read-only only if the DaemonSet mounts the agent directory read-only"
            );
        }
        let volumes = Volumes {
            mounts,
            agent_dir: agent_dir.to_path_buf(),
            pods,
            pods_dirs,
            agents: Mutex::new(None),
            busy: Mutex::new(()),
        };
        volumes.known_agents();
        Ok(volumes)
    }

    /// `<kubelet-dir>/pods` in the spellings a target may use.
    pub fn pods_dirs(&self) -> &[PathBuf] {
        &self.pods_dirs
    }

    /// Whether mounts are made the legacy way (`--allow-legacy-mount` on an old kernel).
    pub fn legacy(&self) -> bool {
        self.mounts.legacy()
    }

    /// Resolves the agent directory now (following an install's switch) and remembers its
    /// identity; refused when it holds no agents or is a link of another shape.
    fn resolve_agents(&self) -> Result<(Resolved, Identity), VolumeError> {
        let resolved = agents::installed(&self.agent_dir).map_err(|e| match e {
            AgentsError::Missing { path } => VolumeError::AgentsMissing { path },
            other => VolumeError::Agents(other),
        })?;
        let node = mounts::node_of(resolved.dir.as_fd())
            .map_err(io_error("identify the agent directory", &self.agent_dir))?;
        let identity = Identity {
            dev: node.dev,
            ino: node.ino,
        };
        *self
            .agents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(identity);
        Ok((resolved, identity))
    }

    /// The agent directory's identity now, or the last one seen when it holds no agents.
    fn known_agents(&self) -> Option<Identity> {
        match self.resolve_agents() {
            Ok((_, identity)) => Some(identity),
            Err(_) => *self
                .agents
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// The volume's directory (the target's parent), or `None` when it does not exist.
    fn volume_dir(&self, target: &Target) -> Result<Option<OwnedFd>, VolumeError> {
        match open_beneath(self.pods.as_fd(), &target.volume_dir) {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => Ok(None),
            Err(e)
                if [Errno::LOOP, Errno::NOTDIR, Errno::XDEV]
                    .iter()
                    .any(|errno| e.raw_os_error() == Some(errno.raw_os_error())) =>
            {
                Err(VolumeError::NotPlainDirectories {
                    path: target.path.clone(),
                })
            }
            Err(e) => Err(io_error("open the volume directory of", &target.path)(e)),
        }
    }

    /// Opens the target directory in `parent`; `None` when it does not exist.
    fn open_target(
        &self,
        parent: &OwnedFd,
        target: &Target,
    ) -> Result<Option<OwnedFd>, VolumeError> {
        match open_directory(parent.as_fd(), MOUNT) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => Ok(None),
            Err(e)
                if [Errno::LOOP, Errno::NOTDIR]
                    .iter()
                    .any(|errno| e.raw_os_error() == Some(errno.raw_os_error())) =>
            {
                Err(VolumeError::NotADirectory {
                    path: target.path.clone(),
                })
            }
            Err(e) => Err(io_error("open", &target.path)(e)),
        }
    }

    /// What is at the target `mount` in `parent`.
    fn at_target(
        &self,
        parent: BorrowedFd,
        mount: BorrowedFd,
        target: &Target,
        agents: Option<Identity>,
    ) -> Result<AtTarget, VolumeError> {
        let look = || -> io::Result<AtTarget> {
            let parent = mounts::node_of(parent)?;
            let node = mounts::node_of(mount)?;
            Ok(classify(
                &parent,
                &node,
                mounts::mount_flags(mount)?,
                agents,
                |root| agents::is_version(&self.agent_dir, root.dev, root.ino),
            ))
        };
        look().map_err(io_error("inspect", &target.path))
    }

    /// Creates the target (and only it) and mounts the agent directory there, read-only:
    /// the version `current` resolves to now, when it is the installer's link.
    pub fn publish(&self, target: &Target) -> Result<Published, VolumeError> {
        let _busy = self
            .busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (resolved, agents) = self.resolve_agents()?;
        let parent = self
            .volume_dir(target)?
            .ok_or_else(|| VolumeError::ParentMissing {
                path: target.path.clone(),
            })?;
        // "Creation of target_path is the responsibility of the SP" (CSI spec).
        let created = match mkdirat(&parent, MOUNT, Mode::from_raw_mode(TARGET_MODE)) {
            Ok(()) => true,
            Err(Errno::EXIST) => false,
            Err(e) => return Err(io_error("create", &target.path)(e.into())),
        };
        let mount =
            self.open_target(&parent, target)?
                .ok_or_else(|| VolumeError::ParentMissing {
                    path: target.path.clone(),
                })?;
        match self.at_target(parent.as_fd(), mount.as_fd(), target, Some(agents))? {
            AtTarget::Ours => Ok(Published::AlreadyMounted),
            AtTarget::Foreign => Err(VolumeError::OtherMount {
                path: target.path.clone(),
            }),
            AtTarget::Plain => {
                let mounted = self.mounts.mount_read_only(
                    resolved.dir.as_fd(),
                    parent.as_fd(),
                    MOUNT,
                    mount.as_fd(),
                );
                if let Err(e) = mounted {
                    if created {
                        let _ = unlinkat(&parent, MOUNT, AtFlags::REMOVEDIR);
                    }
                    return Err(io_error(
                        "mount the agent directory read-only at",
                        &target.path,
                    )(e));
                }
                Ok(Published::Mounted)
            }
        }
    }

    /// Detaches our mount at the target, then removes the directory when it is empty.
    pub fn unpublish(&self, target: &Target) -> Result<Unpublished, VolumeError> {
        let _busy = self
            .busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let agents = self.known_agents();
        let Some(parent) = self.volume_dir(target)? else {
            return Ok(Unpublished::NotMounted);
        };
        let mut outcome = Unpublished::NotMounted;
        for _ in 0..MAX_STACKED {
            let Some(mount) = self.open_target(&parent, target)? else {
                return Ok(outcome);
            };
            match self.at_target(parent.as_fd(), mount.as_fd(), target, agents)? {
                AtTarget::Foreign => {
                    return Err(VolumeError::OtherMount {
                        path: target.path.clone(),
                    });
                }
                AtTarget::Ours => {
                    self.mounts
                        .detach(mount.as_fd())
                        .map_err(io_error("unmount", &target.path))?;
                    outcome = Unpublished::Unmounted;
                }
                AtTarget::Plain => {
                    drop(mount);
                    // Only an empty directory goes: one with content is not ours to delete.
                    return match unlinkat(&parent, MOUNT, AtFlags::REMOVEDIR) {
                        Ok(()) | Err(Errno::NOENT | Errno::NOTEMPTY | Errno::EXIST) => Ok(outcome),
                        Err(e) => Err(io_error("remove", &target.path)(e.into())),
                    };
                }
            }
        }
        Err(VolumeError::StillMounted {
            path: target.path.clone(),
        })
    }

    /// How many volumes are published now: mounts under the pod directory of the agent
    /// directory or of any installed version beside it, from the mount table (read as bytes).
    pub fn published(&self) -> io::Result<usize> {
        let table = self.mounts.table()?;
        let source_of = |path: &Path| {
            let path = std::fs::canonicalize(path).ok()?;
            mount_of(&table, &path)?.source_of(&path)
        };
        let agents = source_of(&self.agent_dir);
        let versions = self
            .agent_dir
            .parent()
            .and_then(|root| source_of(&root.join(VERSIONS)));
        let ours = |m: &Mount| {
            m.source_of(&m.point).is_some_and(|source| {
                Some(&source) == agents.as_ref()
                    || versions.as_ref().is_some_and(|(device, dir)| {
                        source.0 == *device && source.1.parent() == Some(dir.as_path())
                    })
            })
        };
        let inside = |m: &Mount| self.pods_dirs.iter().any(|pods| m.point.starts_with(pods));
        Ok(table.iter().filter(|m| inside(m) && ours(m)).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_is_a_separate_sealed_mount_of_the_agents() {
        // The one installed version besides current has inode 200.
        let agents = Identity { dev: 8, ino: 100 };
        let parent = Node {
            dev: 8,
            ino: 5,
            nlink: 3,
            mount_id: 1,
        };
        let node = |dev, ino, nlink, mount_id| Node {
            dev,
            ino,
            nlink,
            mount_id,
        };
        let writable = StatVfsMountFlags::NOSUID | StatVfsMountFlags::NODEV;
        let cases = [
            (
                "a plain directory",
                node(8, 7, 2, 1),
                SEALED,
                Some(agents),
                AtTarget::Plain,
            ),
            (
                "our mount",
                node(8, 100, 4, 2),
                SEALED,
                Some(agents),
                AtTarget::Ours,
            ),
            (
                "our mount, agents replaced since (unlinked root)",
                node(8, 99, 0, 2),
                SEALED,
                Some(agents),
                AtTarget::Ours,
            ),
            (
                "an unlinked directory on another device",
                node(9, 99, 0, 2),
                SEALED,
                Some(agents),
                AtTarget::Foreign,
            ),
            (
                "the agents, writable",
                node(8, 100, 4, 2),
                writable,
                Some(agents),
                AtTarget::Foreign,
            ),
            (
                "the agents, without nodev",
                node(8, 100, 4, 2),
                StatVfsMountFlags::RDONLY | StatVfsMountFlags::NOSUID,
                Some(agents),
                AtTarget::Foreign,
            ),
            (
                "a tmpfs",
                node(40, 1, 2, 2),
                SEALED,
                Some(agents),
                AtTarget::Foreign,
            ),
            (
                "another directory of the same device",
                node(8, 101, 2, 2),
                SEALED,
                Some(agents),
                AtTarget::Foreign,
            ),
            (
                "agents never seen",
                node(8, 100, 4, 2),
                SEALED,
                None,
                AtTarget::Foreign,
            ),
            (
                "an installed version other than current (published before a switch)",
                node(8, 200, 3, 2),
                SEALED,
                Some(agents),
                AtTarget::Ours,
            ),
            (
                "an installed version, writable",
                node(8, 200, 3, 2),
                writable,
                Some(agents),
                AtTarget::Foreign,
            ),
            (
                "an installed version, agents never seen",
                node(8, 200, 3, 2),
                SEALED,
                None,
                AtTarget::Ours,
            ),
        ];
        for (case, target, flags, agents, expected) in cases {
            assert_eq!(
                classify(&parent, &target, flags, agents, |root| root.ino == 200),
                expected,
                "{case}"
            );
        }
    }
}
