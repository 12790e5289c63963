//! The kernel side of a volume, behind a small interface: a read-only bind mount, an
//! unmount, and the mount table (`/proc/self/mountinfo`). [`super::volumes`] decides
//! what to do; this module only does it, so the decisions are tested apart from the kernel.

use rustix::fs::{StatVfsMountFlags, statvfs};
use rustix::mount::{MountFlags, UnmountFlags, mount_bind, mount_remount, unmount};
use std::io;
use std::path::{Path, PathBuf};

/// The mount table of this process's mount namespace.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Mount operations on the node.
pub trait Mounts: Send + Sync + 'static {
    /// Bind-mounts `source` at `target`, read-only, `nosuid` and `nodev`; on failure nothing stays mounted.
    fn bind_read_only(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Unmounts the top mount at `target`, never following a symlink there.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// The mount table of this mount namespace, in mount order.
    fn table(&self) -> io::Result<Vec<Mount>>;
}

/// One line of the mount table, the fields that tell mounts apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the file system.
    pub device: String,
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
    pub fn source_of(&self, path: &Path) -> Option<(String, PathBuf)> {
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

/// The real kernel, through rustix.
#[derive(Clone, Copy, Debug, Default)]
pub struct Kernel;

/// Flags of the bound mount that a remount must keep: in a user namespace the kernel
/// locks them, and a remount that drops one fails with `EPERM`.
const KEPT_FLAGS: [(StatVfsMountFlags, MountFlags); 4] = [
    (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
    (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
    (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
    (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
];

impl Mounts for Kernel {
    fn bind_read_only(&self, source: &Path, target: &Path) -> io::Result<()> {
        mount_bind(source, target)?;
        // A bind mount ignores MS_RDONLY at creation: read-only takes a second, remount step.
        let remount = || -> io::Result<()> {
            let current = statvfs(target)?.f_flag;
            let kept = KEPT_FLAGS
                .iter()
                .filter(|(have, _)| current.contains(*have))
                .fold(MountFlags::empty(), |flags, (_, keep)| flags | *keep);
            let flags =
                MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
            mount_remount(target, flags | kept, "")?;
            Ok(())
        };
        remount().inspect_err(|_| {
            // Never leave a writable bind of the agents behind.
            let _ = unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
        })
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        unmount(target, UnmountFlags::NOFOLLOW)?;
        Ok(())
    }

    fn table(&self) -> io::Result<Vec<Mount>> {
        Ok(parse(&std::fs::read_to_string(MOUNTINFO)?))
    }
}

/// The entries of a `mountinfo` table, in order, with octal escapes decoded.
///
/// A line is `id parent major:minor root mount-point options …`; the kernel writes a
/// space, tab, newline or backslash in a path as `\ooo`.
pub fn parse(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ').skip(2);
            let (device, root, point) = (fields.next()?, fields.next()?, fields.next()?);
            let options = fields.next()?;
            Some(Mount {
                device: device.to_string(),
                root: PathBuf::from(unescape(root)),
                point: PathBuf::from(unescape(point)),
                read_only: options.split(',').any(|option| option == "ro"),
            })
        })
        .collect()
}

/// Decodes the kernel's `\ooo` escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes.get(i) == Some(&b'\\'))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.extend(bytes.get(i));
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_unescaped_and_sources_resolved() {
        let table = parse(
            "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 8:2 / /var rw - ext4 /dev/sda2 rw
63 22 8:2 /odigos /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/odigos-agent/mount ro,nosuid,nodev - ext4 /dev/sda2 rw
64 22 0:5 / /mnt/with\\040space\\011tab\\134back rw - tmpfs tmpfs rw
65 22 0:5 / /mnt/not\\09octal rw - tmpfs tmpfs rw
short line
",
        );
        let points: Vec<&Path> = table.iter().map(|m| m.point.as_path()).collect();
        let expected = [
            "/",
            "/var",
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/odigos-agent/mount",
            "/mnt/with space\ttab\\back",
            "/mnt/not\\09octal",
        ];
        assert_eq!(points, expected.map(Path::new));
        let read_only: Vec<bool> = table.iter().map(|m| m.read_only).collect();
        assert_eq!(read_only, [false, false, true, false, false]);
        // /var/odigos lies on /var (8:2), as the directory /odigos of that file system;
        // the published mount shows the same directory.
        let agents = mount_of(&table, Path::new("/var/odigos")).unwrap();
        assert_eq!(agents.point, Path::new("/var"));
        let source = agents.source_of(Path::new("/var/odigos"));
        assert_eq!(source, Some(("8:2".to_string(), PathBuf::from("/odigos"))));
        assert_eq!(table[2].source_of(&table[2].point), source);
        assert_eq!(
            mount_of(&table, Path::new("/etc")).unwrap().point,
            Path::new("/")
        );
        assert_eq!(table[1].source_of(Path::new("/etc")), None);
    }
}
