//! The two subcommands as the binary runs them: their logs, and `gc --every`'s loop with
//! its metrics.

use super::config::{GcArgs, InstallArgs};
use super::label::ApiServer;
use super::report::{GcExporter, installed_agents};
use super::store::Fault;
use super::{Collection, InstallError, collect_garbage, install};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// `agents install`: installs, collects, and logs what it did.
pub fn install_command(args: &InstallArgs) -> Result<(), InstallError> {
    let mut fault = Fault::new(args.fault_kill_at_step);
    let installed = install(&args.from, &args.root.root, args.root.grace, &mut fault)?;
    let agents = installed_agents(&args.root.root);
    let (bytes, entries) = installed
        .copied
        .map_or((0, 0), |copied| (copied.bytes, copied.entries));
    tracing::info!(
        version = %installed.digest,
        copied = installed.copied.is_some(),
        bytes_copied = bytes,
        entries_copied = entries,
        switched = installed.switched,
        install_ms = installed.took.as_millis() as u64,
        agents = ?agents,
        "installed"
    );
    log_collection(&installed.collection);
    if let (Some(label), Some(node)) = (&args.label_node, &args.node_name) {
        // After the switch: the label says that `current` is complete on this node.
        ApiServer::in_cluster()?.label_node(node, label)?;
        tracing::info!(
            node,
            key = label.key,
            value = label.value,
            "labelled the node"
        );
    }
    Ok(())
}

/// `agents gc`: once, or every `--every` until `shutdown` with `/metrics` and `/healthz`.
pub async fn gc_command(
    args: GcArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), InstallError> {
    let Some(every) = args.every else {
        let collection = collect_garbage(&args.root.root, args.root.grace)?;
        log_collection(&collection);
        return Ok(());
    };
    let exporter = Arc::new(GcExporter::default());
    let metrics = args
        .metrics_addr
        .map(|addr| crate::metrics::spawn(addr, exporter.clone()));
    tokio::pin!(shutdown);
    loop {
        let started = Instant::now();
        let root = args.root.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = collect_garbage(&root.root, root.grace);
            (outcome, installed_agents(&root.root))
        })
        .await;
        match outcome {
            Ok((outcome, agents)) => {
                match &outcome {
                    Ok(collection) => log_collection(collection),
                    Err(e) => {
                        tracing::error!(error = %e, "collection failed; trying again in {every:?}")
                    }
                }
                exporter.record(&outcome, agents, started.elapsed());
            }
            Err(e) => tracing::error!(error = %e, "collection task failed"),
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    Ok(())
}

fn log_collection(collection: &Collection) {
    let kept: Vec<String> = collection
        .versions
        .iter()
        .filter(|(_, verdict, _)| *verdict != super::gc::Verdict::Collect)
        .map(|(digest, verdict, mounts)| {
            format!("{} ({}, {mounts} mounts)", digest.short(), verdict.label())
        })
        .collect();
    let collected: Vec<&str> = collection
        .versions
        .iter()
        .filter(|(_, verdict, _)| *verdict == super::gc::Verdict::Collect)
        .map(|(digest, _, _)| digest.short())
        .collect();
    tracing::info!(
        current = collection.current.as_ref().map(|d| d.short()).unwrap_or("none"),
        kept = ?kept,
        collected = ?collected,
        leftovers_removed = collection.leftovers.len(),
        "collected"
    );
}
