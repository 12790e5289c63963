//! The agents tree as a list of entries, and the pure rules it must meet before it is
//! installed (DESIGN §3c): modes normalised, and refused, naming the path, a setuid or
//! setgid file, a device, socket or FIFO, and a symlink that leaves the tree.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow before it counts as a loop (Linux's limit).
const MAX_LINK_HOPS: usize = 40;

/// What an entry of the tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Its length.
        size: u64,
    },
    /// A symbolic link with its target, as bytes.
    Symlink {
        /// What the link points to.
        target: PathBuf,
    },
    /// A device, socket or FIFO, which a tree of agents never holds.
    Special {
        /// Which of them, for the message.
        what: &'static str,
    },
}

/// One entry below the tree's root (the root itself is not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its path relative to the tree's root.
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// Its permission bits as found (`st_mode & 0o7777`).
    pub mode: u32,
}

impl Entry {
    /// The mode it is installed with: directories `0755`, files `0755` when any execute
    /// bit was set and `0644` otherwise (DESIGN §1); a symlink's own mode means nothing.
    pub fn installed_mode(&self) -> u32 {
        match self.kind {
            Kind::Dir => 0o755,
            Kind::File { .. } if self.mode & 0o111 != 0 => 0o755,
            Kind::File { .. } => 0o644,
            Kind::Symlink { .. } | Kind::Special { .. } => 0o777,
        }
    }
}

/// Why a tree is refused; each names the entry, relative to the tree's root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A setuid or setgid file: installed root-owned, it would run as root.
    #[error(
        "{path:?} has the {bit} bit (mode {mode:o}); the agents tree may hold no setuid or setgid file"
    )]
    SetId {
        /// The file.
        path: PathBuf,
        /// `setuid` or `setgid`.
        bit: &'static str,
        /// Its mode.
        mode: u32,
    },
    /// A device, socket or FIFO.
    #[error("{path:?} is a {what}; the agents tree may hold only directories, files and symlinks")]
    Special {
        /// The entry.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// A symlink whose target lies outside the tree (or loops).
    #[error(
        "symlink {path:?} -> {target:?} {why}; links in the agents tree must stay inside it (relative, resolved through the tree's other links)"
    )]
    EscapingLink {
        /// The link.
        path: PathBuf,
        /// Its target.
        target: PathBuf,
        /// How it leaves the tree.
        why: &'static str,
    },
}

/// Checks every entry; the first refusal in path order, or none.
pub fn check(entries: &[Entry]) -> Result<(), Refusal> {
    let links: HashMap<&Path, &Path> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::Symlink { target } => Some((e.path.as_path(), target.as_path())),
            _ => None,
        })
        .collect();
    for entry in entries {
        match &entry.kind {
            Kind::File { .. } if entry.mode & 0o4000 != 0 => {
                return Err(set_id(entry, "setuid"));
            }
            Kind::File { .. } if entry.mode & 0o2000 != 0 => {
                return Err(set_id(entry, "setgid"));
            }
            Kind::Special { what } => {
                return Err(Refusal::Special {
                    path: entry.path.clone(),
                    what,
                });
            }
            Kind::Symlink { target } => {
                if let Err(why) = stays_inside(&entry.path, target, &links) {
                    return Err(Refusal::EscapingLink {
                        path: entry.path.clone(),
                        target: target.clone(),
                        why,
                    });
                }
            }
            Kind::File { .. } | Kind::Dir => {}
        }
    }
    Ok(())
}

fn set_id(entry: &Entry, bit: &'static str) -> Refusal {
    Refusal::SetId {
        path: entry.path.clone(),
        bit,
        mode: entry.mode,
    }
}

/// Resolves the link at `link` (relative to the root) as the kernel would, following the
/// tree's other `links` at every step; `Err` says how it leaves the tree. A missing entry
/// on the way stops nothing (the kernel would answer `ENOENT` there, inside the tree).
fn stays_inside(
    link: &Path,
    target: &Path,
    links: &HashMap<&Path, &Path>,
) -> Result<(), &'static str> {
    // The directory being walked, and the components still to walk (front first).
    let mut at: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let mut pending: Vec<Component> = target.components().rev().collect();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute (it would resolve on the node, not in the tree)");
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return Err("climbs above the tree's root");
                }
            }
            Component::Normal(name) => {
                at.push(name);
                let here: PathBuf = at.iter().collect();
                if let Some(next) = links.get(here.as_path()) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err("loops (more than 40 links on the way)");
                    }
                    at.pop();
                    pending.extend(next.components().rev());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File { size: 1 },
            mode,
        }
    }
    fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Symlink {
                target: target.into(),
            },
            mode: 0o777,
        }
    }
    fn dir(path: &str, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Dir,
            mode,
        }
    }

    #[test]
    fn modes_are_normalised() {
        for (entry, want) in [
            (dir("d", 0o700), 0o755),
            (dir("d", 0o3777), 0o755), // setgid and sticky cleared
            (file("f", 0o600), 0o644),
            (file("f", 0o666), 0o644),
            (file("f", 0o700), 0o755),
            (file("f", 0o610), 0o755),
            (file("f", 0o001), 0o755),
            (link("l", "f"), 0o777),
        ] {
            assert_eq!(entry.installed_mode(), want, "{entry:?}");
        }
    }

    #[test]
    fn links_inside_pass_and_links_leaving_are_refused() {
        let base = [
            dir("java", 0o755),
            file("java/javaagent.jar", 0o644),
            dir("python", 0o755),
            dir("python/lib", 0o755),
            link("python/up", ".."),
            link("python/deep", "lib"),
        ];
        // (the link under test, whether it stays inside)
        let cases: [(Entry, Option<&str>); 12] = [
            (link("java/latest.jar", "javaagent.jar"), None),
            (link("java/sibling", "../python/lib"), None),
            (link("python/dangling", "lib/missing/file"), None),
            (link("python/via-up", "up/java/javaagent.jar"), None),
            (link("python/via-deep-up", "deep/../../java"), None),
            (link("abs", "/etc/passwd"), Some("absolute")),
            (link("java/abs-root", "/"), Some("absolute")),
            (link("out", ".."), Some("climbs")),
            (link("java/out", "../../etc"), Some("climbs")),
            // `up` is `python/..`, the root: one more `..` climbs out, which a lexical
            // reading of `python/up/..` (= `python`) would miss.
            (link("python/through-up", "up/../etc"), Some("climbs")),
            (
                link("python/through-deep", "deep/../../../x"),
                Some("climbs"),
            ),
            (link("loops", "loops/x"), Some("loops")),
        ];
        for (entry, refused) in cases {
            let mut entries = base.to_vec();
            entries.push(entry.clone());
            match (check(&entries), refused) {
                (Ok(()), None) => {}
                (Err(Refusal::EscapingLink { path, why, .. }), Some(word))
                    if path == entry.path && why.contains(word) => {}
                (got, want) => panic!("{entry:?}: got {got:?}, want refusal {want:?}"),
            }
        }
    }

    #[test]
    fn set_id_files_and_special_files_are_refused_by_name() {
        let special = Entry {
            path: "python/fifo".into(),
            kind: Kind::Special { what: "FIFO" },
            mode: 0o644,
        };
        let cases = [
            (file("java/x", 0o4755), "setuid"),
            (file("java/x", 0o2755), "setgid"),
            (special, "FIFO"),
        ];
        for (entry, word) in cases {
            let refused = check(&[dir("java", 0o755), entry.clone()]).unwrap_err();
            let message = refused.to_string();
            assert!(
                message.contains(word) && message.contains(&*entry.path.to_string_lossy()),
                "{message}"
            );
        }
        // A setgid directory is not refused: its bit is cleared at install.
        assert_eq!(check(&[dir("java", 0o2755)]), Ok(()));
    }
}
