//! A Gateway's `spec.tls`: frontend validation reasons on its HTTPS listeners (per port or
//! by default) and the backend client certificate's reasons on the Gateway.

use super::super::{Status, attach, statuses, tls_references};
use super::{is, listener_condition, snapshot, status_of};
use crate::Object;
use crate::object::{Kind, ObjectRef};

const PEM: &str = "    -----BEGIN CERTIFICATE-----\n    MIIBAA==\n    -----END CERTIFICATE-----\n";

/// Gateway `infra/gw`: HTTPS listeners `a` (443) and `b` (8443), an HTTP listener `plain`,
/// the Secret `cert`, and `tls` as the Gateway's `spec.tls`.
fn gateway(tls: &str) -> String {
    format!(
        r"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: istio
  tls:
{tls}
  listeners:
  - {{name: a, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: b, port: 8443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: plain, port: 80, protocol: HTTP}}
---
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: infra}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{PEM}  tls.key: |
    -----BEGIN PRIVATE KEY-----
    MIIBAA==
    -----END PRIVATE KEY-----
"
    )
}

fn config_map(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata:\n  ca.crt: |\n{PEM}"
    )
}

fn trust_bundle(name: &str) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1beta1\nkind: ClusterTrustBundle\nmetadata: {{name: {name}}}\nspec:\n  trustBundle: |\n{PEM}"
    )
}

fn default_validation(refs: &str) -> String {
    format!(
        "    frontend:\n      default:\n        validation:\n          caCertificateRefs: {refs}"
    )
}

#[test]
fn frontend_ca_references_resolve_or_give_their_reasons() {
    let good = format!(
        "{}\n---\n{}",
        gateway(&default_validation(
            "[{group: '', kind: ConfigMap, name: ca}]"
        )),
        config_map("infra", "ca")
    );
    assert_eq!(
        listener_condition(&good, "gw", "a", "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
    let bundle = format!(
        "{}\n---\n{}",
        gateway(&default_validation(
            "[{group: certificates.k8s.io, kind: ClusterTrustBundle, name: corp}]"
        )),
        trust_bundle("corp")
    );
    assert_eq!(
        listener_condition(&bundle, "gw", "b", "Accepted"),
        is("True", "Accepted")
    );
    let cases = [
        (
            "[{group: '', kind: ConfigMap, name: missing}]",
            "InvalidCACertificateRef",
        ),
        (
            "[{group: '', kind: Secret, name: cert}]",
            "InvalidCACertificateKind",
        ),
        (
            "[{group: '', kind: ConfigMap, name: ca, namespace: apps}]",
            "RefNotPermitted",
        ),
    ];
    for (refs, reason) in cases {
        let yaml = format!(
            "{}\n---\n{}",
            gateway(&default_validation(refs)),
            config_map("apps", "ca")
        );
        for listener in ["a", "b"] {
            assert_eq!(
                listener_condition(&yaml, "gw", listener, "ResolvedRefs"),
                is("False", reason),
                "{refs}"
            );
            assert_eq!(
                listener_condition(&yaml, "gw", listener, "Accepted"),
                is("False", "NoValidCACertificate"),
                "{refs}"
            );
        }
        // An HTTP listener is not concerned.
        assert_eq!(
            listener_condition(&yaml, "gw", "plain", "Accepted"),
            is("True", "Accepted")
        );
        let attachment = attach(&snapshot(&yaml), &gateway_ref()).unwrap();
        assert!(!attachment.listeners[0].accepted, "{refs}: not served");
    }
    // One usable reference beside a bad one: served, ResolvedRefs still False.
    let partly = format!(
        "{}\n---\n{}",
        gateway(&default_validation(
            "[{group: '', kind: ConfigMap, name: ca}, {group: '', kind: ConfigMap, name: gone}]"
        )),
        config_map("infra", "ca")
    );
    assert_eq!(
        listener_condition(&partly, "gw", "a", "ResolvedRefs"),
        is("False", "InvalidCACertificateRef")
    );
    assert_eq!(
        listener_condition(&partly, "gw", "a", "Accepted"),
        is("True", "Accepted")
    );
}

#[test]
fn a_per_port_entry_replaces_the_default_on_its_port() {
    let tls = "    frontend:\n      default:\n        validation:\n          caCertificateRefs: [{group: '', kind: ConfigMap, name: missing}]\n      perPort:\n      - port: 8443\n        tls:\n          validation:\n            caCertificateRefs: [{group: '', kind: ConfigMap, name: ca}]\n            mode: AllowInsecureFallback";
    let yaml = format!("{}\n---\n{}", gateway(tls), config_map("infra", "ca"));
    assert_eq!(
        listener_condition(&yaml, "gw", "a", "Accepted"),
        is("False", "NoValidCACertificate")
    );
    assert_eq!(
        listener_condition(&yaml, "gw", "b", "Accepted"),
        is("True", "Accepted")
    );
    assert_eq!(
        listener_condition(&yaml, "gw", "b", "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
}

fn gateway_ref() -> ObjectRef {
    ObjectRef {
        kind: Kind::Gateway,
        namespace: Some("infra".into()),
        name: "gw".into(),
    }
}

/// The Gateway's own `ResolvedRefs` condition, if it has one.
fn gateway_resolved_refs(yaml: &str) -> Option<(String, String)> {
    let all = statuses(&snapshot(yaml));
    let Status::Gateway(status) = status_of(&all, "Gateway", "gw") else {
        panic!("not a gateway status");
    };
    let found = status.conditions.iter().find(|c| c.type_ == "ResolvedRefs");
    found.map(|c| (c.status.clone(), c.reason.clone()))
}

#[test]
fn the_backend_client_certificate_resolves_or_gives_its_reason() {
    let with = |reference: &str| {
        gateway(&format!(
            "    backend:\n      clientCertificateRef: {reference}"
        ))
    };
    assert_eq!(gateway_resolved_refs(&gateway("    {}")), None);
    assert_eq!(
        gateway_resolved_refs(&with("{name: cert}")),
        Some(is("True", "ResolvedRefs"))
    );
    assert_eq!(
        gateway_resolved_refs(&with("{name: nope}")),
        Some(is("False", "InvalidClientCertificateRef"))
    );
    assert_eq!(
        gateway_resolved_refs(&with("{name: cert, namespace: apps}")),
        Some(is("False", "RefNotPermitted"))
    );
}

#[test]
fn tls_references_list_every_secret_config_map_and_trust_bundle() {
    let tls = "    frontend:\n      default:\n        validation:\n          caCertificateRefs:\n          - {group: '', kind: ConfigMap, name: ca}\n          - {group: certificates.k8s.io, kind: ClusterTrustBundle, name: corp}\n    backend:\n      clientCertificateRef: {name: client, namespace: certs}";
    let snapshot = snapshot(&gateway(tls));
    let Some(loaded) = snapshot.get(Kind::Gateway, Some("infra"), "gw") else {
        panic!("no gateway");
    };
    let Object::Gateway(gateway) = &loaded.object else {
        panic!("not a gateway");
    };
    let object = |kind, namespace: Option<&str>, name: &str| ObjectRef {
        kind,
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    };
    let mut expected = vec![
        object(Kind::Secret, Some("infra"), "cert"),
        object(Kind::Secret, Some("certs"), "client"),
        object(Kind::ConfigMap, Some("infra"), "ca"),
        object(Kind::ClusterTrustBundle, None, "corp"),
    ];
    expected.sort();
    assert_eq!(tls_references(gateway, "infra"), expected);
}
