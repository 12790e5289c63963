//! The init container's copy script, run by `sh` exactly as the policy inserts it, with
//! its two paths pointed at temp directories.

use agent_mount::init_container::COPY_SCRIPT;
use agent_mount::settings::method::Method;
use agent_mount::settings::parse;
use rstest::rstest;
use runner::view::files_below;
use serde_json::json;
use std::path::Path;
use std::process::{Command, ExitStatus};

/// The copy container's command for these agent directories.
fn copy_command(dirs: &[&str]) -> Vec<String> {
    let settings = parse(
        json!({"mountMethod": "k8s-init-container", "agentDirectories": dirs,
        "initContainer": {"image": "ghcr.io/example/agents:1.0"}}),
    )
    .unwrap();
    let Method::InitContainer { copy, mounts } = &settings.method else {
        panic!("not init-container settings: {settings:?}");
    };
    copy.command(&mounts.agent_directories)
}

/// Runs the init container's exact command, with its source and target replaced.
fn run_copy(command: &[String], source: &Path, target: &Path) -> ExitStatus {
    assert_eq!(&command[..4], ["sh", "-c", COPY_SCRIPT, "agent-mount-copy"]);
    let mut args = command.to_vec();
    args[4] = source.display().to_string();
    args[5] = target.display().to_string();
    Command::new(&args[0])
        .args(&args[1..])
        .status()
        .expect("run sh")
}

#[rstest]
#[case::whole_directory(vec![], vec!["dotnet/agent.dll", "java/javaagent.jar", "java/lib/extra.jar", "python/site/otel.py"])]
#[case::per_agent(vec!["java", "python"], vec!["java/javaagent.jar", "java/lib/extra.jar", "python/site/otel.py"])]
fn the_copy_script_copies_the_agent_tree(#[case] dirs: Vec<&str>, #[case] expected: Vec<&str>) {
    let image = tempfile::tempdir().unwrap();
    let source = image.path().join("instrumentations");
    for (file, content) in [
        ("java/javaagent.jar", "jar"),
        ("java/lib/extra.jar", "extra"),
        ("python/site/otel.py", "py"),
        ("dotnet/agent.dll", "dll"),
    ] {
        std::fs::create_dir_all(source.join(file).parent().unwrap()).unwrap();
        std::fs::write(source.join(file), content).unwrap();
    }
    let target = tempfile::tempdir().unwrap();
    let command = copy_command(&dirs);
    assert!(run_copy(&command, &source, target.path()).success());
    let copied = files_below(target.path()).unwrap();
    assert_eq!(copied, expected);
    for path in &copied {
        assert_eq!(
            std::fs::read(source.join(path)).unwrap(),
            std::fs::read(target.path().join(path)).unwrap(),
            "{path}"
        );
    }
    // Running it again (a restarted init container) succeeds and changes nothing.
    assert!(run_copy(&command, &source, target.path()).success());
    assert_eq!(files_below(target.path()).unwrap(), expected);
}

#[test]
fn a_missing_agent_directory_fails_the_copy_loudly() {
    let source = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let status = run_copy(&copy_command(&["ruby"]), source.path(), target.path());
    assert!(
        !status.success(),
        "set -e stops on the failed cp, so the pod does not start without its agent"
    );
}
