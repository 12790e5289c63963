//! Reading the tree to install: its entries (through directory descriptors, never following
//! a symlink) and its files' contents (opened below the tree's descriptor, no symlink on
//! the way), so what is checked is what is copied.

use super::digest::{Digest, TreeHasher};
use super::tree::{Entry, Kind};
use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, openat, openat2, readlinkat, statat,
};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// How much of a file is read at a time.
pub const CHUNK: usize = 256 * 1024;

/// The tree at `--from`: its directory descriptor and its entries in path order.
pub struct Source {
    /// The tree's root directory.
    pub root: OwnedFd,
    /// Every entry below it, parents before children.
    pub entries: Vec<Entry>,
}

impl Source {
    /// Opens `path` and lists the whole tree.
    pub fn scan(path: &Path) -> io::Result<Source> {
        let root = open_dir(rustix::fs::CWD, path)?;
        let mut entries = Vec::new();
        list(root.as_fd(), Path::new(""), &mut entries)?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Source { root, entries })
    }

    /// Opens the regular file `path` (relative to the root) for reading.
    pub fn open(&self, path: &Path) -> io::Result<File> {
        let fd = openat2(
            self.root.as_fd(),
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(format!(
                "{} is no longer a regular file",
                path.display()
            )));
        }
        Ok(file)
    }

    /// The tree's digest, reading every file.
    pub fn digest(&self) -> io::Result<Digest> {
        let mut hasher = TreeHasher::default();
        let mut buffer = vec![0u8; CHUNK];
        for entry in &self.entries {
            hasher.entry(entry);
            if let Kind::File { .. } = entry.kind {
                let mut file = self.open(&entry.path)?;
                loop {
                    let n = file.read(&mut buffer)?;
                    let Some(read) = buffer.get(..n).filter(|r| !r.is_empty()) else {
                        break;
                    };
                    hasher.content(read);
                }
            }
        }
        Ok(hasher.finish())
    }
}

/// Opens the directory `name` in `dir` for listing, not through a symlink.
pub fn open_dir(dir: BorrowedFd, name: &Path) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in `dir` (without `.` and `..`).
pub fn names(dir: BorrowedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for item in Dir::read_from(dir)? {
        let name = item?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    Ok(names)
}

/// Appends the entries below `dir` (at `prefix` in the tree).
fn list(dir: BorrowedFd, prefix: &Path, entries: &mut Vec<Entry>) -> io::Result<()> {
    for name in names(dir)? {
        let name = PathBuf::from(name);
        let stat = statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        let path = prefix.join(&name);
        let mode = stat.st_mode & 0o7777;
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File {
                size: u64::try_from(stat.st_size).unwrap_or(0),
            },
            FileType::Symlink => Kind::Symlink {
                target: PathBuf::from(OsStr::from_bytes(
                    readlinkat(dir, &name, Vec::new())?.as_bytes(),
                )),
            },
            FileType::CharacterDevice => Kind::Special {
                what: "character device",
            },
            FileType::BlockDevice => Kind::Special {
                what: "block device",
            },
            FileType::Socket => Kind::Special { what: "socket" },
            FileType::Fifo => Kind::Special { what: "FIFO" },
            FileType::Unknown => Kind::Special {
                what: "file of unknown type",
            },
        };
        let is_dir = kind == Kind::Dir;
        entries.push(Entry {
            path: path.clone(),
            kind,
            mode,
        });
        if is_dir {
            list(open_dir(dir, &name)?.as_fd(), &path, entries)?;
        }
    }
    Ok(())
}
