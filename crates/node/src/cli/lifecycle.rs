//! The node proxy's life: take the listeners over from a running proxy (if one offers
//! them), start, offer them to a successor, and on SIGTERM / ctrl-c or when replaced stop
//! accepting and drain open connections up to a deadline.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use weft_serve::handoff::Takeover;
use weft_serve::shutdown_signal;

use super::{NodeArgs, config};
use crate::capture::source;
use crate::handoff::Handoff;

pub(super) async fn serve(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let drain = Duration::from_secs(args.drain_timeout);
    let handoff_drain = Duration::from_secs(args.handoff_drain_timeout);
    let handoff_socket = args.handoff_socket.clone();
    let capture = config::capture_options(&args);
    // refuse bad flags before taking anything over from a running predecessor
    check_probe_snat_netns(&args, capture.is_some())?;
    let handoff = take_over(handoff_socket.as_deref()).await?;
    let config = config::node_config(args)?;
    let mut running = crate::process::run_with_handoff(config, handoff.clone()).await?;
    let capture = match capture {
        Some((socket, options)) => {
            let node = running.node.clone();
            Some(source::start_with_pod_socket(node, &socket, options, handoff.clone()).await?)
        }
        None => None,
    };
    complete_takeover(&handoff).await;
    tracing::info!(addrs = ?running.addrs, "weft node started");
    let replaced = async {
        let Some(path) = &handoff_socket else {
            return std::future::pending().await;
        };
        match crate::handoff::offer_until_replaced(path, &handoff).await {
            Ok(successor) => successor,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot offer the listeners: a restart will not take them over");
                std::future::pending().await
            }
        }
    };
    let successor = tokio::select! {
        () = shutdown_signal() => None,
        successor = replaced => Some(successor),
    };
    let cut = match successor {
        None => {
            if let Some(capture) = capture {
                // Listeners close; the pods' redirect rules stay for the next proxy.
                capture.shutdown().await;
            }
            tracing::info!(
                ?drain,
                "shutting down: no new connections, draining open ones"
            );
            running.shutdown(drain).await
        }
        Some(successor) => {
            if let Some(capture) = capture {
                capture.release().await;
            }
            running.step_down();
            tracing::info!(
                successor = successor.pid,
                ?handoff_drain,
                "replaced: the successor accepts now; draining open connections"
            );
            let node = running.node.clone();
            tokio::select! {
                cut = running.shutdown(handoff_drain) => cut,
                cut = async { shutdown_signal().await; node.shutdown(drain).await } => cut,
            }
        }
    };
    if cut > 0 {
        tracing::warn!(cut, "closed connections still open at the drain deadline");
    }
    Ok(ExitCode::SUCCESS)
}

/// The sockets of the proxy offering on `path`, if one does.
async fn take_over(path: Option<&std::path::Path>) -> anyhow::Result<Handoff> {
    let Some(path) = path else {
        return Ok(Handoff::fresh());
    };
    let takeover = Takeover::connect(path)
        .await
        .with_context(|| format!("taking over from the proxy at {}", path.display()))?;
    Ok(match takeover {
        Some(takeover) => {
            tracing::info!(path = %path.display(), sockets = takeover.names().len(), "taking over from the running proxy once ready");
            Handoff::taking_over(takeover)
        }
        None => Handoff::fresh(),
    })
}

/// Tells the predecessor (if any) that this proxy serves now.
async fn complete_takeover(handoff: &Handoff) {
    let taking_over = handoff.is_taking_over();
    match handoff.complete().await {
        Ok(()) if taking_over => {
            tracing::info!("took over: the previous proxy stops accepting and drains");
        }
        Ok(()) => {}
        Err(error) => tracing::warn!(%error, "the previous proxy did not confirm the hand-off"),
    }
}

/// `--probe-snat-netns` needs capture, and a namespace that exists (one this process may
/// not inspect is only warned about: the source NAT reports its own failures).
fn check_probe_snat_netns(args: &NodeArgs, capturing: bool) -> anyhow::Result<()> {
    let Some(netns) = &args.probe_snat_netns else {
        return Ok(());
    };
    if !capturing {
        bail!("--probe-snat-netns needs --pod-socket or --cni-socket");
    }
    match std::fs::metadata(netns) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "--probe-snat-netns {}: no such network namespace",
            netns.display()
        ),
        // e.g. a security module denying access to another process's namespaces
        Err(error) => {
            tracing::warn!(netns = %netns.display(), %error, "cannot check --probe-snat-netns; kubelet probes of captured pods may fail under STRICT");
        }
        Ok(_) => {}
    }
    Ok(())
}
