//! The runner's command line: `demo`, and `run` (like `kwctl run`).

mod demo;

use clap::{Parser, Subcommand};
use runner::{build, host::PolicyHost, input};
use std::path::PathBuf;
use std::process::ExitCode;

/// Evaluate the agent-mount policy in a local waPC host, as the Kubewarden policy server does.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the policy if needed and show it mutating the bundled example pod under every method.
    Demo,
    /// Evaluate one request: prints the response, the JSON patch and the warnings.
    Run {
        /// Settings as YAML or JSON, or a ClusterAdmissionPolicy manifest (its spec.settings).
        #[arg(long)]
        settings: Option<PathBuf>,
        /// A pod manifest (YAML or JSON), an AdmissionRequest, or an AdmissionReview.
        #[arg(long)]
        request: PathBuf,
        /// The policy module; default: build the workspace's policy and use it.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

fn load(policy: Option<PathBuf>) -> Result<PolicyHost, String> {
    let path = match policy {
        Some(path) => path,
        None => build::ensure_built()?,
    };
    PolicyHost::load(&path)
}

fn run(
    settings: Option<PathBuf>,
    request: PathBuf,
    policy: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let settings = match settings {
        Some(path) => input::read_settings(&path)?,
        None => serde_json::json!({}),
    };
    let request = input::read_request(&request)?;
    let host = load(policy)?;
    let verdict = host.validate_settings(&settings)?;
    if !verdict.valid {
        return Err(format!(
            "invalid settings: {}",
            verdict.message.unwrap_or_default()
        ));
    }
    let evaluation = host.validate(&request, &settings)?;
    let output = serde_json::json!({
        "accepted": evaluation.response.accepted,
        "code": evaluation.response.code,
        "message": evaluation.response.message,
        "warnings": evaluation.response.warnings,
        "patch": evaluation.patch,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&output).map_err(|e| e.to_string())?
    );
    Ok(if evaluation.response.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run().map(|()| ExitCode::SUCCESS),
        Command::Run {
            settings,
            request,
            policy,
        } => run(settings, request, policy),
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err}");
        ExitCode::FAILURE
    })
}
