//! The `weft.l7.v1.Gateway` resource: one per Gateway of a class weft runs, with its
//! served listeners (certificates from Secrets, also across namespaces with a
//! ReferenceGrant), the routes attached to each (hostnames intersected, backends resolved,
//! `via_waypoint`), the policies targeting it; readable only by the gateway's node and
//! identity; and incremental edits (a Secret rotation, a route edit, the pod moving to
//! another node) that keep it equal to a full translation.

use std::path::PathBuf;

use weft_api::{ConfigSnapshot, LoadedObject, load_paths, parse_manifests};
use weft_control::translate::{
    GATEWAY, GATEWAY_NAME_LABEL, Output, ResourceKey, TranslateOptions, Translator, translate,
};
use weft_proto::GATEWAY_TYPE_URL;
use weft_proto::l7::{Gateway, Listener, listener};

const NAME: &str = "shop/ingress";
const PRODUCTPAGE: &str = "shop/productpage.shop.svc.cluster.local";
const REVIEWS: &str = "shop/reviews.shop.svc.cluster.local";

fn objects() -> Vec<LoadedObject> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gateway-mesh");
    let loaded = load_paths(&[dir]);
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    loaded.objects
}

fn gateway_in(output: &Output) -> Gateway {
    let resource = output
        .get(&ResourceKey::gateway(NAME))
        .expect("the gateway resource");
    resource.decode().expect("a Gateway")
}

fn listener<'g>(gateway: &'g Gateway, name: &str) -> &'g Listener {
    let found = gateway.listeners.iter().find(|l| l.name == name);
    found.unwrap_or_else(|| panic!("listener {name} in {:?}", gateway.listeners))
}

/// The snapshot with `edit` applied to the text of the test mesh.
fn edited(edit: impl Fn(String) -> String) -> Vec<LoadedObject> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gateway-mesh/mesh.yaml");
    let text = edit(std::fs::read_to_string(&path).expect("mesh.yaml"));
    let loaded = parse_manifests(&text, &path);
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    loaded.objects
}

#[test]
fn only_gateways_of_a_weft_class_get_a_resource() {
    let output = translate(
        &ConfigSnapshot::new(objects()),
        &TranslateOptions::default(),
    );
    let names: Vec<&String> = output.of_type(GATEWAY_TYPE_URL).keys().collect();
    assert_eq!(
        names,
        [NAME],
        "no resource for the waypoint or a foreign class"
    );
    let gateway = gateway_in(&output);
    assert_eq!(
        (gateway.namespace.as_str(), gateway.name.as_str()),
        ("shop", "ingress")
    );
    assert_eq!(gateway.generation, 3);
    assert_eq!(gateway.trusted_hops, 1);
}

#[test]
fn listeners_carry_protocol_port_hostname_and_certificates() {
    let output = translate(
        &ConfigSnapshot::new(objects()),
        &TranslateOptions::default(),
    );
    let gateway = gateway_in(&output);
    let shown: Vec<(&str, u32, listener::Protocol, listener::TlsMode)> = gateway
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.port, l.protocol(), l.tls_mode()))
        .collect();
    use listener::{Protocol as P, TlsMode as T};
    assert_eq!(
        shown,
        [
            ("http", 80, P::Http, T::Terminate),
            ("https", 443, P::Https, T::Terminate),
            ("passthrough", 8443, P::Tls, T::Passthrough),
            ("tcp", 5432, P::Tcp, T::Terminate),
        ]
    );
    assert_eq!(listener(&gateway, "http").hostname, "*.example.com");
    let https = listener(&gateway, "https");
    let sources: Vec<&str> = https
        .certificates
        .iter()
        .map(|c| c.source.as_str())
        .collect();
    assert_eq!(sources, ["shop/shop-cert", "certs/shared-cert"]);
    for certificate in &https.certificates {
        assert!(
            certificate
                .cert_chain
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(certificate.private_key.contains("PRIVATE KEY-----"));
    }
    assert!(listener(&gateway, "passthrough").certificates.is_empty());
}

#[test]
fn routes_attach_with_intersected_hostnames_and_resolved_backends() {
    let output = translate(
        &ConfigSnapshot::new(objects()),
        &TranslateOptions::default(),
    );
    let gateway = gateway_in(&output);
    let http = listener(&gateway, "http");
    let names: Vec<&str> = http.http_routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["partner", "web"],
        "a route of another namespace is not allowed by default"
    );
    let partner: Vec<&str> = http.http_routes[0]
        .rules
        .iter()
        .flat_map(|r| &r.backends)
        .map(|b| b.service.as_str())
        .collect();
    assert_eq!(
        partner,
        ["shop/api.partner.example", "shop/api.partner.example"],
        "a ServiceEntry and an Istio Hostname backend"
    );
    let web = &http.http_routes[1];
    assert_eq!(
        web.hostnames,
        ["shop.example.com"],
        "*.example.com ∩ the route's"
    );
    let backends: Vec<(&str, bool)> = web
        .rules
        .iter()
        .flat_map(|r| &r.backends)
        .map(|b| (b.service.as_str(), b.via_waypoint))
        .collect();
    assert_eq!(backends, [(REVIEWS, true), (PRODUCTPAGE, false)]);
    let https = listener(&gateway, "https");
    assert_eq!(
        https.http_routes[0].hostnames,
        ["shop.example.com", "shop.example.org"]
    );

    let passthrough = listener(&gateway, "passthrough");
    let secure = &passthrough.l4_routes[0];
    assert_eq!(secure.name, "secure");
    assert_eq!(secure.hostnames, ["secure.example.com"]);
    assert_eq!(
        secure.backends[0].service,
        "shop/secure.shop.svc.cluster.local"
    );
    assert_eq!(secure.backends[0].port, 8443);

    let tcp = listener(&gateway, "tcp");
    let db = &tcp.l4_routes[0];
    let weights: Vec<(u32, &str)> = db
        .backends
        .iter()
        .map(|b| (b.weight, b.unresolved.split(':').next().unwrap_or_default()))
        .collect();
    assert_eq!(weights, [(3, ""), (1, "BackendNotFound")]);
    assert!(http.l4_routes.is_empty() && tcp.http_routes.is_empty());
}

#[test]
fn policies_and_jwt_rules_targeting_the_gateway_are_attached() {
    let output = translate(
        &ConfigSnapshot::new(objects()),
        &TranslateOptions::default(),
    );
    let gateway = gateway_in(&output);
    let policy = gateway.policies[0].policy.as_ref().expect("policy");
    assert_eq!(policy.name, "ingress-deny-admin");
    assert!(gateway.policies[0].services.is_empty());
    assert_eq!(gateway.jwt_rules[0].issuer, "https://issuer.example.com");
}

/// Only the node proxies of the nodes running a pod of the gateway (`node-a` here, plus
/// any pod expansion gives it) and the gateway's own identity (`<gw>-<class>`) may receive
/// the resource.
#[test]
fn the_resource_is_readable_only_by_its_nodes_and_identity() {
    let snapshot = ConfigSnapshot::new(objects());
    let output = translate(&snapshot, &TranslateOptions::default());
    let resource = output.get(&ResourceKey::gateway(NAME)).expect("resource");
    let mut expected: Vec<String> = snapshot
        .pods()
        .iter()
        .filter(|p| p.namespace() == "shop")
        .filter(|p| p.labels().get(GATEWAY_NAME_LABEL).map(String::as_str) == Some("ingress"))
        .filter_map(|p| p.node_name().map(|n| format!("node/{n}")))
        .chain(["spiffe://cluster.local/ns/shop/sa/ingress-istio".to_owned()])
        .collect();
    expected.sort();
    expected.dedup();
    assert!(expected.contains(&"node/node-a".to_owned()), "{expected:?}");
    assert_eq!(resource.readers.as_deref(), Some(expected.as_slice()));
}

/// The test mesh without the objects named `names`.
fn without(names: &[&str]) -> Vec<LoadedObject> {
    let objects = objects().into_iter();
    objects
        .filter(|o| !names.contains(&o.object.object_ref().name.as_str()))
        .collect()
}

/// An HTTPS listener left without a usable certificate stays on the gateway without one
/// (the gateway closes its connections): left out, its hostname would be answered by a
/// wildcard listener of the port with that listener's certificate and routes.
#[test]
fn unusable_certificates_are_skipped_and_a_listener_without_one_fails_closed() {
    let no_grant = without(&["gateways-use-certs"]);
    let output = translate(&ConfigSnapshot::new(no_grant), &TranslateOptions::default());
    let https = listener(&gateway_in(&output), "https").clone();
    let sources: Vec<&str> = https
        .certificates
        .iter()
        .map(|c| c.source.as_str())
        .collect();
    assert_eq!(sources, ["shop/shop-cert"]);

    let no_secret = without(&["shop-cert", "shared-cert"]);
    let output = translate(
        &ConfigSnapshot::new(no_secret),
        &TranslateOptions::default(),
    );
    let gateway = gateway_in(&output);
    let names: Vec<&str> = gateway.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["http", "https", "passthrough", "tcp"]);
    assert_fails_closed(listener(&gateway, "https"));
}

/// A terminating listener the gateway must close: no certificate, none from the CA, no
/// client validation, no routes.
fn assert_fails_closed(listener: &Listener) {
    assert!(listener.certificates.is_empty(), "{listener:?}");
    assert!(!listener.auto_certificate, "{listener:?}");
    assert!(listener.client_validation.is_none(), "{listener:?}");
    assert!(listener.http_routes.is_empty(), "{listener:?}");
}

#[test]
fn the_auto_certificate_option_replaces_certificate_refs() {
    let auto = edited(|text| {
        text.replace(
            "      mode: Terminate\n",
            "      mode: Terminate\n      options: {weft.dev/auto-certificate: \"true\"}\n",
        )
    });
    let output = translate(&ConfigSnapshot::new(auto), &TranslateOptions::default());
    let https = listener(&gateway_in(&output), "https").clone();
    assert!(https.auto_certificate);
    assert!(https.certificates.is_empty());
}

/// Rendering (`/debug/configz`, `weft x translate`) never shows a private key.
#[test]
fn rendering_redacts_private_keys() {
    let output = translate(
        &ConfigSnapshot::new(objects()),
        &TranslateOptions::default(),
    );
    let resource = output.get(&ResourceKey::gateway(NAME)).expect("resource");
    let json = GATEWAY.render(&resource.encoded).expect("renders");
    let text = json.to_string();
    assert!(text.contains("<redacted>"), "{text}");
    assert!(!text.contains("BEGIN PRIVATE KEY"), "{text}");
    assert!(text.contains("BEGIN CERTIFICATE"), "{text}");
}

/// A named edit of the test mesh's text.
type Edit = fn(String) -> String;

/// Each edit re-translates the gateway to exactly what a full translation gives.
#[test]
fn incremental_edits_match_a_full_translation() {
    let options = TranslateOptions::default();
    let before = ConfigSnapshot::new(objects());
    let mut translator = Translator::new(options.clone());
    translator.full(&before);
    let version = |t: &Translator| {
        t.output()
            .version(&ResourceKey::gateway(NAME))
            .map(str::to_owned)
    };
    let edits: [(&str, Edit); 5] = [
        ("secret rotated", |t| {
            t.replacen(
                "stringData:\n  tls.crt: |\n",
                "stringData:\n  tls.crt: |\n      # rotated\n",
                1,
            )
        }),
        ("route edited", |t| {
            t.replace("value: /reviews}", "value: /ratings}")
        }),
        ("pod moved", |t| {
            t.replace(
                "nodeName: node-a\n  serviceAccountName: ingress-istio",
                "nodeName: node-b\n  serviceAccountName: ingress-istio",
            )
        }),
        ("backend TLS policy added", |t| {
            t + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\n\
                 metadata: {name: productpage-tls, namespace: shop}\nspec:\n  \
                 targetRefs: [{group: '', kind: Service, name: productpage}]\n  \
                 validation: {hostname: productpage.shop, wellKnownCACertificates: System}\n"
        }),
        ("backend leaves the waypoint", |t| {
            t.replace(", istio.io/ingress-use-waypoint: \"true\"", "")
        }),
    ];
    let mut previous = before;
    for (what, edit) in edits {
        let old = version(&translator);
        let next = ConfigSnapshot::new(edited(edit));
        let change = translator.update(&previous, &next);
        assert!(
            change.updated.contains(&ResourceKey::gateway(NAME)),
            "{what}: {change:?}"
        );
        assert_ne!(version(&translator), old, "{what}");
        let full = translate(&next, &options);
        assert_eq!(
            translator.output().get(&ResourceKey::gateway(NAME)),
            full.get(&ResourceKey::gateway(NAME)),
            "{what}"
        );
        previous = next;
    }
}

/// A CA certificate of the test mesh (`shop-cert`'s, self-signed) as an indented PEM block.
fn ca_pem(indent: &str) -> String {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gateway-mesh/mesh.yaml"),
    )
    .expect("mesh.yaml");
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text[start..]
        .find("-----END CERTIFICATE-----")
        .expect("its end")
        + start;
    let block = &text[start..end + "-----END CERTIFICATE-----".len()];
    block
        .lines()
        .map(|l| format!("{indent}{}\n", l.trim()))
        .collect()
}

/// The test mesh with the ingress Gateway's `spec.tls` set to frontend validation from the
/// ConfigMap `client-ca` and the ClusterTrustBundle `corp-roots` (mode `mode`), the backend
/// client certificate `shop-cert`, and a BackendTLSPolicy for productpage trusting
/// `corp-roots`; `with_config_map` adds the ConfigMap.
fn with_gateway_tls(text: String, mode: &str, with_config_map: bool) -> String {
    let tls = format!(
        "  gatewayClassName: istio\n  tls:\n    frontend:\n      default:\n        validation:\n          \
         mode: {mode}\n          caCertificateRefs:\n          - {{group: '', kind: ConfigMap, name: client-ca}}\n          \
         - {{group: certificates.k8s.io, kind: ClusterTrustBundle, name: corp-roots}}\n    backend:\n      \
         clientCertificateRef: {{name: shop-cert}}\n"
    );
    let mut text = text.replacen("  gatewayClassName: istio\n", &tls, 1);
    text += &format!(
        "---\napiVersion: certificates.k8s.io/v1beta1\nkind: ClusterTrustBundle\nmetadata: {{name: corp-roots}}\n\
         spec:\n  trustBundle: |\n{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\n\
         metadata: {{name: productpage-tls, namespace: shop}}\nspec:\n  targetRefs: [{{group: '', kind: Service, name: productpage}}]\n  \
         validation:\n    hostname: productpage.shop\n    caCertificateRefs: [{{group: certificates.k8s.io, kind: ClusterTrustBundle, name: corp-roots}}]\n",
        ca_pem("    ")
    );
    if with_config_map {
        text += &format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: client-ca, namespace: shop}}\ndata:\n  ca.crt: |\n{}",
            ca_pem("    ")
        );
    }
    text
}

#[test]
fn frontend_validation_and_the_backend_client_certificate_reach_the_resource() {
    let objects = edited(|t| with_gateway_tls(t, "AllowInsecureFallback", true));
    let output = translate(&ConfigSnapshot::new(objects), &TranslateOptions::default());
    let gateway = gateway_in(&output);
    let validation = listener(&gateway, "https")
        .client_validation
        .clone()
        .expect("the HTTPS listener validates clients");
    assert_eq!(
        validation.ca_bundle.matches("BEGIN CERTIFICATE").count(),
        2,
        "the ConfigMap's and the ClusterTrustBundle's CA: {}",
        validation.ca_bundle
    );
    assert!(validation.allow_insecure_fallback);
    assert_eq!(validation.source, "spec.tls.frontend.default.validation");
    for other in ["http", "passthrough", "tcp"] {
        assert_eq!(listener(&gateway, other).client_validation, None, "{other}");
    }
    let [entry] = gateway.backend_tls.as_slice() else {
        panic!("one backend TLS entry: {:?}", gateway.backend_tls);
    };
    assert_eq!(entry.service, PRODUCTPAGE);
    assert!(
        entry.ca_bundle.contains("BEGIN CERTIFICATE"),
        "trust from the ClusterTrustBundle"
    );
    let client = entry
        .client_certificate
        .as_ref()
        .expect("the gateway's client certificate");
    assert_eq!(client.source, "shop/shop-cert");
    assert!(client.private_key.contains("BEGIN PRIVATE KEY"));
    let resource = output.get(&ResourceKey::gateway(NAME)).expect("resource");
    let rendered = GATEWAY
        .render(&resource.encoded)
        .expect("renders")
        .to_string();
    assert!(!rendered.contains("BEGIN PRIVATE KEY"), "{rendered}");
}

/// Without a usable CA the HTTPS listener is not served (it fails closed); creating the
/// ConfigMap brings it back through an incremental update equal to a full translation.
#[test]
fn an_https_listener_without_a_usable_client_ca_fails_closed_until_its_config_map_exists() {
    let options = TranslateOptions::default();
    let without = edited(|t| {
        with_gateway_tls(t, "AllowValidOnly", false)
            .replace("name: corp-roots}\n    backend", "name: gone}\n    backend")
    });
    let before = ConfigSnapshot::new(without);
    let mut translator = Translator::new(options.clone());
    translator.full(&before);
    let gateway: Gateway = translator
        .output()
        .get(&ResourceKey::gateway(NAME))
        .expect("resource")
        .decode()
        .expect("a Gateway");
    assert_fails_closed(listener(&gateway, "https"));
    let after = ConfigSnapshot::new(edited(|t| {
        with_gateway_tls(t, "AllowValidOnly", true)
            .replace("name: corp-roots}\n    backend", "name: gone}\n    backend")
    }));
    let change = translator.update(&before, &after);
    assert!(
        change.updated.contains(&ResourceKey::gateway(NAME)),
        "{change:?}"
    );
    let full = translate(&after, &options);
    assert_eq!(
        translator.output().get(&ResourceKey::gateway(NAME)),
        full.get(&ResourceKey::gateway(NAME))
    );
    let validation = listener(&gateway_in(&full), "https")
        .client_validation
        .clone();
    let validation = validation.expect("served with the ConfigMap's CA");
    assert!(!validation.allow_insecure_fallback);
    assert_eq!(validation.ca_bundle.matches("BEGIN CERTIFICATE").count(), 1);
}

/// A ListenerSet's HTTPS listener is checked against the Gateway's client CAs, resolved in
/// the Gateway's namespace: a ListenerSet in another namespace cannot pick the CA by
/// creating a ConfigMap of the referenced name in its own.
#[test]
fn a_listener_set_listener_gets_the_gateways_client_validation_from_the_gateways_namespace() {
    let objects = edited(|t| {
        let secret = t
            .split("\n---\n")
            .find(|doc| doc.contains("name: shop-cert, namespace: shop"))
            .expect("the shop-cert Secret")
            .replace("namespace: shop", "namespace: team");
        let mut text = with_gateway_tls(t, "AllowValidOnly", true).replacen(
            "  gatewayClassName: istio\n",
            "  gatewayClassName: istio\n  allowedListeners: {namespaces: {from: All}}\n",
            1,
        );
        text += &format!(
            "\n---\n{secret}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\n\
             metadata: {{name: extra, namespace: team}}\nspec:\n  parentRef: {{name: ingress, namespace: shop}}\n  \
             listeners:\n  - {{name: https, port: 9443, protocol: HTTPS, tls: {{certificateRefs: [{{name: shop-cert}}]}}}}\n"
        );
        text
    });
    let output = translate(&ConfigSnapshot::new(objects), &TranslateOptions::default());
    let gateway = gateway_in(&output);
    let validation = listener(&gateway, "team/extra/https")
        .client_validation
        .clone()
        .expect("the ListenerSet's HTTPS listener validates clients");
    assert_eq!(
        validation.ca_bundle.matches("BEGIN CERTIFICATE").count(),
        2,
        "shop's client-ca ConfigMap and the ClusterTrustBundle: {}",
        validation.ca_bundle
    );
}
