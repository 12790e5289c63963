//! Resolution below a directory descriptor that never follows a symlink (DESIGN §3b
//! "Rules"): `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or a walk of
//! `O_PATH|O_NOFOLLOW` steps where `openat2` is missing. The CSI plugin resolves its
//! targets below the pod directory with it, and [`crate::agents`] the installed version
//! below the agents root.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, openat, openat2, statat};
use rustix::io::Errno;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once `openat2` answered `ENOSYS` (Linux before 5.6): walk instead from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens the directory `relative` (plain segments) below `dir` as an `O_PATH` descriptor,
/// never through a symlink: `ELOOP` when one is on the way, `ENOTDIR` for a file,
/// `ENOENT` for a missing segment.
pub fn open_beneath(dir: BorrowedFd, relative: &Path) -> io::Result<OwnedFd> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match openat2(
            dir,
            relative,
            // No O_NOFOLLOW: a trailing symlink must meet RESOLVE_NO_SYMLINKS (ELOOP), not
            // be opened itself.
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            result => return Ok(result?),
        }
    }
    walk(dir, relative)
}

/// [`open_beneath`] without `openat2`: one `O_PATH|O_NOFOLLOW|O_DIRECTORY` step per segment.
fn walk(dir: BorrowedFd, relative: &Path) -> io::Result<OwnedFd> {
    let mut segments = relative.iter();
    let first = segments
        .next()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut current = open_directory(dir, first)?;
    for segment in segments {
        current = open_directory(current.as_fd(), segment)?;
    }
    Ok(current)
}

/// Opens the directory `name` in `dir` (`O_PATH`, not through a symlink): `ELOOP` for a
/// symlink, `ENOTDIR` for anything else that is not a directory.
pub fn open_directory(dir: BorrowedFd, name: impl AsRef<Path>) -> io::Result<OwnedFd> {
    let name = name.as_ref();
    match openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        // O_PATH|O_NOFOLLOW on a symlink gives ENOTDIR, as for a file: tell them apart.
        Err(Errno::NOTDIR) => match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
                Err(Errno::LOOP.into())
            }
            _ => Err(Errno::NOTDIR.into()),
        },
        result => Ok(result?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_below_a_descriptor_never_follows_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("pods");
        std::fs::create_dir_all(base.join("uid/volumes/v")).unwrap();
        std::fs::create_dir(root.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(root.path().join("outside"), base.join("uid/link")).unwrap();
        std::os::unix::fs::symlink("volumes", base.join("uid/inside")).unwrap();
        std::fs::write(base.join("uid/file"), "x").unwrap();
        let dir = rustix::fs::open(
            &base,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let cases: [(&str, Option<i32>); 6] = [
            ("uid/volumes/v", None),
            ("uid/link", Some(Errno::LOOP.raw_os_error())),
            ("uid/inside/v", Some(Errno::LOOP.raw_os_error())),
            ("uid/file", Some(Errno::NOTDIR.raw_os_error())),
            ("uid/file/v", Some(Errno::NOTDIR.raw_os_error())),
            ("uid/missing/v", Some(Errno::NOENT.raw_os_error())),
        ];
        for (relative, expected) in cases {
            // Both ways: openat2, and the walk that stands in where openat2 is missing.
            for (way, result) in [
                ("openat2", open_beneath(dir.as_fd(), Path::new(relative))),
                ("walk", walk(dir.as_fd(), Path::new(relative))),
            ] {
                match (result, expected) {
                    (Ok(fd), None) => {
                        let opened = rustix::fs::fstat(&fd).unwrap();
                        let real = std::fs::metadata(base.join(relative)).unwrap();
                        assert_eq!(
                            opened.st_ino,
                            std::os::unix::fs::MetadataExt::ino(&real),
                            "{way} {relative}"
                        );
                    }
                    (Err(e), Some(errno)) => {
                        assert_eq!(e.raw_os_error(), Some(errno), "{way} {relative}: {e}")
                    }
                    (result, _) => panic!("{way} {relative}: unexpected {result:?}"),
                }
            }
        }
    }
}
