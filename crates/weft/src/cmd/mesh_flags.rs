//! Flags that shape translation, shared by every command that translates config the way the
//! control plane does (`weft control`, `weft x translate`, `weft x authz check`).

use weft_control::translate::TranslateOptions;
use weft_proto::mesh::mesh_config::OutboundTrafficPolicy;

/// How config is translated (must match the control plane's flags to predict its output).
#[derive(Debug, Clone, clap::Args)]
pub struct MeshFlags {
    /// SPIFFE trust domain.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,

    /// DNS suffix of service hostnames.
    #[arg(long, default_value = "cluster.local")]
    pub domain_suffix: String,

    /// Root namespace: policies there apply mesh-wide.
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,

    /// Cluster id (first part of workload uids).
    #[arg(long, default_value = "Kubernetes")]
    pub cluster_id: String,

    /// Network of every address (empty: the default network).
    #[arg(long, default_value = "")]
    pub network: String,

    /// Outbound traffic policy when the mesh config (ConfigMap `istio` in the root
    /// namespace, `outboundTrafficPolicy.mode`) sets none.
    #[arg(long, default_value = "ALLOW_ANY", value_parser = ["ALLOW_ANY", "REGISTRY_ONLY"])]
    pub outbound_traffic_policy: String,
}

impl MeshFlags {
    /// The translation options these flags stand for.
    pub fn options(&self) -> TranslateOptions {
        TranslateOptions {
            trust_domain: self.trust_domain.clone(),
            domain_suffix: self.domain_suffix.clone(),
            root_namespace: self.root_namespace.clone(),
            cluster_id: self.cluster_id.clone(),
            network: self.network.clone(),
            outbound_traffic_policy: OutboundTrafficPolicy::from_str_name(
                &self.outbound_traffic_policy,
            )
            .unwrap_or_default(),
        }
    }
}

/// Loads `paths` and translates them; load errors are printed and give `Err(exit code 1)`.
pub fn load_and_translate(
    paths: &[std::path::PathBuf],
    options: &TranslateOptions,
) -> Result<weft_control::translate::Output, std::process::ExitCode> {
    let loaded = weft_api::load_paths(paths);
    let errors: Vec<_> = loaded
        .findings
        .iter()
        .filter(|f| f.severity == weft_api::Severity::Error)
        .collect();
    if !errors.is_empty() {
        for finding in errors {
            eprintln!("error: {finding}");
        }
        eprintln!("not translated: fix the errors above (see `weft validate`)");
        return Err(std::process::ExitCode::from(1));
    }
    let snapshot = weft_api::ConfigSnapshot::new(loaded.objects);
    Ok(weft_control::translate::translate(&snapshot, options))
}
