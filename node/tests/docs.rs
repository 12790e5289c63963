//! node/README.md documents every flag of every subcommand, and its environment variable.

use agent_mount_node::cli::Cli;
use clap::CommandFactory;

/// Each visible flag of `command` and its subcommands: the subcommand path, the long name
/// and the environment variable.
fn flags(command: &clap::Command, path: &str, out: &mut Vec<(String, String, Option<String>)>) {
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() || long == "help" || long == "version" {
            continue;
        }
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        out.push((path.to_string(), long.to_string(), env));
    }
    for sub in command.get_subcommands() {
        flags(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn node_readme_documents_every_flag_and_its_variable() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap_or_else(|e| panic!("node/README.md: {e}"));
    let mut all = Vec::new();
    flags(&Cli::command(), "agent-mount-node", &mut all);
    assert!(all.len() >= 20, "only {} flags found: {all:?}", all.len());
    let mut missing = Vec::new();
    for (path, long, env) in &all {
        if !readme.contains(&format!("`--{long}`")) {
            missing.push(format!("{path}: `--{long}` is not in node/README.md"));
        }
        // The README's rule: every flag has the variable AGENT_MOUNT_<FLAG>; a flag whose
        // variable is named otherwise must have it written out.
        let by_rule = format!("AGENT_MOUNT_{}", long.to_uppercase().replace('-', "_"));
        match env {
            Some(env) if *env == by_rule || readme.contains(env.as_str()) => {}
            Some(env) => missing.push(format!(
                "{path} --{long}: variable {env} is not in node/README.md"
            )),
            None if readme.lines().any(|line| {
                line.contains(&format!("`--{long}`")) && line.contains("no environment variable")
            }) => {}
            None => missing.push(format!(
                "{path} --{long}: no environment variable, and node/README.md does not say so"
            )),
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
