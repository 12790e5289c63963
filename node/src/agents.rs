//! The agent directory the plugins serve, resolved again at every call and never pinned
//! (DESIGN §3c "The plugins follow the switch"). It is either a plain directory (e.g.
//! `/var/odigos`, managed by Odigos), or `<root>/current` of the agents installer: a
//! relative symlink `versions/<digest>` that an install switches with one `rename(2)`.
//! That symlink is the one link ever followed, and only when it reads `versions/<name>`:
//! the rest is resolved below a descriptor of `<root>` without following any link, so a
//! `current` that points elsewhere (absolute, escaping, through another link) is refused.
//! The agents count as installed once the directory is non-empty: an empty `current`
//! (which a runtime creates for a hostPath that is still missing) is not installed.

use crate::beneath::open_beneath;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, openat, readlinkat, statat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The installer's directory of complete versions, beside `current` in its root.
pub const VERSIONS: &str = "versions";

/// Why the agent directory does not hold agents now; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// Missing, empty, or not a directory.
    #[error(
        "the agent directory {} is missing or empty on this node: install the agents (the agent-mount-agents DaemonSet does, into <root>/current), or copy them there",
        path.display()
    )]
    Missing {
        /// The agent directory.
        path: PathBuf,
    },
    /// A symlink other than the installer's `versions/<name>`.
    #[error(
        "the agent directory {} is a symlink to {}, and the only link followed is the agents installer's relative versions/<digest> beside it; run `agent-mount-node agents install` again, or point the flag at a plain directory",
        path.display(), target.display()
    )]
    Link {
        /// The agent directory.
        path: PathBuf,
        /// What the link (or a link on the way to the version) reads.
        target: PathBuf,
    },
    /// A system call failed.
    #[error("cannot open the agent directory {}: {source}", path.display())]
    Io {
        /// The agent directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// The agent directory as it resolved just now.
#[derive(Debug)]
pub struct Resolved {
    /// An `O_PATH` descriptor of the directory holding the agents.
    pub dir: OwnedFd,
    /// `versions/<name>` when the directory is an installed version, `None` for a plain one.
    pub version: Option<PathBuf>,
}

/// Resolves `path` now and checks that it holds agents (a non-empty directory).
pub fn installed(path: &Path) -> Result<Resolved, AgentsError> {
    let resolved = resolve(path)?;
    match has_entries(resolved.dir.as_fd()) {
        Ok(true) => Ok(resolved),
        Ok(false) => Err(missing(path)),
        Err(source) => Err(io_error(path, source)),
    }
}

/// Whether `path` holds agents now (see [`installed`]).
pub fn present(path: &Path) -> bool {
    installed(path).is_ok()
}

/// `versions/<name>` when `link` (what `current` reads) has exactly that shape: relative,
/// two plain names, the second not hidden (the installer's temporary trees are
/// `.tmp-…` and `.gone-…`, never complete versions).
pub fn version_of(link: &Path) -> Option<PathBuf> {
    let mut components = link.components();
    match (components.next(), components.next(), components.next()) {
        (Some(Component::Normal(versions)), Some(Component::Normal(name)), None)
            if versions == VERSIONS && !name.as_bytes().starts_with(b".") =>
        {
            Some(Path::new(VERSIONS).join(name))
        }
        _ => None,
    }
}

/// Whether the directory `dev`/`ino` is one of the installer's versions beside `path`
/// (`<parent of path>/versions/<name>`, not hidden): a volume published before a switch
/// shows such a version. One `stat` per version kept, however many volumes or mounts
/// the node has.
pub fn is_version(path: &Path, dev: u64, ino: u64) -> bool {
    let look = || -> io::Result<bool> {
        let root = open_root(path)?;
        let versions = open_beneath(root.as_fd(), Path::new(VERSIONS))?;
        let entries = Dir::new(openat(
            &versions,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_bytes().starts_with(b".") {
                continue; // ".", ".." and the installer's temporary trees
            }
            let stat = statat(&versions, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory
                && stat.st_dev == dev
                && stat.st_ino == ino
            {
                return Ok(true);
            }
        }
        Ok(false)
    };
    look().unwrap_or(false)
}

/// Opens the directory that holds `path` (the installer's root), following the links of
/// the path the admin configured: they are the node's layout, not the installer's.
fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let parent = path.parent().unwrap_or(path);
    Ok(rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Resolves `path`: a plain directory as it is; a symlink only when it reads
/// `versions/<name>`, then that version below the same root, through no other link.
fn resolve(path: &Path) -> Result<Resolved, AgentsError> {
    let root = open_root(path).map_err(|e| not_there(path, e))?;
    let name = path.file_name().unwrap_or(OsStr::new("."));
    match open_beneath(root.as_fd(), Path::new(name)) {
        Ok(dir) => Ok(Resolved { dir, version: None }),
        Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            // Read it again rather than trust a check made before: an install may have
            // switched it in between, and whatever it reads now is checked in full.
            let link = readlinkat(&root, name, Vec::new())
                .map(|link| PathBuf::from(OsStr::from_bytes(link.as_bytes())))
                .map_err(|e| not_there(path, e.into()))?;
            let Some(version) = version_of(&link) else {
                return Err(AgentsError::Link {
                    path: path.to_path_buf(),
                    target: link,
                });
            };
            match open_beneath(root.as_fd(), &version) {
                Ok(dir) => Ok(Resolved {
                    dir,
                    version: Some(version),
                }),
                Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                    Err(AgentsError::Link {
                        path: path.to_path_buf(),
                        target: link,
                    })
                }
                Err(e) => Err(not_there(path, e)),
            }
        }
        Err(e) => Err(not_there(path, e)),
    }
}

/// Whether the directory `dir` (an `O_PATH` descriptor) has an entry besides `.` and `..`.
fn has_entries(dir: BorrowedFd) -> io::Result<bool> {
    let listing = openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for entry in Dir::new(listing)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `Missing` for what says "not there" (no such file, not a directory), `Io` for the rest.
fn not_there(path: &Path, source: io::Error) -> AgentsError {
    let gone = [Errno::NOENT, Errno::NOTDIR]
        .iter()
        .any(|errno| source.raw_os_error() == Some(errno.raw_os_error()));
    if gone {
        missing(path)
    } else {
        io_error(path, source)
    }
}

fn missing(path: &Path) -> AgentsError {
    AgentsError::Missing {
        path: path.to_path_buf(),
    }
}

fn io_error(path: &Path, source: io::Error) -> AgentsError {
    AgentsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn only_versions_slash_a_plain_name_is_a_version() {
        let cases = [
            ("versions/0123abcd", Some("versions/0123abcd")),
            ("versions/0123abcd/", Some("versions/0123abcd")),
            ("versions/.tmp-0123-7", None),
            ("versions/.gone-0123-7", None),
            ("/var/lib/agent-mount/agents/versions/0123", None),
            ("../versions/0123", None),
            ("versions/../../etc", None),
            ("versions/0123/java", None),
            ("versions", None),
            ("other/0123", None),
            ("./versions/0123", None),
            ("", None),
        ];
        for (link, expected) in cases {
            assert_eq!(
                version_of(Path::new(link)),
                expected.map(PathBuf::from),
                "{link:?}"
            );
        }
    }

    /// A root with one version `v1` holding `java/javaagent.jar`.
    fn root_with_a_version() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("versions/v1/java")).unwrap();
        std::fs::write(root.path().join("versions/v1/java/javaagent.jar"), "v1").unwrap();
        root
    }

    #[test]
    fn current_resolves_only_through_the_installers_link() {
        let root = root_with_a_version();
        let current = root.path().join("current");
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("agent.jar"), "x").unwrap();
        let v1 = std::fs::metadata(root.path().join("versions/v1")).unwrap();
        std::fs::create_dir_all(root.path().join("versions/empty")).unwrap();
        symlink(outside.path(), root.path().join("versions/linked")).unwrap();
        // (what `current` is, what installed() says)
        let cases: [(&str, Option<&str>, &str); 9] = [
            ("missing", None, "missing"),
            ("dir", None, "missing"), // an empty directory a runtime created
            ("link", Some("versions/v1"), "v1"),
            ("link", Some("versions/empty"), "missing"),
            ("link", Some("versions/gone"), "missing"),
            ("link", Some("versions/linked"), "link"),
            ("link", Some("../outside"), "link"),
            ("link", Some("versions/v1/java"), "link"),
            ("link", Some("versions/.tmp-v1-9"), "link"),
        ];
        for (kind, link, expected) in cases {
            let _ = std::fs::remove_file(&current);
            let _ = std::fs::remove_dir(&current);
            match (kind, link) {
                ("dir", _) => std::fs::create_dir(&current).unwrap(),
                ("link", Some(link)) => symlink(link, &current).unwrap(),
                _ => {}
            }
            let seen = match installed(&current) {
                Ok(resolved) => {
                    let stat = rustix::fs::fstat(&resolved.dir).unwrap();
                    assert_eq!((stat.st_dev, stat.st_ino), (v1.dev(), v1.ino()));
                    assert_eq!(resolved.version, Some(PathBuf::from("versions/v1")));
                    "v1"
                }
                Err(AgentsError::Missing { .. }) => "missing",
                Err(AgentsError::Link { .. }) => "link",
                Err(e) => panic!("{kind} {link:?}: {e}"),
            };
            assert_eq!(seen, expected, "current: {kind} {link:?}");
        }
        // An absolute link, even to a version of this very root, is never followed.
        std::fs::remove_file(&current).unwrap();
        symlink(root.path().join("versions/v1"), &current).unwrap();
        let refused = installed(&current).unwrap_err();
        assert!(
            refused.to_string().contains("only link followed"),
            "{refused}"
        );
    }

    #[test]
    fn a_plain_directory_is_served_as_it_is() {
        let root = root_with_a_version();
        let plain = root.path().join("versions/v1");
        let resolved = installed(&plain).unwrap();
        assert_eq!(resolved.version, None);
        assert!(present(&plain));
        let file = plain.join("java/javaagent.jar");
        assert!(!present(&file), "a file is not an agent directory");
    }

    #[test]
    fn versions_are_told_by_their_identity() {
        let root = root_with_a_version();
        std::fs::create_dir_all(root.path().join("versions/.tmp-v2-9")).unwrap();
        let current = root.path().join("current");
        let identity = |relative: &str| {
            let meta = std::fs::metadata(root.path().join(relative)).unwrap();
            (meta.dev(), meta.ino())
        };
        let cases = [
            ("versions/v1", true),
            ("versions/.tmp-v2-9", false),
            ("versions/v1/java", false),
            ("versions", false),
        ];
        for (relative, expected) in cases {
            let (dev, ino) = identity(relative);
            assert_eq!(is_version(&current, dev, ino), expected, "{relative}");
        }
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(!is_version(&elsewhere.path().join("current"), 1, 1));
    }
}
