//! Which old versions may go (DESIGN §3c): a version other than `current` is collected only
//! when no mount on the node shows it or anything below it, and when it was replaced more
//! than the grace ago. [`decide`] is the pure decision; [`usage`] counts the mounts.
//!
//! A mount's root in `/proc/<pid>/mountinfo` is relative to its file system, so a version is
//! identified by its file system's `major:minor` and its directory there, which the
//! installer reads from its own mount table ([`identity`]); other processes' mount points,
//! and path strings as the installer sees them, are never compared.

use super::digest::Digest;
use crate::csi::mounts::{self, Mount};
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the collector knows of one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The version.
    pub digest: Digest,
    /// How long ago it stopped being current (or was written, if it never was).
    pub replaced_ago: Duration,
    /// How many mounts on the node show it or something below it.
    pub mounts: usize,
}

/// What happens to a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It is `current`.
    Current,
    /// Mounts still show it.
    InUse(usize),
    /// Replaced less than the grace ago: a kubelet may have resolved `current` just before
    /// the switch and not mounted yet.
    Grace(Duration),
    /// Renamed out of `versions/`, then deleted.
    Collect,
}

impl Verdict {
    /// The reason as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Current => "current",
            Verdict::InUse(_) => "in-use",
            Verdict::Grace(_) => "grace",
            Verdict::Collect => "collected",
        }
    }
}

/// The verdict on every candidate, in their order.
pub fn decide(
    candidates: &[Candidate],
    current: Option<&Digest>,
    grace: Duration,
) -> Vec<(Digest, Verdict)> {
    candidates
        .iter()
        .map(|c| {
            let verdict = if Some(&c.digest) == current {
                Verdict::Current
            } else if c.mounts > 0 {
                Verdict::InUse(c.mounts)
            } else if c.replaced_ago < grace {
                Verdict::Grace(grace.saturating_sub(c.replaced_ago))
            } else {
                Verdict::Collect
            };
            (c.digest.clone(), verdict)
        })
        .collect()
}

/// A directory as mounts see it: its file system and its path there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `major:minor`, as mountinfo spells it.
    pub device: Vec<u8>,
    /// The directory relative to the root of its file system.
    pub root: PathBuf,
}

/// The identity of `versions` (a path in this process's namespace) from this process's
/// own mount table; `device` (from `statx`) must match, else a mount hides it.
pub fn identity(versions: &Path, device: (u32, u32)) -> io::Result<Identity> {
    let path = std::fs::canonicalize(versions)?;
    let table = mounts::parse(&std::fs::read("/proc/self/mountinfo")?);
    let (found, root) = mounts::mount_of(&table, &path)
        .and_then(|mount| mount.source_of(&path))
        .ok_or_else(|| {
            io::Error::other(format!(
                "{} is on no mount of /proc/self/mountinfo",
                path.display()
            ))
        })?;
    let expected = format!("{}:{}", device.0, device.1).into_bytes();
    if found != expected {
        return Err(io::Error::other(format!(
            "{}: the mount table says device {}, statx says {}; is something mounted over it?",
            path.display(),
            String::from_utf8_lossy(&found),
            String::from_utf8_lossy(&expected)
        )));
    }
    Ok(Identity {
        device: found,
        root,
    })
}

/// How many mounts show each version (or something below it), over the mount tables of
/// every process under `proc` (`/proc`), each mount namespace counted once.
///
/// Namespaces are told apart by their tables' bytes (mount IDs are unique on the node, so
/// two namespaces never print the same table): `/proc/<pid>/ns/mnt` is not readable for
/// every process even by root, `mountinfo` is.
pub fn usage(
    proc: &Path,
    versions: &Identity,
    digests: &[Digest],
) -> io::Result<BTreeMap<Digest, usize>> {
    let mut counts: BTreeMap<Digest, usize> = digests.iter().map(|d| (d.clone(), 0)).collect();
    let seen_state = RandomState::new();
    let mut tables = HashSet::new();
    for entry in std::fs::read_dir(proc)? {
        let entry = entry?;
        if !entry
            .file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            continue;
        }
        let path = entry.path().join("mountinfo");
        let table = match std::fs::read(&path) {
            Ok(table) => table,
            // The process exited while it was read (EINVAL: a zombie has no namespace left): its mounts went with it, or live on
            // in another process of its namespace, which is read too.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ESRCH | libc::EINVAL)
                ) =>
            {
                continue;
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        if tables.insert(seen_state.hash_one(&table)) {
            count(&mounts::parse(&table), versions, &mut counts);
        }
    }
    Ok(counts)
}

/// Adds the mounts of `table` that show a version or something below it.
fn count(table: &[Mount], versions: &Identity, counts: &mut BTreeMap<Digest, usize>) {
    for mount in table.iter().filter(|m| m.device == versions.device) {
        let Ok(below) = mount.root.strip_prefix(&versions.root) else {
            continue;
        };
        let Some(name) = below.iter().next() else {
            continue; // `versions/` itself or above: the plugins' mounts of `<root>`
        };
        if let Some(n) = Digest::parse(name.as_encoded_bytes()).and_then(|d| counts.get_mut(&d)) {
            *n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::parse(c.to_string().repeat(64).as_bytes()).unwrap()
    }

    #[test]
    fn only_unused_versions_past_the_grace_that_are_not_current_go() {
        let grace = Duration::from_secs(600);
        let candidate = |c, ago, mounts| Candidate {
            digest: digest(c),
            replaced_ago: Duration::from_secs(ago),
            mounts,
        };
        let candidates = [
            candidate('a', 10_000, 0), // current, however old and unused
            candidate('b', 10_000, 3),
            candidate('c', 60, 0),
            candidate('d', 600, 0),
            candidate('e', 10_000, 0),
        ];
        let verdicts = decide(&candidates, Some(&digest('a')), grace);
        assert_eq!(
            verdicts,
            [
                (digest('a'), Verdict::Current),
                (digest('b'), Verdict::InUse(3)),
                (digest('c'), Verdict::Grace(Duration::from_secs(540))),
                (digest('d'), Verdict::Collect),
                (digest('e'), Verdict::Collect),
            ]
        );
        // A zero grace (the tests') collects at once; nothing current collects everything unused.
        let verdicts = decide(&candidates[2..3], None, Duration::ZERO);
        assert_eq!(verdicts, [(digest('c'), Verdict::Collect)]);
    }

    #[test]
    fn mounts_at_or_below_a_version_count_on_its_device_only() {
        let versions = Identity {
            device: b"8:1".to_vec(),
            root: "/var/lib/agent-mount/agents/versions".into(),
        };
        let a = format!("/var/lib/agent-mount/agents/versions/{}", digest('a'));
        let mount = |device: &str, root: &str| Mount {
            device: device.as_bytes().to_vec(),
            root: root.into(),
            point: "/anywhere".into(),
            read_only: true,
        };
        let table = [
            mount("8:1", &a),                            // a bind of current
            mount("8:1", &format!("{a}/java")),          // a subPath mount
            mount("8:2", &a),                            // the same path, another disk
            mount("8:1", "/var/lib/agent-mount/agents"), // a plugin's mount of <root>
            mount("8:1", "/var/lib/agent-mount/agents/versions"),
            mount("8:1", &format!("{a}x")), // not a digest
            mount("8:1", "/"),
        ];
        let mut counts: BTreeMap<Digest, usize> =
            [(digest('a'), 0), (digest('b'), 0)].into_iter().collect();
        count(&table, &versions, &mut counts);
        assert_eq!(
            counts,
            [(digest('a'), 2), (digest('b'), 0)].into_iter().collect()
        );
    }
}
