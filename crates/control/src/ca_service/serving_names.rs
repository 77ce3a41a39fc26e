//! Which DNS names an identity may carry in a certificate. Only gateways get any: the
//! hostnames of their listeners with `weft.dev/auto-certificate`, so that a development setup
//! needs no hand-made serving certificate. A Gateway `<ns>/<gw>` of class `<class>` runs
//! under the service account `<gw>-<class>` in `<ns>`; that identity may have the hostname of
//! every listener of the translated `weft.l7.v1.Gateway` resource `<ns>/<gw>` marked
//! `auto_certificate`. The resource holds only Accepted listeners of Gateways of a weft class,
//! so the CA follows exactly the attachment decisions the gateway itself is sent.

use crate::translate::{Output, ResourceKey};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use weft_api::expand::gateway::gateway_service_account;
use weft_api::{ConfigSnapshot, ObjectSource};
use weft_identity::SpiffeId;
use weft_proto::GATEWAY_TYPE_URL;
use weft_proto::l7::Gateway;

/// The control plane's view of the DNS names each identity may obtain.
pub trait ServingNames: Send + Sync + 'static {
    /// Lower-case DNS names (`*.suffix` wildcards as written on the listener) `identity` may
    /// have in its certificate; empty for every identity that runs no such gateway.
    fn serving_names(&self, identity: &SpiffeId) -> BTreeSet<String>;
}

/// No identity may have DNS names (the CA without gateways).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoServingNames;

impl ServingNames for NoServingNames {
    fn serving_names(&self, _identity: &SpiffeId) -> BTreeSet<String> {
        BTreeSet::new()
    }
}

/// A fixed identity -> names map (tests).
#[derive(Debug, Clone, Default)]
pub struct StaticServingNames {
    names: BTreeMap<SpiffeId, BTreeSet<String>>,
}

impl StaticServingNames {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `identity` have `name`.
    #[must_use]
    pub fn with(mut self, identity: SpiffeId, name: &str) -> Self {
        self.names
            .entry(identity)
            .or_default()
            .insert(name.to_ascii_lowercase());
        self
    }
}

impl ServingNames for StaticServingNames {
    fn serving_names(&self, identity: &SpiffeId) -> BTreeSet<String> {
        self.names.get(identity).cloned().unwrap_or_default()
    }
}

/// The live answer of `weft control`: the config store's current Gateways and the latest
/// translation. Computed per request (only CSRs with DNS names ask), so it is never stale.
pub struct GatewayServingNames {
    store: Arc<dyn ObjectSource>,
    output: Arc<ArcSwap<Output>>,
    trust_domain: String,
}

impl GatewayServingNames {
    /// Reads Gateways from `store` and their translation from `output` (the pusher's).
    pub fn new(
        store: Arc<dyn ObjectSource>,
        output: Arc<ArcSwap<Output>>,
        trust_domain: &str,
    ) -> Self {
        Self {
            store,
            output,
            trust_domain: trust_domain.to_owned(),
        }
    }
}

impl ServingNames for GatewayServingNames {
    fn serving_names(&self, identity: &SpiffeId) -> BTreeSet<String> {
        let output = self.output.load();
        // the snapshot costs a copy of the configuration: only when a gateway could match
        let prefix = format!("{}/", identity.namespace());
        let gateways = output.of_type(GATEWAY_TYPE_URL);
        let mut in_namespace = gateways.range::<String, _>(&prefix..);
        if !in_namespace
            .next()
            .is_some_and(|(name, _)| name.starts_with(&prefix))
        {
            return BTreeSet::new();
        }
        let snapshot = self.store.snapshot();
        gateway_serving_names(&snapshot, &output, &self.trust_domain, identity)
    }
}

/// The auto-certificate hostnames of the Gateways that run under `identity` in `snapshot`,
/// as translated in `output` (see the module doc).
pub fn gateway_serving_names(
    snapshot: &ConfigSnapshot,
    output: &Output,
    trust_domain: &str,
    identity: &SpiffeId,
) -> BTreeSet<String> {
    if identity.trust_domain() != trust_domain {
        return BTreeSet::new();
    }
    let account = identity.service_account();
    snapshot
        .gateways()
        .filter(|(_, loaded)| loaded.object.namespace() == Some(identity.namespace()))
        .filter(|(gateway, loaded)| {
            let class = &gateway.spec.gateway_class_name;
            account == gateway_service_account(loaded.object.name(), class)
        })
        .filter_map(|(_, loaded)| {
            let name = format!("{}/{}", identity.namespace(), loaded.object.name());
            translated_gateway(output, name)
        })
        .flat_map(|gateway| auto_certificate_hostnames(&gateway))
        .collect()
}

/// The translated Gateway resource `name`, if there is one and it decodes.
fn translated_gateway(output: &Output, name: String) -> Option<Gateway> {
    let resource = output.get(&ResourceKey::new(GATEWAY_TYPE_URL, name.clone()))?;
    match resource.decode::<Gateway>() {
        Ok(gateway) => Some(gateway),
        Err(err) => {
            tracing::error!(gateway = %name, %err, "translated Gateway does not decode; no auto-certificate names for it");
            None
        }
    }
}

/// The lower-case hostnames of `gateway`'s listeners with `auto_certificate` (a listener
/// without a hostname has no name to certify).
pub fn auto_certificate_hostnames(gateway: &Gateway) -> BTreeSet<String> {
    gateway
        .listeners
        .iter()
        .filter(|listener| listener.auto_certificate && !listener.hostname.is_empty())
        .map(|listener| listener.hostname.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::Resource;
    use weft_proto::l7::Listener;

    const MANIFESTS: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  gatewayClassName: weft
  listeners:
  - {name: https, port: 443, protocol: HTTPS, hostname: shop.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: edge}
spec:
  gatewayClassName: istio
  listeners:
  - {name: https, port: 443, protocol: HTTPS, hostname: other.example.com}
";

    fn snapshot() -> ConfigSnapshot {
        let loaded = weft_api::parse_manifests(MANIFESTS, std::path::Path::new("gw.yaml"));
        assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
        ConfigSnapshot::new(loaded.objects)
    }

    fn listener(hostname: &str, auto_certificate: bool) -> Listener {
        Listener {
            name: hostname.to_owned(),
            hostname: hostname.to_owned(),
            auto_certificate,
            ..Listener::default()
        }
    }

    fn output() -> Output {
        let mut output = Output::default();
        for (name, listeners) in [
            (
                "edge/public",
                vec![
                    listener("Shop.Example.com", true),
                    listener("*.example.com", true),
                    listener("manual.example.com", false),
                    listener("", true),
                ],
            ),
            ("edge/other", vec![listener("other.example.com", true)]),
        ] {
            let gateway = Gateway {
                listeners,
                ..Gateway::default()
            };
            let key = ResourceKey::new(GATEWAY_TYPE_URL, name);
            output.insert(&key, Resource::encode(name.to_owned(), vec![], &gateway));
        }
        output
    }

    fn names(identity: &str) -> Vec<String> {
        let identity = identity.parse().expect("id");
        let names = gateway_serving_names(&snapshot(), &output(), "cluster.local", &identity);
        names.into_iter().collect()
    }

    #[test]
    fn a_gateway_identity_may_have_its_auto_certificate_hostnames_only() {
        assert_eq!(
            names("spiffe://cluster.local/ns/edge/sa/public-weft"),
            ["*.example.com", "shop.example.com"]
        );
        assert_eq!(
            names("spiffe://cluster.local/ns/edge/sa/other-istio"),
            ["other.example.com"]
        );
    }

    #[test]
    fn other_identities_may_have_no_names() {
        for identity in [
            "spiffe://cluster.local/ns/edge/sa/public",
            "spiffe://cluster.local/ns/edge/sa/public-istio",
            "spiffe://cluster.local/ns/shop/sa/public-weft",
            "spiffe://other.domain/ns/edge/sa/public-weft",
            "spiffe://cluster.local/ns/edge/sa/default",
        ] {
            assert!(names(identity).is_empty(), "{identity}");
        }
    }

    #[test]
    fn a_gateway_without_a_translated_resource_gets_no_names() {
        let identity = "spiffe://cluster.local/ns/edge/sa/public-weft"
            .parse()
            .expect("id");
        let names =
            gateway_serving_names(&snapshot(), &Output::default(), "cluster.local", &identity);
        assert!(names.is_empty());
    }
}
