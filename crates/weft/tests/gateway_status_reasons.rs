//! Every status reason a broken Gateway API manifest can produce, end to end through the
//! real binary: each case is a manifest (a file of `examples/broken/`, or one written here
//! for reasons no analysis finding stands for) given to `weft x status -o json`, and the
//! condition the user would read on the object, listener or route parent it concerns.
//!
//! An expectation reads `<Kind> <namespace>/<name>[ listener <name>| parent]: <type>
//! <status> <reason>`, e.g. `Gateway web/gw listener http: Accepted False
//! UnsupportedProtocol`; without `listener` or `parent` it is one of the object's own
//! conditions.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `weft x status -o json` of `path`: every object's status document.
fn statuses(path: &Path) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["x", "status", "-o", "json"])
        .arg(path)
        .output()
        .expect("run weft");
    assert!(
        output.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON array")
}

/// The `<type> <status> <reason>` of the condition `expect` names in `documents`.
fn condition(documents: &[Value], expect: &str) -> Option<String> {
    let (subject, wanted) = expect.split_once(": ")?;
    let mut words = subject.split(' ');
    let (kind, object) = (words.next()?, words.next()?);
    let (namespace, name) = object.split_once('/').unwrap_or(("", object));
    let document = documents.iter().find(|d| {
        d["kind"] == kind
            && d["metadata"]["name"] == name
            && d["metadata"]["namespace"].as_str().unwrap_or("") == namespace
    })?;
    let status = &document["status"];
    let conditions = match (words.next(), words.next()) {
        (Some("listener"), Some(listener)) => {
            let listeners = status["listeners"].as_array()?;
            &listeners.iter().find(|l| l["name"] == listener)?["conditions"]
        }
        (Some("parent"), None) => &status["parents"][0]["conditions"],
        _ => &status["conditions"],
    };
    let type_ = wanted.split(' ').next()?;
    let found = conditions.as_array()?.iter().find(|c| c["type"] == type_)?;
    let text = |field: &str| found[field].as_str().unwrap_or_default().to_owned();
    Some(format!("{type_} {} {}", text("status"), text("reason")))
}

/// Checks every expectation against the status of `path`, collecting the misses.
fn check(path: &Path, expects: &[&str], misses: &mut Vec<String>) {
    let documents = statuses(path);
    for expect in expects {
        let wanted = expect.split_once(": ").map(|(_, w)| w.to_owned());
        let got = condition(&documents, expect);
        if got != wanted {
            misses.push(format!("{}: {expect}: got {got:?}", path.display()));
        }
    }
}

#[test]
fn each_broken_example_file_produces_its_status_reason() {
    let cases: &[(&str, &[&str])] = &[
        (
            "gateway-listener-not-accepted.yaml",
            &[
                "Gateway broken-listener-protocol/edge listener dns: Accepted False UnsupportedProtocol",
                "Gateway broken-listener-protocol/edge listener dns: Programmed False Invalid",
                "Gateway broken-listener-protocol/edge: Accepted True ListenersNotValid",
                // no pod runs it outside `weft up`
                "Gateway broken-listener-protocol/edge: Programmed False AddressNotAssigned",
            ],
        ),
        (
            "gateway-listener-conflicted.yaml",
            &[
                "Gateway broken-listener-conflict/edge listener raw: Conflicted True ProtocolConflict",
                "Gateway broken-listener-conflict/edge listener http: Conflicted False NoConflicts",
            ],
        ),
        (
            "gateway-listener-refs-not-resolved.yaml",
            &[
                "Gateway broken-listener-certificate/edge listener https: ResolvedRefs False InvalidCertificateRef",
            ],
        ),
        (
            "route-parent-not-found.yaml",
            &["HTTPRoute broken-route-parent/orphan parent: Accepted False NoMatchingParent"],
        ),
        (
            "route-parent-not-allowed.yaml",
            &[
                "HTTPRoute broken-parent-allowed-apps/elsewhere parent: Accepted False NotAllowedByListeners",
            ],
        ),
        (
            "route-no-matching-hostname.yaml",
            &["HTTPRoute broken-hostname/api parent: Accepted False NoMatchingListenerHostname"],
        ),
        (
            "route-backend-not-found.yaml",
            &["GRPCRoute broken-route-backend/reviews parent: ResolvedRefs False BackendNotFound"],
        ),
        (
            "route-cross-namespace-no-grant.yaml",
            &[
                "HTTPRoute broken-route-grant/to-other-namespace parent: ResolvedRefs False RefNotPermitted",
            ],
        ),
        (
            "route-backend-invalid-kind.yaml",
            &["HTTPRoute broken-backend-kind/api parent: ResolvedRefs False InvalidKind"],
        ),
    ];
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/broken");
    let mut misses = Vec::new();
    for (file, expects) in cases {
        check(&examples.join(file), expects, &mut misses);
    }
    assert!(misses.is_empty(), "{misses:#?}");
}

/// The pod running Gateway `web/gw` (its address is the Gateway's).
const GATEWAY_POD: &str = "\
---
apiVersion: v1
kind: Pod
metadata:
  name: gw-weft-0
  namespace: web
  labels: {gateway.networking.k8s.io/gateway-name: gw}
spec:
  nodeName: node-a
  containers: [{name: gateway, image: weft}]
status: {podIP: 10.1.0.9}
";

/// Gateway `web/gw` of class `weft` with the `spec` lines `spec` (indented by two).
fn gateway(spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{name: gw, namespace: web}}\nspec:\n  gatewayClassName: weft\n{spec}"
    )
}

#[test]
fn mistakes_without_an_example_file_produce_their_status_reasons() {
    let class = "\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: weft}
spec: {controllerName: weft.dev/gateway}
---
";
    let https_cert = "  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: www.example.com
    tls: {certificateRefs: [{name: www-cert, namespace: certs}]}
---
apiVersion: v1
kind: Secret
metadata: {name: www-cert, namespace: certs}
type: kubernetes.io/tls
stringData: {tls.crt: not a certificate, tls.key: not a key}
";
    let http = "  listeners: [{name: http, port: 80, protocol: HTTP}]\n";
    // (name, manifest, whether the Gateway has its pod, expectations)
    let cases: &[(&str, String, bool, &[&str])] = &[
        (
            "hostname-conflict",
            format!(
                "{class}{}",
                gateway(
                    "  listeners:
  - {name: first, port: 80, protocol: HTTP, hostname: shop.example.com}
  - {name: second, port: 80, protocol: HTTP, hostname: shop.example.com}
"
                )
            ),
            false,
            &[
                "GatewayClass weft: Accepted True Accepted",
                "Gateway web/gw listener second: Conflicted True HostnameConflict",
                "Gateway web/gw listener second: Programmed False Invalid",
            ],
        ),
        (
            "invalid-route-kinds",
            gateway(
                "  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
",
            ),
            false,
            &["Gateway web/gw listener http: ResolvedRefs False InvalidRouteKinds"],
        ),
        (
            "no-valid-listener",
            gateway("  listeners: [{name: dns, port: 53, protocol: UDP}]\n"),
            true,
            &[
                "Gateway web/gw: Accepted False ListenersNotValid",
                "Gateway web/gw: Programmed False Invalid",
            ],
        ),
        (
            "certificate-without-grant",
            gateway(https_cert),
            false,
            &["Gateway web/gw listener https: ResolvedRefs False RefNotPermitted"],
        ),
        (
            "unsupported-address",
            gateway(&format!(
                "  addresses: [{{type: Hostname, value: gw.example.com}}]\n{http}"
            )),
            true,
            &[
                "Gateway web/gw: Accepted False UnsupportedAddress",
                "Gateway web/gw: Programmed False Invalid",
            ],
        ),
        (
            "address-not-usable",
            gateway(&format!(
                "  addresses: [{{type: IPAddress, value: 192.0.2.10}}]\n{http}"
            )),
            true,
            &[
                "Gateway web/gw: Accepted True Accepted",
                "Gateway web/gw: Programmed False AddressNotUsable",
            ],
        ),
        (
            // not a mistake: an entry without a value asks for any address
            "address-empty",
            gateway(&format!("  addresses: [{{type: IPAddress}}]\n{http}")),
            true,
            &[
                "Gateway web/gw: Accepted True Accepted",
                "Gateway web/gw: Programmed True Programmed",
            ],
        ),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let mut misses = Vec::new();
    for (name, manifest, with_pod, expects) in cases {
        let path = dir.path().join(format!("{name}.yaml"));
        let pod = if *with_pod { GATEWAY_POD } else { "" };
        std::fs::write(&path, format!("{manifest}{pod}")).expect("write manifest");
        check(&path, expects, &mut misses);
    }
    assert!(misses.is_empty(), "{misses:#?}");
}
