//! Gateway and listener status: protocols, route kinds, conflicts, certificates, addresses.

use super::super::{Status, attach, statuses};
use super::{is, listener_condition, snapshot, status_of};
use crate::object::{Kind, ObjectRef};

fn gateway(listeners: &str) -> String {
    format!(
        r"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: istio
  listeners:
{listeners}
"
    )
}

const SECRET: &str = r"
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: NAMESPACE}
type: TYPE
stringData:
  tls.crt: |
    -----BEGIN CERTIFICATE-----
    MIIBAA==
    -----END CERTIFICATE-----
  tls.key: |
    -----BEGIN PRIVATE KEY-----
    MIIBAA==
    -----END PRIVATE KEY-----
";

pub(super) fn secret(namespace: &str, type_: &str) -> String {
    SECRET
        .replace("NAMESPACE", namespace)
        .replace("TYPE", type_)
}

fn https(certificate_ref: &str) -> String {
    gateway(&format!(
        "  - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{certificate_ref}]}}}}"
    ))
}

#[test]
fn an_unsupported_protocol_is_not_accepted_nor_is_a_gateway_of_only_that() {
    let yaml = gateway("  - {name: dns, port: 53, protocol: UDP}");
    assert_eq!(
        listener_condition(&yaml, "gw", "dns", "Accepted"),
        is("False", "UnsupportedProtocol")
    );
    let all = statuses(&snapshot(&yaml));
    let Status::Gateway(status) = status_of(&all, "Gateway", "gw") else {
        panic!("not a gateway status");
    };
    assert_eq!(status.conditions[0].reason, "ListenersNotValid");
    assert!(!status.conditions[0].is_true());
    assert!(status.listeners[0].supported_kinds.is_empty());
}

#[test]
fn route_kinds_the_protocol_cannot_carry_are_invalid_route_kinds() {
    let yaml = gateway(
        "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}, {kind: HTTPRoute}]}}",
    );
    assert_eq!(
        listener_condition(&yaml, "gw", "http", "ResolvedRefs"),
        is("False", "InvalidRouteKinds")
    );
    assert_eq!(
        listener_condition(&yaml, "gw", "http", "Accepted"),
        is("True", "Accepted")
    );
    let all = statuses(&snapshot(&yaml));
    let Status::Gateway(status) = status_of(&all, "Gateway", "gw") else {
        panic!("not a gateway status");
    };
    let kinds: Vec<&str> = status.listeners[0]
        .supported_kinds
        .iter()
        .map(|k| k.kind.as_str())
        .collect();
    assert_eq!(kinds, ["HTTPRoute"]);
}

#[test]
fn listeners_sharing_a_port_conflict_by_protocol_or_hostname() {
    let yaml = gateway(
        "  - {name: web, port: 80, protocol: HTTP}\n  - {name: raw, port: 80, protocol: TCP}\n  - {name: other, port: 80, protocol: HTTP, hostname: a.example.com}\n  - {name: same, port: 80, protocol: HTTP, hostname: a.example.com}\n  - {name: tls, port: 443, protocol: TLS, hostname: b.example.com, tls: {mode: Passthrough}}",
    );
    let conflicted = |name: &str| listener_condition(&yaml, "gw", name, "Conflicted");
    assert_eq!(conflicted("web"), is("False", "NoConflicts"));
    assert_eq!(conflicted("raw"), is("True", "ProtocolConflict"));
    assert_eq!(conflicted("other"), is("False", "NoConflicts"));
    assert_eq!(conflicted("same"), is("True", "HostnameConflict"));
    assert_eq!(conflicted("tls"), is("False", "NoConflicts"));
    let gateway = ObjectRef {
        kind: Kind::Gateway,
        namespace: Some("infra".to_owned()),
        name: "gw".to_owned(),
    };
    let served: Vec<bool> = attach(&snapshot(&yaml), &gateway)
        .expect("weft runs gw")
        .listeners
        .iter()
        .map(|l| l.accepted)
        .collect();
    assert_eq!(served, [true, false, true, false, true]);
}

#[test]
fn certificate_refs_must_be_tls_secrets_in_reach() {
    let cases = [
        (https("{name: cert}"), "InvalidCertificateRef"),
        (
            format!(
                "{}\n---\n{}",
                https("{name: cert}"),
                secret("infra", "Opaque")
            ),
            "InvalidCertificateRef",
        ),
        (
            format!(
                "{}\n---\n{}",
                https("{name: cert}"),
                secret("infra", "kubernetes.io/tls").replace("MIIBAA==", "not base64 !")
            ),
            "InvalidCertificateRef",
        ),
        (
            format!(
                "{}\n---\n{}",
                https("{group: example.com, kind: Vault, name: cert}"),
                secret("infra", "kubernetes.io/tls")
            ),
            "InvalidCertificateRef",
        ),
        (
            format!(
                "{}\n---\n{}",
                https("{name: cert, namespace: apps}"),
                secret("apps", "kubernetes.io/tls")
            ),
            "RefNotPermitted",
        ),
    ];
    for (yaml, reason) in &cases {
        assert_eq!(
            listener_condition(yaml, "gw", "https", "ResolvedRefs"),
            is("False", reason),
            "{yaml}"
        );
        assert_eq!(
            listener_condition(yaml, "gw", "https", "Programmed"),
            is("False", "Invalid")
        );
    }
    let granted = format!(
        r"{}
---
{}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: gateways, namespace: apps}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}}]
  to: [{{group: '', kind: Secret}}]
",
        https("{name: cert, namespace: apps}"),
        secret("apps", "kubernetes.io/tls")
    );
    assert_eq!(
        listener_condition(&granted, "gw", "https", "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
}

#[test]
fn an_auto_certificate_listener_needs_no_secret() {
    let option = gateway(
        "  - {name: https, port: 443, protocol: HTTPS, tls: {options: {weft.dev/auto-certificate: 'true'}}}",
    );
    assert_eq!(
        listener_condition(&option, "gw", "https", "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
    let annotated =
        gateway("  - {name: https, port: 443, protocol: HTTPS, tls: {mode: Terminate}}").replace(
            "namespace: infra}",
            "namespace: infra, annotations: {weft.dev/auto-certificate: 'true'}}",
        );
    assert_eq!(
        listener_condition(&annotated, "gw", "https", "ResolvedRefs"),
        is("True", "ResolvedRefs")
    );
}

#[test]
fn a_gateway_is_programmed_at_the_addresses_of_its_pods() {
    let yaml = gateway("  - {name: http, port: 80, protocol: HTTP}");
    let all = statuses(&snapshot(&yaml));
    let Status::Gateway(status) = status_of(&all, "Gateway", "gw") else {
        panic!("not a gateway status");
    };
    let programmed = &status.conditions[1];
    if status.addresses.is_empty() {
        assert_eq!(programmed.reason, "AddressNotAssigned");
    }
    let with_pod = format!(
        r"{yaml}
---
apiVersion: v1
kind: Pod
metadata: {{name: gw-pod, namespace: infra, labels: {{gateway.networking.k8s.io/gateway-name: gw}}}}
spec: {{containers: [{{name: gw, image: weft}}]}}
status: {{podIP: 10.1.2.3}}
"
    );
    let all = statuses(&snapshot(&with_pod));
    let Status::Gateway(status) = status_of(&all, "Gateway", "gw") else {
        panic!("not a gateway status");
    };
    assert!(status.addresses.iter().any(|a| a.value == "10.1.2.3"));
    assert_eq!(status.conditions[1].reason, "Programmed");
    assert_eq!(
        listener_condition(&with_pod, "gw", "http", "Programmed"),
        is("True", "Programmed")
    );
}

#[test]
fn requested_addresses_weft_cannot_give_are_reported() {
    let pod = r"
---
apiVersion: v1
kind: Pod
metadata: {name: gw-pod, namespace: infra, labels: {gateway.networking.k8s.io/gateway-name: gw}}
spec: {containers: [{name: gw, image: weft}]}
status: {podIP: 10.1.2.3}
";
    let with = |addresses: &str| {
        let yaml = gateway("  - {name: http, port: 80, protocol: HTTP}").replace(
            "  gatewayClassName: istio\n",
            &format!("  gatewayClassName: istio\n  addresses: {addresses}\n"),
        ) + pod;
        let all = statuses(&snapshot(&yaml));
        let Status::Gateway(status) = status_of(&all, "Gateway", "gw") else {
            panic!("not a gateway status");
        };
        let reasons: Vec<(String, String)> = status
            .conditions
            .iter()
            .map(|c| (c.status.clone(), c.reason.clone()))
            .collect();
        reasons
    };
    assert_eq!(
        with("[{value: 10.1.2.3}]"),
        [is("True", "Accepted"), is("True", "Programmed")]
    );
    assert_eq!(
        with("[{type: IPAddress}]"),
        [is("True", "Accepted"), is("True", "Programmed")]
    );
    assert_eq!(
        with("[{value: 10.9.9.9}]"),
        [is("True", "Accepted"), is("False", "AddressNotUsable")]
    );
    assert_eq!(
        with("[{type: Hostname, value: gw.example.com}]"),
        [is("False", "UnsupportedAddress"), is("False", "Invalid")]
    );
}
