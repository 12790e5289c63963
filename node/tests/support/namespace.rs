//! A process in a private mount namespace of its own (`unshare --mount --propagation
//! private`, as root), as a container holds its mounts: it runs a shell script that makes
//! them, says `ready`, and sleeps; its files are read through `/proc/<pid>/root`. Shared by
//! tests/agents.rs and benches/agents.rs.

use std::process::{Child, Command, Stdio};

/// Runs `script` in a new mount namespace and waits until it succeeded; the child then
/// sleeps (kill it to end the namespace). Without --fork, unshare and sh exec in place, so
/// the child's pid is the namespace's process.
pub fn spawn(script: &str) -> Child {
    let script = format!("{script} && echo ready && exec sleep 1000");
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare: run as root (CI does)");
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().expect("stdout"), &mut ready).unwrap_or_else(
        |e| panic!("the mount namespace's script failed ({e}); these need root, as CI has"),
    );
    assert_eq!(&ready, b"ready\n");
    child
}
