//! Agents installer benchmark (issue 23): install time and bytes copied for a tree shaped
//! like the agents tree (a 20 MiB jar, 2,000 Python files, 4,000 Node.js files), first and
//! again with the same tree; and the time of one collection on a node with 4,000 mounts
//! and 200 processes (50 of them in mount namespaces of their own, each with a copy of the
//! 4,000 mounts). Mounts are made in private mount namespaces (root needed, as for
//! tests/agents.rs); prints the figures and writes the agents section of BENCHMARKS.md.
// Test and bench code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/measure.rs"]
mod measure;
#[path = "../tests/support/namespace.rs"]
mod namespace;

use agent_mount_node::install::store::Fault;
use agent_mount_node::install::{collect_garbage, install};
use measure::{mib, ms, percentile, run_bench};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Installs measured, each into a fresh root.
const ROUNDS: usize = 3;
/// Collections measured.
const COLLECTIONS: usize = 20;
/// Mounts on the busy node.
const MOUNTS: usize = 4000;
/// Processes on the busy node, and how many of them have a mount namespace of their own.
const PROCESSES: usize = 200;
const OWN_NAMESPACES: usize = 50;

/// Writes the tree: `java/javaagent.jar`, `python/` and `nodejs-community/` in many small files.
fn agents_tree(dir: &Path) -> (u64, usize) {
    let mut bytes = 0u64;
    let mut files = 0;
    let mut write = |path: &Path, len: usize, seed: usize| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let content: Vec<u8> = (0..len).map(|i| (i * 7 + seed) as u8).collect();
        std::fs::write(path, content).unwrap();
        bytes += len as u64;
        files += 1;
    };
    write(&dir.join("java/javaagent.jar"), 20 << 20, 1);
    for i in 0..2000 {
        let path = dir.join(format!("python/pkg{}/module{i}.py", i / 20));
        write(&path, 12 << 10, i);
    }
    for i in 0..4000 {
        let path = dir.join(format!("nodejs-community/node_modules/m{}/f{i}.js", i / 10));
        write(&path, 4 << 10, i);
    }
    (bytes, files)
}

/// A process in a private mount namespace with `MOUNTS` tmpfs mounts and a bind mount of
/// `current` (so one old version stays in use), sleeping.
fn busy_namespace(dir: &Path, current: &Path) -> Child {
    namespace::spawn(&format!(
        "for i in $(seq {MOUNTS}); do mkdir -p {d}/$i && mount -t tmpfs -o size=4k t {d}/$i || exit 1; done; \
         mkdir -p {d}/pin && mount --bind {c} {d}/pin",
        d = dir.display(),
        c = current.display()
    ))
}

fn main() {
    run_bench(
        "agents",
        "cargo bench -p agent-mount-node --bench agents",
        " (release build, as root: real files; mounts in private mount namespaces)",
        async |out: &mut String| {
            let dir = tempfile::tempdir().unwrap();
            let tree = dir.path().join("tree");
            let (tree_bytes, tree_files) = agents_tree(&tree);
            let mut first = Vec::new();
            let mut again = Vec::new();
            let mut copied = 0;
            for round in 0..ROUNDS {
                let root = dir.path().join(format!("root-{round}"));
                let started = Instant::now();
                let done = install(&tree, &root, Duration::ZERO, &mut Fault::new(None)).unwrap();
                first.push(started.elapsed());
                copied = done.copied.unwrap().bytes;
                let started = Instant::now();
                let done = install(&tree, &root, Duration::ZERO, &mut Fault::new(None)).unwrap();
                again.push(started.elapsed());
                assert!(done.copied.is_none());
            }
            first.sort();
            again.sort();
            writeln!(out, "| install | figure |\n|---|---|").unwrap();
            writeln!(
                out,
                "| the tree | {tree_files} files, {} |",
                mib(tree_bytes / 1024)
            )
            .unwrap();
            writeln!(
                out,
                "| first install (copy, syncfs, rename, switch), median of {ROUNDS} | {} ; {} copied |",
                ms(percentile(&first, 0.5)),
                mib(copied / 1024)
            )
            .unwrap();
            writeln!(
                out,
                "| the same tree again (digest only, nothing copied), median of {ROUNDS} | {} ; 0 bytes copied |",
                ms(percentile(&again, 0.5))
            )
            .unwrap();

            // The busy node: an old version in use, a new one current.
            let root = dir.path().join("root-0");
            let busy = busy_namespace(&dir.path().join("mounts"), &root.join("current"));
            std::fs::write(tree.join("java/javaagent.jar"), b"a new version").unwrap();
            install(&tree, &root, Duration::ZERO, &mut Fault::new(None)).unwrap();
            let mut sleepers = Vec::new();
            for i in 0..PROCESSES - 1 {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--mount=/proc/{}/ns/mnt", busy.id()))
                    .arg("--");
                if i < OWN_NAMESPACES {
                    command.args(["unshare", "--mount", "--propagation", "private", "--"]);
                }
                sleepers.push(command.args(["sleep", "600"]).spawn().unwrap());
            }
            std::thread::sleep(Duration::from_millis(500));
            let tables = std::fs::read_dir("/proc")
                .unwrap()
                .filter(|e| {
                    e.as_ref().is_ok_and(|e| {
                        e.file_name()
                            .as_encoded_bytes()
                            .iter()
                            .all(u8::is_ascii_digit)
                    })
                })
                .count();
            let mut times = Vec::new();
            for _ in 0..COLLECTIONS {
                let started = Instant::now();
                let collection = collect_garbage(&root, Duration::ZERO).unwrap();
                times.push(started.elapsed());
                assert_eq!(collection.versions.len(), 2, "the pinned version is kept");
            }
            times.sort();
            writeln!(
                out,
                "| one collection: {MOUNTS} mounts, {PROCESSES} processes ({OWN_NAMESPACES} with their own copy of the mounts), {tables} mount tables read; p50 / p99 of {COLLECTIONS} | {} / {} |",
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99))
            )
            .unwrap();
            for mut child in sleepers.into_iter().chain([busy]) {
                let _ = child.kill();
                let _ = child.wait();
            }
        },
    );
}
