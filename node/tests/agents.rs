//! The agents installer binary on real files and real mounts (DESIGN §4 "Agents installer
//! tests"): `agent-mount-node agents install|gc` runs as a child process against a temp
//! `<root>`; a process in a private mount namespace (`unshare --mount --propagation
//! private`, as root, as CI runs) holds a bind mount of `current` as a container would.
// Test code: helpers fail loudly too (clippy.toml allows this in #[test] functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/namespace.rs"]
mod namespace;

use rustix::fs::{FlockOperation, flock};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What a file of a tree is: its mode, then its contents (or a link's target, or nothing
/// for a directory).
type Listing = BTreeMap<PathBuf, (char, u32, u32, Vec<u8>)>;

/// Everything below `dir` (not following links): kind, mode, owner and contents.
fn listing(dir: &Path) -> Listing {
    let mut out = Listing::new();
    walk(dir, Path::new(""), &mut out);
    out
}

fn walk(dir: &Path, prefix: &Path, out: &mut Listing) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).unwrap();
        let relative = prefix.join(entry.file_name());
        let mode = meta.mode() & 0o7777;
        let (kind, content) = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            ('l', target.into_os_string().into_encoded_bytes())
        } else if meta.is_dir() {
            walk(&path, &relative, out);
            ('d', Vec::new())
        } else if meta.is_file() {
            ('f', fs::read(&path).unwrap())
        } else {
            ('?', Vec::new())
        };
        out.insert(relative, (kind, mode, meta.uid(), content));
    }
}

/// What `tree` should become once installed: modes normalised, owned by root.
fn installed_form(tree: &Listing) -> Listing {
    tree.iter()
        .map(|(path, (kind, mode, _, content))| {
            let mode = match kind {
                'd' => 0o755,
                'f' if mode & 0o111 != 0 => 0o755,
                'f' => 0o644,
                _ => 0o777,
            };
            (path.clone(), (*kind, mode, 0, content.clone()))
        })
        .collect()
}

/// A temp directory holding a tree to install (`tree/`) and a root (`root/`).
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    /// A node on tmpfs, where syncfs costs nothing: for tests that install hundreds of
    /// times and check what a SIGKILL leaves, which no flush changes.
    fn on_tmpfs() -> Node {
        Node {
            dir: tempfile::tempdir_in("/dev/shm").unwrap(),
        }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn current(&self) -> PathBuf {
        self.root().join("current")
    }
    /// A fresh tree directory named `name` with `files` (path, contents, mode).
    fn tree(&self, name: &str, files: &[(&str, &[u8], u32)]) -> PathBuf {
        let tree = self.dir.path().join(name);
        for (path, content, mode) in files {
            let path = tree.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        tree
    }
    fn versions(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root().join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
    /// The version `current` points at (its target's last segment).
    fn current_version(&self) -> String {
        let target = fs::read_link(self.current()).unwrap();
        let target = target.to_str().unwrap();
        let digest = target
            .strip_prefix("versions/")
            .unwrap_or_else(|| panic!("current -> {target}: not relative to the root"));
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{target}"
        );
        digest.to_string()
    }
}

fn installer(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agent-mount-node"));
    command
        .arg("agents")
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    command
}

fn install_command(from: &Path, root: &Path, extra: &[&str]) -> Command {
    let mut command = installer(&["install", "--grace", "0s"]);
    command
        .arg("--from")
        .arg(from)
        .arg("--root")
        .arg(root)
        .args(extra);
    command
}

/// Runs `agents install` and returns its output, whatever the outcome.
fn try_install(from: &Path, root: &Path, extra: &[&str]) -> Output {
    install_command(from, root, extra).output().unwrap()
}

/// Runs `agents install`, which must succeed; returns what it logged.
fn install(from: &Path, root: &Path, extra: &[&str]) -> String {
    let output = try_install(from, root, extra);
    let log = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "install failed: {log}");
    log
}

fn gc(root: &Path) -> String {
    let output = installer(&["gc", "--grace", "0s"])
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "gc failed: {log}");
    log
}

/// A process in its own mount namespace with `current` bind-mounted at `mountpoint`, as a
/// container holds its agents; the test reads through `/proc/<pid>/root`.
struct Holder {
    child: Child,
    mountpoint: PathBuf,
}

impl Holder {
    fn start(current: &Path, mountpoint: &Path) -> Holder {
        fs::create_dir_all(mountpoint).unwrap();
        let script = format!(
            "mount --bind '{}' '{}'",
            current.display(),
            mountpoint.display()
        );
        Holder {
            child: namespace::spawn(&script),
            mountpoint: mountpoint.to_path_buf(),
        }
    }
    /// `relative` as the holder sees it below its mount.
    fn read(&self, relative: &str) -> Vec<u8> {
        let path = format!(
            "/proc/{}/root{}/{relative}",
            self.child.id(),
            self.mountpoint.display()
        );
        fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes that differ at every offset from one version to the next.
fn payload(version: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(version))
        .collect()
}

#[test]
fn installs_a_tree_with_normalised_modes_root_owned_behind_a_relative_current() {
    let node = Node::new();
    let tree = node.tree(
        "tree",
        &[
            ("java/javaagent.jar", b"jar", 0o600),
            ("python/bin/run", b"#!/bin/sh\n", 0o700),
            ("python/lib/x.py", b"x = 1\n", 0o640),
            ("nodejs-community/tool", b"t", 0o710),
            (
                "manifest.json",
                br#"{"agents": {"java": {"name": "j", "version": "2.10.0"}}}"#,
                0o644,
            ),
        ],
    );
    // Directories without the execute bit (odigos#5318), setgid and sticky, another owner.
    fs::set_permissions(tree.join("python/lib"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(tree.join("java"), fs::Permissions::from_mode(0o3775)).unwrap();
    symlink("../java/javaagent.jar", tree.join("python/agent.jar")).unwrap();
    std::os::unix::fs::chown(tree.join("java/javaagent.jar"), Some(1000), Some(1000)).unwrap();

    let log = install(&tree, &node.root(), &[]);
    let version = node.current_version();
    assert_eq!(node.versions(), std::slice::from_ref(&version));
    assert_eq!(
        listing(&node.current().join("")),
        installed_form(&listing(&tree))
    );
    let top = fs::metadata(node.root().join("versions").join(&version)).unwrap();
    assert_eq!((top.mode() & 0o7777, top.uid()), (0o755, 0));
    assert!(log.contains("agents=[(\"java\", \"2.10.0\")]"), "{log}");
    // Nothing else in the root: the lock, the versions, the link.
    let names: Vec<_> = fs::read_dir(node.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, [".lock", "current", "versions"]);
}

#[test]
fn the_same_tree_again_copies_nothing_and_keeps_the_version() {
    let node = Node::new();
    let tree = node.tree("tree", &[("java/javaagent.jar", &payload(1, 4096), 0o644)]);
    let first = install(&tree, &node.root(), &[]);
    assert!(first.contains("copied=true bytes_copied=4096"), "{first}");
    let version = node.current_version();
    let inode = fs::metadata(node.current().join("java/javaagent.jar"))
        .unwrap()
        .ino();
    // The same files from another "image": another owner and raw modes that normalise alike.
    let again = node.tree("again", &[("java/javaagent.jar", &payload(1, 4096), 0o600)]);
    std::os::unix::fs::chown(again.join("java/javaagent.jar"), Some(1000), None).unwrap();
    for from in [&tree, &again] {
        let log = install(from, &node.root(), &[]);
        assert!(log.contains("copied=false bytes_copied=0"), "{log}");
        assert!(log.contains("switched=false"), "{log}");
        assert_eq!(node.current_version(), version);
        assert_eq!(node.versions(), std::slice::from_ref(&version));
        let same = fs::metadata(node.current().join("java/javaagent.jar"))
            .unwrap()
            .ino();
        assert_eq!(same, inode, "the file was written again");
    }
}

#[test]
fn a_version_mounted_in_another_namespace_is_read_through_installs_and_collected_after() {
    let node = Node::new();
    const JAR: &str = "java/javaagent.jar";
    let size = 1 << 20;
    let old = node.tree("v1", &[(JAR, &payload(1, size), 0o644)]);
    install(&old, &node.root(), &[]);
    let old_version = node.current_version();
    // A container started now: its mount follows `current` once, at mount time.
    let holder = Holder::start(&node.current(), &node.dir.path().join("pod-1"));
    assert_eq!(holder.read(JAR), payload(1, size));

    let mut newer = None;
    for version in 2..=4u8 {
        let tree = node.tree(
            &format!("v{version}"),
            &[(JAR, &payload(version, size), 0o644)],
        );
        let log = install(&tree, &node.root(), &[]);
        // The old bytes, byte for byte, however many installs later.
        assert!(
            holder.read(JAR) == payload(1, size),
            "the holder's bytes changed at v{version}"
        );
        assert!(
            log.contains(&format!("{} (in-use, 1 mounts)", &old_version[..12])),
            "{log}"
        );
        // The version in between, which nobody mounted, went at once (grace 0s).
        let versions = node.versions();
        assert_eq!(versions.len(), 2, "{versions:?}");
        assert!(versions.contains(&old_version), "{versions:?}");
        newer = Some((version, node.current_version()));
    }
    let (last, last_version) = newer.unwrap();
    // A container started after the switch gets the new tree.
    let fresh = Holder::start(&node.current(), &node.dir.path().join("pod-2"));
    assert!(fresh.read(JAR) == payload(last, size));

    // While the first holder lives, gc keeps its version; once it is gone, gc removes it.
    gc(&node.root());
    assert!(node.versions().contains(&old_version));
    holder.stop();
    let log = gc(&node.root());
    assert_eq!(
        node.versions(),
        std::slice::from_ref(&last_version),
        "{log}"
    );
    assert!(fresh.read(JAR) == payload(last, size));
    // The current version stays even with no mount at all.
    fresh.stop();
    gc(&node.root());
    assert_eq!(node.versions(), [last_version]);
}

#[test]
fn a_replaced_version_is_kept_for_the_grace_even_unused() {
    let node = Node::new();
    let one = node.tree("one", &[("a", b"1", 0o644)]);
    let two = node.tree("two", &[("a", b"2", 0o644)]);
    install(&one, &node.root(), &[]);
    let first = node.current_version();
    let output = installer(&["install", "--grace", "10m"])
        .arg("--from")
        .arg(&two)
        .arg("--root")
        .arg(node.root())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains(&format!("{} (grace, 0 mounts)", &first[..12])),
        "{log}"
    );
    assert_eq!(node.versions().len(), 2);
    let output = installer(&["gc", "--grace", "10m"])
        .arg("--root")
        .arg(node.root())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(node.versions().len(), 2);
    gc(&node.root());
    assert_eq!(node.versions(), [node.current_version()]);
}

/// Leftovers of an interrupted run, by their prefix.
fn leftovers(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [root.to_path_buf(), root.join("versions")] {
        for entry in fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if [".tmp-", ".gone-", ".current-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn sigkill_at_every_step_of_an_install_leaves_current_complete_and_the_next_install_cleans_up() {
    let node = Node::on_tmpfs();
    let files = |version: u8| -> Vec<(String, Vec<u8>, u32)> {
        (0..120)
            .map(|i| {
                let path = format!("agent-{}/lib/file-{i:03}.py", i % 6);
                (path, payload(version.wrapping_add(i as u8), 1024), 0o644)
            })
            .collect()
    };
    let make = |name: &str, version: u8| {
        let files = files(version);
        let borrowed: Vec<(&str, &[u8], u32)> = files
            .iter()
            .map(|(p, c, m)| (p.as_str(), c.as_slice(), *m))
            .collect();
        node.tree(name, &borrowed)
    };
    let (old, new) = (make("old", 1), make("new", 2));
    let (old_form, new_form) = (
        installed_form(&listing(&old)),
        installed_form(&listing(&new)),
    );
    let mut kills = 0;
    let mut resolved_new = 0;
    for step in 1.. {
        // Back to the old tree; this install also removes what the kill left.
        install(&old, &node.root(), &[]);
        assert_eq!(
            leftovers(&node.root()),
            Vec::<String>::new(),
            "after step {step}"
        );
        assert_eq!(node.versions(), [node.current_version()]);
        let output = try_install(
            &new,
            &node.root(),
            &["--fault-kill-at-step", &step.to_string()],
        );
        let seen = listing(&node.current().join(""));
        assert!(
            seen == old_form || seen == new_form,
            "killed at step {step}: current resolves to a partial tree ({} entries)",
            seen.len()
        );
        if seen == new_form {
            resolved_new += 1;
        }
        if output.status.success() {
            assert_eq!(seen, new_form);
            break;
        }
        assert_eq!(output.status.signal(), Some(9), "step {step}: {output:?}");
        kills += 1;
    }
    // Every entry, the directories' fsync, the rename, the new link, the switch.
    assert_eq!(kills, 120 + 6 + 6 + 4, "kills");
    // Only the kill after the switch left the new tree current.
    assert_eq!(resolved_new, 2, "the last kill and the run that finished");
    eprintln!("{kills} SIGKILLs, each left current complete");
}

#[test]
fn refused_trees_change_nothing_and_name_the_path() {
    let node = Node::new();
    let good = node.tree("good", &[("java/javaagent.jar", b"jar", 0o644)]);
    install(&good, &node.root(), &[]);
    let before = listing(&node.root());
    type Spoil = fn(&Path);
    let cases: [(&str, Spoil, &str); 7] = [
        (
            "setuid",
            |t| {
                fs::set_permissions(
                    t.join("java/javaagent.jar"),
                    fs::Permissions::from_mode(0o4755),
                )
                .unwrap()
            },
            "java/javaagent.jar",
        ),
        (
            "setgid",
            |t| {
                fs::set_permissions(
                    t.join("java/javaagent.jar"),
                    fs::Permissions::from_mode(0o2755),
                )
                .unwrap()
            },
            "java/javaagent.jar",
        ),
        (
            "device",
            |t| {
                run(
                    "mknod",
                    &[t.join("java/null").to_str().unwrap(), "c", "1", "3"],
                )
            },
            "java/null",
        ),
        (
            "fifo",
            |t| run("mkfifo", &[t.join("java/pipe").to_str().unwrap()]),
            "java/pipe",
        ),
        (
            "socket",
            |t| {
                std::mem::forget(
                    std::os::unix::net::UnixListener::bind(t.join("java/sock")).unwrap(),
                );
            },
            "java/sock",
        ),
        (
            "absolute link",
            |t| symlink("/etc/passwd", t.join("java/passwd")).unwrap(),
            "java/passwd",
        ),
        (
            "relative link through another link",
            |t| {
                symlink("..", t.join("java/up")).unwrap();
                symlink("up/../etc", t.join("java/out")).unwrap();
            },
            "java/out",
        ),
    ];
    for (i, (what, spoil, named)) in cases.into_iter().enumerate() {
        let tree = node.tree(
            &format!("bad-{i}"),
            &[("java/javaagent.jar", b"other", 0o755)],
        );
        spoil(&tree);
        for root in [node.root(), node.dir.path().join(format!("fresh-{i}"))] {
            let output = try_install(&tree, &root, &[]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{what}: installed");
            assert!(
                stderr.contains(named) && stderr.contains("refused"),
                "{what}: {stderr}"
            );
            assert!(stderr.contains("nothing was changed"), "{what}: {stderr}");
        }
        assert_eq!(listing(&node.root()), before, "{what}: the root changed");
        assert!(
            !node.dir.path().join(format!("fresh-{i}")).exists(),
            "{what}: a fresh root was made"
        );
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}: {status}");
}

#[test]
fn foreign_files_in_the_root_are_left_alone_with_a_non_zero_exit() {
    let node = Node::new();
    let tree = node.tree("tree", &[("java/javaagent.jar", b"jar", 0o644)]);
    type Plant = fn(&Path);
    let cases: [(&str, Plant, &str); 5] = [
        (
            "a stray file",
            |r| fs::write(r.join("notes.txt"), "mine").unwrap(),
            "notes.txt",
        ),
        (
            "files at current",
            |r| {
                fs::create_dir_all(r.join("current/java")).unwrap();
                fs::write(r.join("current/java/javaagent.jar"), "theirs").unwrap();
            },
            "current",
        ),
        (
            "current pointing elsewhere",
            |r| symlink("/var/odigos", r.join("current")).unwrap(),
            "current",
        ),
        (
            "a stray version",
            |r| {
                fs::create_dir_all(r.join("versions/latest")).unwrap();
            },
            "versions/latest",
        ),
        (
            "a stray file among versions",
            |r| {
                fs::create_dir_all(r.join("versions")).unwrap();
                fs::write(r.join("versions/README"), "x").unwrap();
            },
            "versions/README",
        ),
    ];
    for (i, (what, plant, named)) in cases.into_iter().enumerate() {
        let root = node.dir.path().join(format!("root-{i}"));
        fs::create_dir_all(&root).unwrap();
        plant(&root);
        let before = listing(&root);
        let output = try_install(&tree, &root, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!("{named:?}")) && stderr.contains("did not make"),
            "{what}: {stderr}"
        );
        assert_eq!(listing(&root), before, "{what}: changed");
        let gc = installer(&["gc", "--grace", "0s"])
            .arg("--root")
            .arg(&root)
            .output()
            .unwrap();
        assert_eq!(gc.status.code(), Some(1), "{what}: gc");
        assert_eq!(listing(&root), before, "{what}: gc changed it");
    }
}

#[test]
fn an_empty_directory_at_current_is_replaced() {
    let node = Node::new();
    let tree = node.tree("tree", &[("java/javaagent.jar", b"jar", 0o644)]);
    // What a container runtime makes for a missing hostPath source.
    fs::create_dir_all(node.current()).unwrap();
    install(&tree, &node.root(), &[]);
    node.current_version();
    assert_eq!(
        fs::read(node.current().join("java/javaagent.jar")).unwrap(),
        b"jar"
    );
}

#[test]
fn what_a_crash_left_is_removed_by_the_next_run_under_the_lock() {
    let node = Node::new();
    let tree = node.tree("tree", &[("a", b"1", 0o644)]);
    install(&tree, &node.root(), &[]);
    let digest = node.current_version();
    // A copy, a deletion and a new link that SIGKILLs interrupted.
    for dir in [
        format!(".tmp-{digest}-4242"),
        format!(".gone-{}-77", "e".repeat(64)),
    ] {
        fs::create_dir_all(node.root().join("versions").join(&dir).join("java")).unwrap();
        fs::write(
            node.root().join("versions").join(&dir).join("java/x"),
            "partial",
        )
        .unwrap();
    }
    symlink(
        format!("versions/{digest}"),
        node.root().join(".current-4242"),
    )
    .unwrap();
    let log = gc(&node.root());
    assert_eq!(leftovers(&node.root()), Vec::<String>::new(), "{log}");
    assert_eq!(node.versions(), [digest]);
}

#[test]
fn two_installs_at_once_wait_for_each_other() {
    let node = Node::new();
    let one = node.tree("one", &[("a", &payload(1, 1 << 16), 0o644)]);
    let two = node.tree("two", &[("a", &payload(2, 1 << 16), 0o644)]);
    fs::create_dir_all(node.root()).unwrap();
    // Hold the lock as another run would: the install waits, doing nothing.
    let lock = fs::File::create(node.root().join(".lock")).unwrap();
    flock(&lock, FlockOperation::LockExclusive).unwrap();
    let mut waiting = install_command(&one, &node.root(), &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "it did not wait for the lock"
    );
    assert!(!node.root().join("versions").exists() && !node.current().exists());
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "still waiting after the lock was released"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(waiting.wait().unwrap().success());
    // Then many at once, of two trees: each ends complete, with one version kept.
    let runs: Vec<Child> = (0..8)
        .map(|i| {
            let from = if i % 2 == 0 { &one } else { &two };
            install_command(from, &node.root(), &[])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let seen = listing(&node.current().join(""));
    assert!(seen == installed_form(&listing(&one)) || seen == installed_form(&listing(&two)));
    assert_eq!(node.versions(), [node.current_version()]);
    assert_eq!(leftovers(&node.root()), Vec::<String>::new());
}
