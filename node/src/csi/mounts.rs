//! The kernel side of a volume, on descriptors: identify what a descriptor is (`statx`,
//! `fstatvfs`), mount the agents born read-only, detach a mount, and read the mount table
//! as bytes ([`crate::beneath`] resolves the descriptors).
//! [`super::volumes`] decides what to do; this module only does it.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd};
use rustix::fs::{AtFlags, StatVfsMountFlags, StatxFlags, fstatvfs, makedev, statx};
use rustix::io::Errno;
use rustix::mount::{
    MountAttrFlags, MountFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount_bind,
    mount_remount, move_mount, open_tree, unmount,
};
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The mount table of this process's mount namespace.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";
/// The first Linux with `mount_setattr`, which a mount born read-only needs.
pub const MOUNT_SETATTR_SINCE: &str = "5.12";
/// The flags every mount of ours carries, from birth.
pub const SEALED: StatVfsMountFlags = StatVfsMountFlags::RDONLY
    .union(StatVfsMountFlags::NOSUID)
    .union(StatVfsMountFlags::NODEV);

/// Why the kernel cannot serve this plugin; the plugin refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No `mount_setattr` (Linux before 5.12).
    #[error(
        "this kernel ({release}) has no mount_setattr (Linux {MOUNT_SETATTR_SINCE}+), so a mount cannot be born read-only: a bind followed by a read-only remount leaves the copies that Bidirectional propagation gives the host writable; upgrade the node's kernel, or pass --allow-legacy-mount (AGENT_MOUNT_ALLOW_LEGACY_MOUNT=true) only if the DaemonSet mounts the agent directory read-only"
    )]
    NoMountSetattr {
        /// `uname -r`.
        release: String,
    },
}

/// Mount operations on the node, on descriptors.
pub trait Mounts: Send + Sync + 'static {
    /// Mounts the directory `source` (an `O_PATH` descriptor) onto `target` (an `O_PATH`
    /// descriptor of `name` in `parent`), read-only, `nosuid` and `nodev`; on failure
    /// nothing stays mounted.
    fn mount_read_only(
        &self,
        source: BorrowedFd,
        parent: BorrowedFd,
        name: &str,
        target: BorrowedFd,
    ) -> io::Result<()>;
    /// Detaches the mount whose root `mount` (an `O_PATH` descriptor) was opened on.
    fn detach(&self, mount: BorrowedFd) -> io::Result<()>;
    /// The mount table of this mount namespace, in mount order.
    fn table(&self) -> io::Result<Vec<Mount>>;
    /// Whether mounts are made the legacy way (bind, then remount).
    fn legacy(&self) -> bool;
}

/// The real kernel, through rustix (and `libc` for `mount_setattr`).
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    legacy: bool,
}

impl Kernel {
    /// The kernel with the new mount API; without it, the legacy way if `allow_legacy`.
    pub fn detect(allow_legacy: bool) -> Result<Kernel, KernelError> {
        // A bad descriptor: EBADF where the call exists, ENOSYS where it does not.
        let missing = mount_setattr(-1, MountAttrFlags::empty())
            .is_err_and(|e| e.raw_os_error() == Some(Errno::NOSYS.raw_os_error()));
        match (missing, allow_legacy) {
            (false, _) => Ok(Kernel { legacy: false }),
            (true, true) => Ok(Kernel { legacy: true }),
            (true, false) => Err(KernelError::NoMountSetattr {
                release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map_or_else(|_| "unknown release".into(), |r| r.trim().to_string()),
            }),
        }
    }
}

impl Mounts for Kernel {
    fn mount_read_only(
        &self,
        source: BorrowedFd,
        parent: BorrowedFd,
        name: &str,
        target: BorrowedFd,
    ) -> io::Result<()> {
        if self.legacy {
            return bind_then_remount(source, parent, name, target);
        }
        // A detached copy, sealed before anyone can see it, then attached: every copy
        // that propagation makes of it is born read-only, nosuid and nodev too.
        // The very directory resolved (the installed version), not a path resolved again.
        let tree = open_tree(
            source,
            "",
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_EMPTY_PATH,
        )?;
        mount_setattr(
            tree.as_raw_fd(),
            MountAttrFlags::MOUNT_ATTR_RDONLY
                | MountAttrFlags::MOUNT_ATTR_NOSUID
                | MountAttrFlags::MOUNT_ATTR_NODEV,
        )?;
        move_mount(
            &tree,
            "",
            target,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )?;
        Ok(())
    }

    fn detach(&self, mount: BorrowedFd) -> io::Result<()> {
        // Through the descriptor's magic link, never the path string; MNT_DETACH because
        // the open descriptor itself keeps the mount busy.
        unmount(fd_path(mount), UnmountFlags::DETACH)?;
        Ok(())
    }

    fn table(&self) -> io::Result<Vec<Mount>> {
        Ok(parse(&std::fs::read(MOUNTINFO)?))
    }

    fn legacy(&self) -> bool {
        self.legacy
    }
}

/// `struct mount_attr` of `mount_setattr(2)` (`MOUNT_ATTR_SIZE_VER0`, linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {attr_set: set})`. rustix 1.1 has `open_tree` and
/// `move_mount` but not this call, so it is the one raw system call here.
fn mount_setattr(fd: i32, set: MountAttrFlags) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: u64::from(set.bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a NUL-terminated empty string and `attr` a live `struct
    // mount_attr` whose size is passed along; the kernel only reads both during the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Flags of the bound mount that a remount must keep: in a user namespace the kernel
/// locks them, and a remount that drops one fails with `EPERM`.
const KEPT_FLAGS: [(StatVfsMountFlags, MountFlags); 4] = [
    (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
    (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
    (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
    (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
];

/// The legacy way (`--allow-legacy-mount`): a bind, then a read-only remount, which
/// reaches only this namespace's copy of the mount, not its propagated peers.
fn bind_then_remount(
    source: BorrowedFd,
    parent: BorrowedFd,
    name: &str,
    target: BorrowedFd,
) -> io::Result<()> {
    mount_bind(fd_path(source), fd_path(target))?;
    let mounted = crate::beneath::open_directory(parent, name)?;
    let remount = || -> io::Result<()> {
        let current = fstatvfs(&mounted)?.f_flag;
        let kept = KEPT_FLAGS
            .iter()
            .filter(|(have, _)| current.contains(*have))
            .fold(MountFlags::empty(), |flags, (_, keep)| flags | *keep);
        let flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
        mount_remount(fd_path(mounted.as_fd()), flags | kept, "")?;
        Ok(())
    };
    remount().inspect_err(|_| {
        // Never leave a writable bind of the agents behind.
        let _ = unmount(fd_path(mounted.as_fd()), UnmountFlags::DETACH);
    })
}

/// `/proc/self/fd/<n>`: the object `fd` holds, for calls that take only a path.
fn fd_path(fd: BorrowedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// What a directory descriptor is, from one `statx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// The device of its file system.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Its link count: 0 once the directory is deleted.
    pub nlink: u32,
    /// The mount it is on (`STATX_MNT_ID`).
    pub mount_id: u64,
}

/// The [`Node`] of `fd`; fails on a kernel that does not report mount IDs (before 5.8).
pub fn node_of(fd: BorrowedFd) -> io::Result<Node> {
    let stat = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?;
    if !StatxFlags::from_bits_retain(stat.stx_mask).contains(StatxFlags::MNT_ID) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "statx does not report STATX_MNT_ID (Linux 5.8+)",
        ));
    }
    Ok(Node {
        dev: makedev(stat.stx_dev_major, stat.stx_dev_minor),
        ino: stat.stx_ino,
        nlink: stat.stx_nlink,
        mount_id: stat.stx_mnt_id,
    })
}

/// The per-mount flags of the mount `fd` is on.
pub fn mount_flags(fd: BorrowedFd) -> io::Result<StatVfsMountFlags> {
    Ok(fstatvfs(fd)?.f_flag)
}

/// One line of the mount table, the fields that tell mounts apart; paths are bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the file system.
    pub device: Vec<u8>,
    /// The directory of that file system this mount shows (a bind mount's source).
    pub root: PathBuf,
    /// Where it is mounted.
    pub point: PathBuf,
    /// Mounted read-only (`ro` among the per-mount options).
    pub read_only: bool,
}

impl Mount {
    /// What `path` (at or below this mount's point) is on its file system: the device
    /// and the directory there, so that two mounts of the same directory compare equal
    /// without a `stat`, which could hang on another volume's dead network mount.
    pub fn source_of(&self, path: &Path) -> Option<(Vec<u8>, PathBuf)> {
        let below = path.strip_prefix(&self.point).ok()?;
        let root = if below.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(below)
        };
        Some((self.device.clone(), root))
    }
}

/// The mount `path` lies on: the last-mounted entry whose point is `path` or one of its ancestors.
pub fn mount_of<'a>(table: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    table
        .iter()
        .filter(|m| path.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
}

/// The entries of a `mountinfo` table, in order, with octal escapes decoded; bytes in,
/// bytes out, so a path that is not UTF-8 is kept as it is.
///
/// A line is `id parent major:minor root mount-point options …`; the kernel writes a
/// space, tab, newline or backslash in a path as `\ooo`.
pub fn parse(mountinfo: &[u8]) -> Vec<Mount> {
    mountinfo
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|b| *b == b' ').skip(2);
            let (device, root, point) = (fields.next()?, fields.next()?, fields.next()?);
            let options = fields.next()?;
            Some(Mount {
                device: device.to_vec(),
                root: unescape(root),
                point: unescape(point),
                read_only: options.split(|b| *b == b',').any(|option| option == b"ro"),
            })
        })
        .collect()
}

/// Decodes the kernel's `\ooo` escapes.
fn unescape(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&byte) = field.get(i) {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|digits| byte == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .map(|digits| digits.iter().fold(0u32, |n, d| n * 8 + u32::from(d - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        match octal {
            Some(decoded) => {
                out.push(decoded);
                i += 4;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn entries_are_unescaped_as_bytes_and_sources_resolved() {
        let table = parse(
            b"\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 8:2 / /var rw - ext4 /dev/sda2 rw
63 22 8:2 /odigos /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/odigos-agent/mount ro,nosuid,nodev - ext4 /dev/sda2 rw
64 22 0:5 / /mnt/with\\040space\\011tab\\134back rw - tmpfs tmpfs rw
65 22 0:5 / /mnt/not\\09octal rw - tmpfs tmpfs rw
66 22 0:6 / /mnt/caf\xe9\\040\xff rw - tmpfs tmpfs rw
short line
",
        );
        let points: Vec<&[u8]> = table
            .iter()
            .map(|m| m.point.as_os_str().as_bytes())
            .collect();
        let expected: [&[u8]; 6] = [
            b"/",
            b"/var",
            b"/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/odigos-agent/mount",
            b"/mnt/with space\ttab\\back",
            b"/mnt/not\\09octal",
            b"/mnt/caf\xe9 \xff",
        ];
        assert_eq!(points, expected);
        let read_only: Vec<bool> = table.iter().map(|m| m.read_only).collect();
        assert_eq!(read_only, [false, false, true, false, false, false]);
        // /var/odigos lies on /var (8:2), as the directory /odigos of that file system;
        // the published mount shows the same directory.
        let agents = mount_of(&table, Path::new("/var/odigos")).unwrap();
        assert_eq!(agents.point, Path::new("/var"));
        let source = agents.source_of(Path::new("/var/odigos"));
        assert_eq!(source, Some((b"8:2".to_vec(), PathBuf::from("/odigos"))));
        assert_eq!(table[2].source_of(&table[2].point), source);
        assert_eq!(
            mount_of(&table, Path::new("/etc")).unwrap().point,
            Path::new("/")
        );
        assert_eq!(table[1].source_of(Path::new("/etc")), None);
    }
}
