//! `agent-mount-node agents install|gc` (DESIGN §3c): the agents tree installed into
//! `<root>/versions/<digest>`, `<root>/current` switched to it with one `rename(2)`, and old
//! versions collected once no mount on the node uses them.
//!
//! Pure decisions: [`tree`] (modes, refusals), [`digest`] (the version's name), [`layout`]
//! (our names in `<root>`, the install plan), [`gc`] (which versions go). I/O: [`source`]
//! (reading the tree), [`store`] (the lock, copy, switch, removal), [`gc`]'s [`gc::usage`]
//! (the mount tables), [`report`] (metrics and the manifest), [`label`] (the node's label
//! through the API server).

pub mod config;
pub mod digest;
pub mod gc;
pub mod label;
pub mod layout;
pub mod report;
pub mod run;
pub mod source;
pub mod store;
pub mod tree;

use digest::Digest;
use gc::{Candidate, Verdict};
use layout::{Current, Foreign, Layout};
use source::Source;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use store::{Copied, Fault, Store};
use tree::Refusal;

/// Where the mount tables of every process are read.
const PROC: &str = "/proc";

/// Why an install or a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The tree breaks a rule; nothing was changed.
    #[error("refused to install {from}: {refusal}; nothing was changed")]
    Refused {
        /// The tree.
        from: PathBuf,
        /// The rule and the entry.
        #[source]
        refusal: Refusal,
    },
    /// `<root>` holds someone else's files; nothing was changed.
    #[error(transparent)]
    Foreign(#[from] Foreign),
    /// The node could not be labelled (the version is installed).
    #[error(transparent)]
    Label(#[from] label::LabelError),
    /// A file system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Adds what was being done to an I/O error.
trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, InstallError>;
}

impl<T> Doing<T> for io::Result<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, InstallError> {
        self.map_err(|source| InstallError::Io {
            what: what(),
            source,
        })
    }
}

/// What an install did.
#[derive(Debug)]
pub struct Installed {
    /// The installed version.
    pub digest: Digest,
    /// What was copied: `None` when the version was already there.
    pub copied: Option<Copied>,
    /// Whether `current` was switched (false when it already pointed at the version).
    pub switched: bool,
    /// The collection that followed.
    pub collection: Collection,
    /// How long the install took, collection included.
    pub took: Duration,
}

/// What a collection found and did.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    /// Every version with its verdict and the mounts that show it.
    pub versions: Vec<(Digest, Verdict, usize)>,
    /// The version `current` points at.
    pub current: Option<Digest>,
    /// Crash leftovers removed.
    pub leftovers: Vec<PathBuf>,
}

/// Installs the tree at `from` into `root`, then collects old versions.
pub fn install(
    from: &Path,
    root: &Path,
    grace: Duration,
    fault: &mut Fault,
) -> Result<Installed, InstallError> {
    let started = Instant::now();
    let source = Source::scan(from).doing(|| format!("read the tree {}", from.display()))?;
    tree::check(&source.entries).map_err(|refusal| InstallError::Refused {
        from: from.to_path_buf(),
        refusal,
    })?;
    let digest = source
        .digest()
        .doing(|| format!("read the tree {}", from.display()))?;
    let store = Store::open(root).doing(|| format!("open the root {}", root.display()))?;
    check_before_locking(&store)?;
    let _lock = store.lock().doing(|| format!("lock {}", root.display()))?;
    let layout = read_layout(&store)?;
    let plan = layout::plan(&layout, &digest);
    let leftovers = remove_leftovers(&store, &plan.leftovers)?;
    let copied = if plan.copy {
        let copied = store.copy(&source, &digest, fault).doing(|| {
            format!(
                "copy {} into {}",
                from.display(),
                root.join(layout::VERSIONS).display()
            )
        })?;
        Some(copied)
    } else {
        None
    };
    if let Some(how) = &plan.switch {
        store.switch(&digest, how, fault).doing(|| {
            format!(
                "point {} at version {}",
                root.join(layout::CURRENT).display(),
                digest.short()
            )
        })?;
    }
    let layout = read_layout(&store)?;
    let mut collection = collect(&store, &layout, grace)?;
    collection.leftovers = leftovers;
    Ok(Installed {
        digest,
        copied,
        switched: plan.switch.is_some(),
        collection,
        took: started.elapsed(),
    })
}

/// Collects, under the lock, the versions of `root` that nothing uses any more, and what
/// crashes left.
pub fn collect_garbage(root: &Path, grace: Duration) -> Result<Collection, InstallError> {
    let store = Store::open(root).doing(|| format!("open the root {}", root.display()))?;
    check_before_locking(&store)?;
    let _lock = store.lock().doing(|| format!("lock {}", root.display()))?;
    let layout = read_layout(&store)?;
    let leftovers = remove_leftovers(&store, &layout.leftovers)?;
    let mut collection = collect(&store, &layout, grace)?;
    collection.leftovers = leftovers;
    Ok(collection)
}

/// Reads the root once before locking, so that a root with someone else's files gets not
/// even a lock file. Unlocked, the listing races with a run that holds the lock and renames
/// its temporary entries away (an entry gone between `readdir` and `statat`): such a root
/// is being changed by one of ours, so the run goes on to wait for the lock, and the read
/// under the lock decides.
fn check_before_locking(store: &Store) -> Result<(), InstallError> {
    match store.listings() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        listed => {
            let (top, versions) = listed.doing(|| format!("list {}", store.path.display()))?;
            layout::read(&store.path, &top, &versions)?;
            Ok(())
        }
    }
}

fn read_layout(store: &Store) -> Result<Layout, InstallError> {
    let (top, versions) = store
        .listings()
        .doing(|| format!("list {}", store.path.display()))?;
    Ok(layout::read(&store.path, &top, &versions)?)
}

fn remove_leftovers(store: &Store, leftovers: &[PathBuf]) -> Result<Vec<PathBuf>, InstallError> {
    for leftover in leftovers {
        store.remove(leftover).doing(|| {
            format!(
                "remove what a crash left, {}",
                store.path.join(leftover).display()
            )
        })?;
        tracing::info!(path = %store.path.join(leftover).display(), "removed what an interrupted run left");
    }
    Ok(leftovers.to_vec())
}

/// Decides on every version and removes those that may go.
fn collect(store: &Store, layout: &Layout, grace: Duration) -> Result<Collection, InstallError> {
    let current = match &layout.current {
        Current::Version(digest) => Some(digest.clone()),
        Current::Missing | Current::EmptyDir => None,
    };
    let mut collection = Collection {
        current: current.clone(),
        ..Collection::default()
    };
    if layout.versions.is_empty() {
        return Ok(collection);
    }
    let versions_path = store.path.join(layout::VERSIONS);
    let device = store
        .versions_device()
        .doing(|| format!("stat {}", versions_path.display()))?;
    let identity = gc::identity(&versions_path, device)
        .doing(|| format!("find {} in the mount table", versions_path.display()))?;
    let usage = gc::usage(Path::new(PROC), &identity, &layout.versions)
        .doing(|| "read the mount tables of the node's processes".to_string())?;
    let mut candidates = Vec::new();
    for digest in &layout.versions {
        candidates.push(Candidate {
            digest: digest.clone(),
            replaced_ago: store
                .replaced_ago(digest)
                .doing(|| format!("stat version {digest}"))?,
            mounts: usage.get(digest).copied().unwrap_or(0),
        });
    }
    for ((digest, verdict), candidate) in gc::decide(&candidates, current.as_ref(), grace)
        .into_iter()
        .zip(&candidates)
    {
        if verdict == Verdict::Collect {
            store
                .collect(&digest)
                .doing(|| format!("remove version {digest}"))?;
        }
        collection
            .versions
            .push((digest, verdict, candidate.mounts));
    }
    Ok(collection)
}
