//! What the installer finds in `<root>` and what it does about it, decided without I/O:
//! which names are its own (`.lock`, `versions/<digest>`, `current`, the temporary names a
//! crash may leave), which are someone else's (then nothing is changed), and the steps of
//! an install.
//!
//! `<root>` holds `.lock`, `versions/` and `current` (a symlink to `versions/<digest>`),
//! and for a moment `.current-<pid>` (the new link, before it is renamed over `current`).
//! `versions/` holds `<digest>` directories, `.tmp-<digest>-<pid>` (a copy under way) and
//! `.gone-<digest>-<pid>` (a version being deleted).

use super::digest::Digest;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The lock file in `<root>`.
pub const LOCK: &str = ".lock";
/// The directory of versions in `<root>`.
pub const VERSIONS: &str = "versions";
/// The symlink to the installed version.
pub const CURRENT: &str = "current";
/// Prefix of the new symlink before it replaces `current`.
pub const NEW_LINK: &str = ".current-";
/// Prefix of a version being copied.
pub const TMP: &str = ".tmp-";
/// Prefix of a version being deleted.
pub const GONE: &str = ".gone-";

/// What an entry of `<root>` or `versions/` is, as far as the installer cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A directory, and whether it is empty.
    Dir {
        /// No entries.
        empty: bool,
    },
    /// A symlink and its target.
    Symlink(PathBuf),
    /// A regular file.
    File,
    /// Anything else.
    Other,
}

/// A directory's entries by name.
pub type Listing = Vec<(OsString, Seen)>;

/// What `current` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Current {
    /// Not there: nothing installed yet.
    Missing,
    /// Our symlink to a version.
    Version(Digest),
    /// An empty directory, which a container runtime makes for a missing hostPath source.
    EmptyDir,
}

/// `<root>` as the installer reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// What `current` is.
    pub current: Current,
    /// The complete versions, in name order.
    pub versions: Vec<Digest>,
    /// What crashes left, relative to `<root>`: removed under the lock.
    pub leftovers: Vec<PathBuf>,
}

/// Names in `<root>` the installer did not make; nothing is changed while they are there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{root} holds files agent-mount did not make: {}; move them away (or choose another --root), the installer changes nothing while they are there",
    .names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
)]
pub struct Foreign {
    /// The root, for the message.
    pub root: PathBuf,
    /// The foreign names, relative to the root.
    pub names: Vec<PathBuf>,
}

/// Reads the listings of `<root>` and of `versions/` (empty when it is missing).
pub fn read(
    root: &Path,
    top: &[(OsString, Seen)],
    versions: &[(OsString, Seen)],
) -> Result<Layout, Foreign> {
    let mut layout = Layout {
        current: Current::Missing,
        versions: Vec::new(),
        leftovers: Vec::new(),
    };
    let mut foreign = Vec::new();
    for (name, seen) in top {
        let bytes = name.as_bytes();
        match (bytes, seen) {
            (b".lock", Seen::File) | (b"versions", Seen::Dir { .. }) => {}
            (b"current", Seen::Dir { empty: true }) => layout.current = Current::EmptyDir,
            (b"current", Seen::Symlink(target)) => match version_link(target) {
                Some(digest) => layout.current = Current::Version(digest),
                None => foreign.push(PathBuf::from(name)),
            },
            (_, Seen::Symlink(_)) if pid_suffix(bytes, NEW_LINK).is_some() => {
                layout.leftovers.push(PathBuf::from(name));
            }
            _ => foreign.push(PathBuf::from(name)),
        }
    }
    for (name, seen) in versions {
        let bytes = name.as_bytes();
        let path = Path::new(VERSIONS).join(name);
        match seen {
            Seen::Dir { .. } => match Digest::parse(bytes) {
                Some(digest) => layout.versions.push(digest),
                None if [TMP, GONE].iter().any(|p| temporary(bytes, p)) => {
                    layout.leftovers.push(path)
                }
                None => foreign.push(path),
            },
            _ => foreign.push(path),
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        return Err(Foreign {
            root: root.to_path_buf(),
            names: foreign,
        });
    }
    layout.versions.sort();
    layout.leftovers.sort();
    Ok(layout)
}

/// The digest a `current` target names, if it is exactly `versions/<digest>`.
pub fn version_link(target: &Path) -> Option<Digest> {
    let rest = target.as_os_str().as_bytes().strip_prefix(b"versions/")?;
    Digest::parse(rest)
}

/// The target `current` gets for `digest`: relative, so it resolves wherever `<root>` is mounted.
pub fn link_target(digest: &Digest) -> PathBuf {
    Path::new(VERSIONS).join(digest.as_str())
}

/// `<prefix><digest>-<pid>`, the exact temporary names in `versions/`.
pub fn temporary_name(prefix: &str, digest: &Digest, pid: u32) -> OsString {
    OsString::from(format!("{prefix}{digest}-{pid}"))
}

/// Whether `name` is `<prefix><digest>-<pid>`.
fn temporary(name: &[u8], prefix: &str) -> bool {
    name.strip_prefix(prefix.as_bytes())
        .and_then(|rest| rest.split_at_checked(super::digest::HEX_LEN))
        .is_some_and(|(digest, pid)| {
            Digest::parse(digest).is_some() && pid_suffix(pid, "-").is_some()
        })
}

/// The pid after `prefix`, if `name` is `<prefix><digits>`.
fn pid_suffix(name: &[u8], prefix: &str) -> Option<u32> {
    let digits = name.strip_prefix(prefix.as_bytes())?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    OsStr::from_bytes(digits).to_str()?.parse().ok()
}

/// The steps of one install, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Crash leftovers to remove first.
    pub leftovers: Vec<PathBuf>,
    /// Whether the tree must be copied (no complete version of it yet).
    pub copy: bool,
    /// How `current` is switched, if it does not already point at the version.
    pub switch: Option<Switch>,
}

/// How `current` comes to point at the new version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Switch {
    /// Rename the new link over what is there (nothing, or our link to `replaced`).
    Link {
        /// The version that stops being current, whose replacement time is recorded.
        replaced: Option<Digest>,
    },
    /// Replace the empty directory: the rename finds it (EISDIR), it is removed, and the
    /// rename tried again (again if something recreates it).
    ReplaceEmptyDir,
}

/// The install of `digest` into `layout`.
pub fn plan(layout: &Layout, digest: &Digest) -> Plan {
    let switch = match &layout.current {
        Current::Version(current) if current == digest => None,
        Current::Version(current) => Some(Switch::Link {
            replaced: Some(current.clone()),
        }),
        Current::Missing => Some(Switch::Link { replaced: None }),
        Current::EmptyDir => Some(Switch::ReplaceEmptyDir),
    };
    Plan {
        leftovers: layout.leftovers.clone(),
        copy: !layout.versions.contains(digest),
        switch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: char) -> String {
        c.to_string().repeat(64)
    }
    fn digest(c: char) -> Digest {
        Digest::parse(hex(c).as_bytes()).unwrap()
    }
    fn entry(name: &str, seen: Seen) -> (OsString, Seen) {
        (name.into(), seen)
    }
    fn link(target: &str) -> Seen {
        Seen::Symlink(target.into())
    }
    const DIR: Seen = Seen::Dir { empty: false };
    const EMPTY: Seen = Seen::Dir { empty: true };

    #[test]
    fn our_names_are_read_and_leftovers_found() {
        let top = [
            entry(".lock", Seen::File),
            entry("versions", DIR),
            entry("current", link(&format!("versions/{}", hex('a')))),
            entry(".current-77", link("versions/x")),
        ];
        let versions = [
            entry(&hex('b'), DIR),
            entry(&hex('a'), DIR),
            entry(&format!(".tmp-{}-12", hex('c')), DIR),
            entry(&format!(".gone-{}-9", hex('d')), DIR),
        ];
        let layout = read(Path::new("/r"), &top, &versions).unwrap();
        assert_eq!(layout.current, Current::Version(digest('a')));
        assert_eq!(layout.versions, [digest('a'), digest('b')]);
        assert_eq!(
            layout.leftovers,
            [
                PathBuf::from(".current-77"),
                PathBuf::from(format!("versions/.gone-{}-9", hex('d'))),
                PathBuf::from(format!("versions/.tmp-{}-12", hex('c'))),
            ]
        );
        // An empty root, and an empty directory at `current`.
        let fresh = read(Path::new("/r"), &[], &[]).unwrap();
        assert_eq!(fresh.current, Current::Missing);
        let runtime_made = read(Path::new("/r"), &[entry("current", EMPTY)], &[]).unwrap();
        assert_eq!(runtime_made.current, Current::EmptyDir);
    }

    #[test]
    fn foreign_names_are_all_named_and_nothing_is_planned() {
        let top = [
            entry("current", DIR), // not empty: someone's files
            entry("notes.txt", Seen::File),
            entry("versions", DIR),
            entry(".lock", DIR),
            entry(".current-x", link("versions/x")),
        ];
        let versions = [
            entry(&hex('a'), DIR),
            entry(&hex('a').to_uppercase(), DIR),
            entry(&hex('b'), Seen::File),
            entry(&format!(".tmp-{}-", hex('c')), DIR),
            entry(".tmp-abc-1", DIR),
        ];
        let refused = read(Path::new("/r"), &top, &versions).unwrap_err();
        let names: Vec<String> = refused
            .names
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                ".current-x".to_string(),
                ".lock".into(),
                "current".into(),
                "notes.txt".into(),
                "versions/.tmp-abc-1".into(),
                format!("versions/.tmp-{}-", hex('c')),
                format!("versions/{}", hex('A')),
                format!("versions/{}", hex('b')),
            ]
        );
        assert!(refused.to_string().contains("\"notes.txt\""), "{refused}");
        // `current` pointing anywhere but one of our versions is someone else's too.
        for target in ["/var/odigos", "versions/abc", "../versions/x", "versions/"] {
            let top = [entry("current", link(target))];
            assert!(read(Path::new("/r"), &top, &[]).is_err(), "{target}");
        }
    }

    #[test]
    fn plans() {
        let layout = |current, versions: &[Digest]| Layout {
            current,
            versions: versions.to_vec(),
            leftovers: vec![PathBuf::from(".current-1")],
        };
        let (a, b) = (digest('a'), digest('b'));
        let cases = [
            // (current, versions, the install of `a`: copy, switch)
            (
                Current::Missing,
                vec![],
                true,
                Some(Switch::Link { replaced: None }),
            ),
            (
                Current::EmptyDir,
                vec![],
                true,
                Some(Switch::ReplaceEmptyDir),
            ),
            (Current::Version(a.clone()), vec![a.clone()], false, None),
            (
                Current::Version(b.clone()),
                vec![b.clone()],
                true,
                Some(Switch::Link {
                    replaced: Some(b.clone()),
                }),
            ),
            // `a` complete but not current (a crash after its rename): switch only.
            (
                Current::Version(b.clone()),
                vec![a.clone(), b.clone()],
                false,
                Some(Switch::Link {
                    replaced: Some(b.clone()),
                }),
            ),
        ];
        for (current, versions, copy, switch) in cases {
            let plan = plan(&layout(current.clone(), &versions), &a);
            assert_eq!(
                plan,
                Plan {
                    leftovers: vec![PathBuf::from(".current-1")],
                    copy,
                    switch
                },
                "{current:?} {versions:?}"
            );
        }
    }
}
