//! The node binary: parse the command line, set up logging, run a plugin, the agents
//! installer or a probe.

use agent_mount_node::cli::{Cli, Command, ProbeTarget};
use agent_mount_node::flags::LogFormat;
use agent_mount_node::install::config::AgentsCommand;
use agent_mount_node::install::run::{gc_command, install_command};
use agent_mount_node::{csi, device_plugin, probe};
use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM (the kubelet stopping the pod) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Exit 0, or log the error and exit 1.
fn exit_with<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "failed");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread is plenty for a node agent and keeps the resident set small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::DevicePlugin(config) => {
            init_logging(config.common.log_format);
            runtime.block_on(device_plugin::run(config, shutdown_signal()));
            ExitCode::SUCCESS
        }
        Command::Csi(config) => {
            init_logging(config.common.log_format);
            match runtime.block_on(csi::run(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Agents(AgentsCommand::Install(args)) => {
            init_logging(args.root.log_format);
            exit_with(install_command(&args))
        }
        Command::Agents(AgentsCommand::Gc(args)) => {
            init_logging(args.root.log_format);
            exit_with(runtime.block_on(gc_command(args, shutdown_signal())))
        }
        Command::Probe(args) => {
            let socket = match &args.target {
                ProbeTarget::DevicePlugin(config) => config.socket_path(),
                ProbeTarget::Csi(config) => config.csi_socket(),
            };
            match runtime.block_on(probe::check(&socket, args.timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
