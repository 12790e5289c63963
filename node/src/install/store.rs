//! The kernel side of `<root>`: the lock, the listings [`super::layout`] reads, copying a
//! version, switching `current`, recording a replacement, removing what is collected or
//! what a crash left. Every call acts on descriptors of `<root>` and `versions/`.
//!
//! A version's replacement time is its directory's mtime: set when `current` moves away
//! from it (before the switch, so a crash in between only refreshes the current one), and
//! otherwise the time its last entry was written.

use super::digest::{Digest, TreeHasher};
use super::layout::{self, CURRENT, GONE, LOCK, Listing, NEW_LINK, Seen, Switch, TMP, VERSIONS};
use super::source::{CHUNK, Source, names, open_dir};
use super::tree::Kind;
use rustix::fs::{
    AtFlags, FileType, FlockOperation, Gid, Mode, OFlags, Timespec, Timestamps, UTIME_NOW, Uid,
    chownat, fchmod, fchown, flock, fsync, mkdirat, openat, readlinkat, renameat, statat,
    symlinkat, syncfs, unlinkat, utimensat,
};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many times an empty directory at `current` is removed again when something
/// (a container runtime) keeps recreating it.
const EMPTY_DIR_RETRIES: u32 = 10;

/// Kills the process at a given step (`--fault-kill-at-step`, hidden): the crash tests
/// stop an install at every point with SIGKILL, which nothing can catch or clean up after.
#[derive(Debug, Default)]
pub struct Fault {
    kill_at: Option<u64>,
    steps: u64,
}

impl Fault {
    /// SIGKILL at step `kill_at` (1-based), or never.
    pub fn new(kill_at: Option<u64>) -> Fault {
        Fault { kill_at, steps: 0 }
    }

    /// One more step done.
    fn step(&mut self) {
        self.steps += 1;
        if self.kill_at == Some(self.steps) {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

/// What a copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Entries made (directories, files, links).
    pub entries: u64,
}

/// `<root>` opened.
pub struct Store {
    /// The root as given, for messages.
    pub path: PathBuf,
    root: OwnedFd,
}

impl Store {
    /// Opens `path` (made when missing; `versions/` is made by the first copy, after the
    /// root was found free of foreign files).
    pub fn open(path: &Path) -> io::Result<Store> {
        std::fs::create_dir_all(path).map_err(|e| context(e, path))?;
        let root = open_dir(rustix::fs::CWD, path).map_err(|e| context(e, path))?;
        Ok(Store {
            path: path.to_path_buf(),
            root,
        })
    }

    /// `versions/`, made when missing.
    fn versions(&self) -> io::Result<OwnedFd> {
        match mkdirat(&self.root, VERSIONS, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(context(e.into(), &self.path.join(VERSIONS))),
        }
        open_dir(self.root.as_fd(), Path::new(VERSIONS))
            .map_err(|e| context(e, &self.path.join(VERSIONS)))
    }

    /// Takes the exclusive lock on `<root>/.lock`, waiting for another run to finish; it is
    /// held until the returned descriptor is dropped (or the process dies).
    pub fn lock(&self) -> io::Result<OwnedFd> {
        let fd = openat(
            &self.root,
            LOCK,
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        if flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            tracing::info!(lock = %self.path.join(LOCK).display(), "another install or gc holds the lock; waiting");
            flock(&fd, FlockOperation::LockExclusive)?;
        }
        Ok(fd)
    }

    /// The listings of `<root>` and `versions/`.
    pub fn listings(&self) -> io::Result<(Listing, Listing)> {
        let versions = match open_dir(self.root.as_fd(), Path::new(VERSIONS)) {
            Ok(versions) => listing(versions.as_fd())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok((listing(self.root.as_fd())?, versions))
    }

    /// Removes a leftover named relative to `<root>` (a file, link or whole tree).
    pub fn remove(&self, relative: &Path) -> io::Result<()> {
        remove_any(self.root.as_fd(), relative).map_err(|e| context(e, &self.path.join(relative)))
    }

    /// Copies `source` into `versions/.tmp-<digest>-<pid>`, with modes normalised and owned
    /// by root, makes it durable (`syncfs`), checks that what was copied has `digest`, and renames it to
    /// `versions/<digest>` (then fsyncs `versions/`).
    pub fn copy(&self, source: &Source, digest: &Digest, fault: &mut Fault) -> io::Result<Copied> {
        let versions = self.versions()?;
        let tmp = layout::temporary_name(TMP, digest, std::process::id());
        mkdirat(&versions, &tmp, Mode::from_raw_mode(0o700))?;
        let dir = open_dir(versions.as_fd(), Path::new(&tmp))?;
        let mut copied = Copied::default();
        let mut hasher = TreeHasher::default();
        let mut buffer = vec![0u8; CHUNK];
        let mut dirs = vec![PathBuf::new()];
        for entry in &source.entries {
            hasher.entry(entry);
            let mode = Mode::from_raw_mode(entry.installed_mode());
            match &entry.kind {
                Kind::Dir => {
                    mkdirat(&dir, &entry.path, Mode::from_raw_mode(0o700))?;
                    dirs.push(entry.path.clone());
                }
                Kind::File { .. } => {
                    let mut from = source.open(&entry.path)?;
                    let to = openat(
                        &dir,
                        &entry.path,
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )?;
                    let mut to = File::from(to);
                    loop {
                        let n = from.read(&mut buffer)?;
                        let Some(read) = buffer.get(..n).filter(|r| !r.is_empty()) else {
                            break;
                        };
                        hasher.content(read);
                        to.write_all(read)?;
                        copied.bytes += n as u64;
                    }
                    fchown(&to, Some(Uid::ROOT), Some(Gid::ROOT))?;
                    fchmod(&to, mode)?;
                }
                Kind::Symlink { target } => {
                    symlinkat(target.as_os_str(), &dir, &entry.path)?;
                    chownat(
                        &dir,
                        &entry.path,
                        Some(Uid::ROOT),
                        Some(Gid::ROOT),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )?;
                }
                Kind::Special { .. } => {
                    return Err(io::Error::other(format!(
                        "{} is not copied: refused",
                        entry.path.display()
                    )));
                }
            }
            copied.entries += 1;
            fault.step();
        }
        // Directories last, deepest first, so that a 0755 never opens a half-made one.
        for relative in dirs.iter().rev() {
            let fd = if relative.as_os_str().is_empty() {
                open_dir(dir.as_fd(), Path::new("."))?
            } else {
                open_dir(dir.as_fd(), relative)?
            };
            fchown(&fd, Some(Uid::ROOT), Some(Gid::ROOT))?;
            fchmod(&fd, Mode::from_raw_mode(0o755))?;
        }
        // One syncfs(2) makes every file and directory of the copy durable before the
        // rename; one fsync per file would cost thousands of disk flushes for the Python tree.
        syncfs(&dir)?;
        fault.step();
        let written = hasher.finish();
        if &written != digest {
            return Err(io::Error::other(format!(
                "the tree changed while it was copied (digest {written}, was {digest}); nothing was installed"
            )));
        }
        renameat(&versions, &tmp, &versions, digest.as_str())?;
        fsync(&versions)?;
        fault.step();
        Ok(copied)
    }

    /// Points `current` at `versions/<digest>`: a new relative symlink `.current-<pid>`,
    /// renamed over `current` with one `rename(2)`, then `<root>` fsynced.
    pub fn switch(&self, digest: &Digest, how: &Switch, fault: &mut Fault) -> io::Result<()> {
        if let Switch::Link {
            replaced: Some(old),
        } = how
        {
            // Before the switch: a crash in between leaves `old` current, merely touched.
            self.mark_replaced(old)?;
        }
        let new_link = OsString::from(format!("{NEW_LINK}{}", std::process::id()));
        symlinkat(
            layout::link_target(digest).as_os_str(),
            &self.root,
            &new_link,
        )?;
        fault.step();
        // rename(2) of a symlink over a directory fails with EISDIR: an empty directory at
        // `current` (planned, or made by a container runtime since the listing) is removed
        // and the rename tried again, as long as something keeps recreating it.
        let mut attempts = 0;
        loop {
            match renameat(&self.root, &new_link, &self.root, CURRENT) {
                Err(Errno::ISDIR) if attempts < EMPTY_DIR_RETRIES => {
                    attempts += 1;
                    match unlinkat(&self.root, CURRENT, AtFlags::REMOVEDIR) {
                        Ok(()) | Err(Errno::NOENT) => {}
                        Err(Errno::NOTEMPTY) => {
                            let _ = unlinkat(&self.root, &new_link, AtFlags::empty());
                            return Err(io::Error::other(format!(
                                "{} is a directory that holds files agent-mount did not make; move them away",
                                self.path.join(CURRENT).display()
                            )));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                result => break result?,
            }
        }
        fsync(&self.root)?;
        fault.step();
        Ok(())
    }

    /// Records that `digest` stopped being current now (its directory's mtime).
    fn mark_replaced(&self, digest: &Digest) -> io::Result<()> {
        let versions = self.versions()?;
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        };
        let times = Timestamps {
            last_access: now,
            last_modification: now,
        };
        Ok(utimensat(
            &versions,
            digest.as_str(),
            &times,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// How long ago `digest` was replaced (or written, if it never was current).
    pub fn replaced_ago(&self, digest: &Digest) -> io::Result<Duration> {
        let versions = self.versions()?;
        let stat = statat(&versions, digest.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        let mtime = UNIX_EPOCH
            + Duration::new(
                u64::try_from(stat.st_mtime).unwrap_or(0),
                u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
            );
        Ok(SystemTime::now().duration_since(mtime).unwrap_or_default())
    }

    /// Removes `versions/<digest>`: renamed out to `versions/.gone-<digest>-<pid>` first, so
    /// that a collection killed half-way never leaves a partial tree under a version's name.
    pub fn collect(&self, digest: &Digest) -> io::Result<()> {
        let versions = self.versions()?;
        let gone = layout::temporary_name(GONE, digest, std::process::id());
        renameat(&versions, digest.as_str(), &versions, &gone)?;
        fsync(&versions)?;
        remove_any(versions.as_fd(), Path::new(&gone))
    }

    /// The device (`major`, `minor`) of `versions/`.
    pub fn versions_device(&self) -> io::Result<(u32, u32)> {
        let versions = self.versions()?;
        let stat = rustix::fs::fstat(&versions)?;
        Ok((
            rustix::fs::major(stat.st_dev),
            rustix::fs::minor(stat.st_dev),
        ))
    }

    /// The digest `current` points at, if it is our link.
    pub fn current(&self) -> Option<Digest> {
        let target = readlinkat(&self.root, CURRENT, Vec::new()).ok()?;
        layout::version_link(Path::new(OsStr::from_bytes(target.as_bytes())))
    }
}

/// Each entry of `dir` as [`Seen`].
fn listing(dir: BorrowedFd) -> io::Result<Listing> {
    let mut seen = Vec::new();
    for name in names(dir)? {
        let stat = statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => Seen::Dir {
                empty: names(open_dir(dir, Path::new(&name))?.as_fd())?.is_empty(),
            },
            FileType::Symlink => Seen::Symlink(PathBuf::from(OsString::from_vec(
                readlinkat(dir, &name, Vec::new())?.into_bytes(),
            ))),
            FileType::RegularFile => Seen::File,
            _ => Seen::Other,
        };
        seen.push((name, kind));
    }
    Ok(seen)
}

/// Removes `name` in `dir`: a file or link, or a directory with everything in it.
fn remove_any(dir: BorrowedFd, name: &Path) -> io::Result<()> {
    match unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) => {}
        result => return Ok(result?),
    }
    let inner = open_dir(dir, name)?;
    for child in names(inner.as_fd())? {
        remove_any(inner.as_fd(), Path::new(&child))?;
    }
    Ok(unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

fn context(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
