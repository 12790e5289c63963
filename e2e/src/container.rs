//! A process started as in a container that sees the agents: its own private mount
//! namespace (`unshare --mount --propagation private`; we are root), a tmpfs at the agents'
//! path standing for the container's file system there, each of the method's mounts bound
//! onto it (read-only where the pod says so), a write tried into each mount (the agents must
//! refuse it), and then the program with exactly the container's environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One mount of the container's view.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewMount {
    /// Where the container sees it.
    pub container_path: String,
    /// The directory behind it, as seen from the namespace the process starts in.
    pub source: PathBuf,
    /// Whether the pod mounts it read-only.
    pub read_only: bool,
}

/// The exit status the launcher uses when a write into a mount succeeded.
pub const WROTE_INTO_AGENTS: i32 = 97;

/// Mounts the view, tries the writes, then runs the program. Arguments: the agents' path,
/// then (container path, source, ro|rw) triples, then `--` and the program.
const LAUNCHER: &str = r#"set -eu
root=$1; shift
mount -t tmpfs -o mode=0755 container-view "$root"
mounted=""
while [ "$1" != "--" ]; do
  mkdir -p "$1"
  if [ "$3" = ro ]; then mount --bind -o ro "$2" "$1"; else mount --bind "$2" "$1"; fi
  mounted="$mounted $1"
  shift 3
done
shift
for path in $mounted; do
  if ( : > "$path/.written-by-the-app" ) 2>/dev/null; then
    echo "the app could write into the agents at $path" >&2
    exit 97
  fi
done
exec "$@"
"#;

/// Why the process could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not start.
    #[error("cannot start {0}: {1}")]
    Start(String, std::io::Error),
    /// It ran past the time allowed, and was killed.
    #[error("{0} still ran after {1:?}; killed")]
    Timeout(String, Duration),
}

/// Runs `program` in the view of `mounts` below `agents_path`, with `env` as its whole
/// environment (plus this process's PATH where `env` has none, as an image's own ENV would
/// give one), started in the mount namespace of process `namespace` where given (a CSI
/// plugin's, which holds the published volume), else in this one.
pub fn run_in_view(
    agents_path: &str,
    mounts: &[ViewMount],
    namespace: Option<u32>,
    env: &BTreeMap<String, String>,
    program: &[String],
    timeout: Duration,
) -> Result<Output, RunError> {
    let mut command = Command::new(if namespace.is_some() {
        "nsenter"
    } else {
        "unshare"
    });
    if let Some(pid) = namespace {
        command
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .arg("unshare");
    }
    command.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        LAUNCHER,
        "launcher",
        agents_path,
    ]);
    for mount in mounts {
        command
            .arg(&mount.container_path)
            .arg(&mount.source)
            .arg(if mount.read_only { "ro" } else { "rw" });
    }
    command.arg("--").args(program);
    command.env_clear().envs(env);
    if !env.contains_key("PATH") {
        command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    }
    let label = program.join(" ");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Start(label.clone(), e))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout(label, timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(RunError::Start(label, e)),
        }
    }
    child
        .wait_with_output()
        .map_err(|e| RunError::Start(label, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program that checks its env and lists the mounted agents, in a view of one fresh
    /// directory mounted at `<fresh mount point>/java`.
    fn touch_in_view(read_only: bool) -> (Output, PathBuf) {
        let agents = tempfile::tempdir().unwrap();
        let mount_point = tempfile::tempdir().unwrap();
        let container_path = mount_point.path().display().to_string();
        let mounts = [ViewMount {
            container_path: format!("{container_path}/java"),
            source: agents.path().to_path_buf(),
            read_only,
        }];
        let probe = format!("{container_path}/java/probe");
        let program = [
            "sh",
            "-c",
            "test \"$GREETING\" = hello && ls \"$1\"",
            "sh",
            &probe,
        ]
        .map(String::from);
        let env = [("GREETING".to_string(), "hello".to_string())].into();
        std::fs::write(agents.path().join("probe"), "x").unwrap();
        let output = run_in_view(
            &container_path,
            &mounts,
            None,
            &env,
            &program,
            Duration::from_secs(30),
        )
        .unwrap();
        (output, agents.path().join(".written-by-the-app"))
    }

    #[test]
    fn a_read_only_view_runs_the_program_with_its_env_and_leaves_the_agents_unwritten() {
        let (output, written) = touch_in_view(true);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!written.exists());
    }

    #[test]
    fn a_writable_mount_of_the_agents_fails_the_run() {
        let (output, _) = touch_in_view(false);
        assert_eq!(output.status.code(), Some(WROTE_INTO_AGENTS));
        assert!(String::from_utf8_lossy(&output.stderr).contains("could write into the agents"));
    }
}
