//! From the node proxy's flags to its configuration: where the mesh state and
//! certificates come from (the control plane, or a local file with a local CA), the
//! listener addresses and the in-pod capture settings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use weft_identity::{
    CertManagerConfig, CertificateAuthority, CertificateProvider, LocalCaProvider, TokenSource,
    TrustBundle,
};

use super::NodeArgs;
use crate::capture::{CaptureConfig, CaptureOptions, source};
use crate::process::{ListenAddrs, NodeConfig, StateSource};
use crate::proxy::ProxyOptions;

pub(super) fn node_config(args: NodeArgs) -> anyhow::Result<NodeConfig> {
    let (state, ca, trust) = match (&args.control, &args.local_config) {
        (Some(control), _) => control_source(&args, control)?,
        (None, Some(path)) => local_source(&args, path.clone())?,
        (None, None) => bail!("give --control ADDR or --local-config FILE"),
    };
    let mut options = ProxyOptions {
        node_name: args.node.clone(),
        network: args.network.clone(),
        hbone_port: args.hbone_port,
        pool: weft_hbone_pool(&args),
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
        access_log: args.access_log.format(),
        // names of ServiceEntry hosts resolve where the pods' other names do
        dns_servers: args.dns_upstream.into_iter().collect(),
        ..ProxyOptions::default()
    };
    args.limits.apply(&mut options);
    Ok(NodeConfig {
        options,
        listen: listen_addrs(&args),
        state,
        ca,
        trust,
        certs: CertManagerConfig::default(),
        log_control: weft_serve::logging::filter_control(),
    })
}

fn weft_hbone_pool(args: &NodeArgs) -> crate::proxy::PoolConfig {
    crate::proxy::PoolConfig {
        max_streams_per_connection: args.max_streams_per_connection.max(1),
        spread_connections: usize::from(args.hbone_spread_connections),
        ..crate::proxy::PoolConfig::default()
    }
}

fn listen_addrs(args: &NodeArgs) -> ListenAddrs {
    let local = args.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let any = args.bind_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let capture = |port| args.capture_listeners.then_some(SocketAddr::new(any, port));
    ListenAddrs {
        explicit: Some(SocketAddr::new(local, args.explicit_port)),
        outbound: capture(args.outbound_port),
        inbound_plaintext: capture(args.inbound_plaintext_port),
        admin: Some(SocketAddr::new(local, args.admin_port)),
        metrics: Some(SocketAddr::new(any, args.metrics_port)),
        readiness: Some(SocketAddr::new(any, args.readiness_port)),
        workload_hbone_listeners: !args.no_workload_listeners && pod_socket(args).is_none(),
    }
}

type Sources = (StateSource, Arc<dyn CertificateProvider>, TrustBundle);

fn local_source(args: &NodeArgs, path: PathBuf) -> anyhow::Result<Sources> {
    if !args.insecure_local_ca {
        bail!(
            "--local-config needs a certificate authority: pass --insecure-local-ca to sign \
             workload certificates with a local self-signed CA (development only), or use \
             --control to get certificates from the control plane"
        );
    }
    let ca = match &args.local_ca_dir {
        Some(dir) => CertificateAuthority::load_or_create_self_signed(dir)
            .with_context(|| format!("local CA in {}", dir.display()))?,
        None => CertificateAuthority::generate_in_memory().context("generating a local CA")?,
    };
    tracing::warn!(
        ca = ca.description(),
        "using an INSECURE local CA (--insecure-local-ca)"
    );
    let trust = TrustBundle::new(args.trust_domain.clone(), [ca.root().clone()])
        .context("trust bundle of the local CA")?;
    let provider: Arc<dyn CertificateProvider> = Arc::new(LocalCaProvider::new(Arc::new(ca)));
    Ok((StateSource::LocalFile(path), provider, trust))
}

fn control_source(args: &NodeArgs, control: &str) -> anyhow::Result<Sources> {
    let Some(ca_root) = &args.ca_root else {
        bail!(
            "--control needs --ca-root FILE: the PEM root that signs the control plane's certificate"
        );
    };
    let pem = std::fs::read_to_string(ca_root)
        .with_context(|| format!("reading --ca-root {}", ca_root.display()))?;
    let trust = TrustBundle::from_pem(args.trust_domain.clone(), &pem)
        .with_context(|| format!("--ca-root {}", ca_root.display()))?;
    let token_file = args
        .token_file
        .clone()
        .context("--control needs --token-file FILE")?;
    let (ca, source) = crate::process::control_plane_clients(
        control,
        &args.control_san,
        &trust,
        TokenSource::File(token_file),
        args.cluster_id.clone(),
    )?;
    Ok((StateSource::Xds(source), Arc::new(ca), trust))
}

/// The pod socket: `--pod-socket` or `--cni-socket`.
fn pod_socket(args: &NodeArgs) -> Option<&PathBuf> {
    args.pod_socket.as_ref().or(args.cni_socket.as_ref())
}

/// The pod socket and capture settings, when `--pod-socket` or `--cni-socket` is given.
pub(super) fn capture_options(args: &NodeArgs) -> Option<(PathBuf, CaptureOptions)> {
    let socket = pod_socket(args)?.clone();
    let rules = CaptureConfig {
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_plaintext_port,
        hbone_port: args.hbone_port,
        ..CaptureConfig::default()
    };
    let mut options = CaptureOptions {
        rules,
        dns_upstream: args.dns_upstream,
        cluster_domain: args.cluster_domain.clone(),
        state_file: Some(source::state_file_for(&socket)),
        discover: args.cni_socket.is_some(),
        hold_unknown: args.cni_socket.is_some(),
        probe_snat_netns: args.probe_snat_netns.clone(),
        ..CaptureOptions::default()
    };
    args.limits.apply_capture(&mut options);
    Some((socket, options))
}
