//! The conformance harness: a test case written as the Gateway API conformance suite writes
//! one — manifests (a Gateway of class `weft`, routes, ReferenceGrants, Services) on top of
//! shared infrastructure — translated by the real control-plane translator
//! (`weft_control::translate`) and published to a running gateway with every `Address`
//! resource translation made, so a request exercises YAML → status/attachment → wire form →
//! listener → route → backend, as `weft up` would, in-process.
//!
//! The infrastructure ([`infrastructure`]) mirrors the suite's: namespace `ns` (ambient, the
//! suite's `gateway-conformance-infra`) with Services `infra-backend-v1`..`v3` on port 8080,
//! each backed by one echo pod reached over HBONE; namespace `web` (not in the mesh, the
//! suite's `gateway-conformance-web-backend`) with Service `web-backend`, reached directly;
//! and the gateway's own pod. The Gateway itself is part of each case (`ns/gw`, the only
//! one the in-process gateway serves); [`GATEWAY`] is the suite's usual one.

use std::path::Path;
use std::sync::Arc;

use weft_api::gateway_status::{ObjectStatus, Status, statuses};
use weft_api::{ConfigSnapshot, parse_manifests};
use weft_control::translate::{Output, ResourceKey, TranslateOptions, translate};
use weft_proto::ADDRESS_TYPE_URL;
use weft_proto::l7 as pb;
use weft_xds::XdsResource;

use crate::fixture::{Fixture, Servers, gateway_ip, new_backend, serve_plain};
use crate::harness::{Backend, ClientBody, Net, empty, eventually, serve_backend};

/// The Gateway `ns/gw` of class `weft` up to its `listeners:` key.
macro_rules! gateway_head {
    () => {
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: weft
  listeners:
"
    };
}

/// The suite's usual Gateway: one HTTP listener on port 80 accepting routes from every
/// namespace.
pub const GATEWAY: &str = concat!(
    gateway_head!(),
    "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n"
);

/// The Gateway `ns/gw` with `listeners` (YAML list items, indented by two spaces).
pub fn gateway_with(listeners: &str) -> String {
    format!("{}{listeners}", gateway_head!())
}

/// The echo pods: (namespace, pod, app label) with their address's last two octets.
const PODS: [(&str, &str, &str, (u8, u8)); 4] = [
    ("ns", "infra-backend-v1-0", "infra-backend-v1", (1, 1)),
    ("ns", "infra-backend-v2-0", "infra-backend-v2", (1, 2)),
    ("ns", "infra-backend-v3-0", "infra-backend-v3", (1, 3)),
    ("web", "web-backend-0", "web-backend", (4, 1)),
];

/// An HTTPRoute `name` on Gateway `ns/gw` whose `spec.rules` are `rules` (YAML, indented
/// by two spaces).
pub fn route(name: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  rules:\n{rules}"
    )
}

/// A request of `method` for `path` on host `example.com` with `headers`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> http::Request<ClientBody> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "example.com");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(empty()).unwrap()
}

/// A running conformance case.
pub struct Conformance {
    /// The gateway and its control plane (the fixture's backends are not used).
    pub fixture: Fixture,
    /// The echo pods, by pod name.
    backends: Vec<Arc<Backend>>,
    _servers: Servers,
}

impl Conformance {
    /// Starts the infrastructure and the gateway, applies `manifests` and waits until the
    /// gateway serves them.
    pub async fn start(manifests: &str) -> Self {
        let fixture = Fixture::start(Vec::new(), None).await;
        let net = fixture.net;
        let (ca, trust) = (Arc::clone(&fixture.ca), fixture.trust.clone());
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        for (namespace, pod, _, (third, fourth)) in PODS {
            let backend = new_backend(pod, net.ip(third, fourth));
            servers.push(if namespace == "ns" {
                serve_backend(&ca, &trust, Arc::clone(&backend)).await
            } else {
                serve_plain(Arc::clone(&backend)).await
            });
            backends.push(backend);
        }
        let case = Self {
            fixture,
            backends,
            _servers: Servers(servers),
        };
        case.apply(manifests).await;
        case.fixture.wait_ready().await;
        case
    }

    /// Translates the infrastructure plus `manifests`, publishes the result (every
    /// `Address` and the Gateway `ns/gw`) and waits until the gateway serves it: that
    /// resource applied, its listener ports bound, the echo pods in its mesh state. Panics
    /// on manifests that do not load.
    pub async fn apply(&self, manifests: &str) {
        let output = translated(self.fixture.net, manifests);
        let addresses = output.of_type(ADDRESS_TYPE_URL).values();
        let addresses = addresses.map(|r| xds_resource(ADDRESS_TYPE_URL, r));
        self.fixture
            .publisher
            .replace(ADDRESS_TYPE_URL, addresses.collect::<Vec<_>>());
        let resource = gateway_resource(&output);
        self.fixture.publish(&resource);
        let running = &self.fixture.gateway;
        eventually("the gateway to serve the manifests", || async {
            let config = running.gateway.config();
            let bound = running.ports();
            let state = running.gateway.engine().state();
            config.resource == resource
                && config.ports.keys().all(|port| bound.contains_key(port))
                && (self.backends.iter())
                    .all(|pod| state.workloads_with_ip(pod.ip.into()).next().is_some())
        })
        .await;
    }

    /// The echo pod `pod`.
    pub fn backend(&self, pod: &str) -> &Arc<Backend> {
        let found = self.backends.iter().find(|b| b.name == pod);
        found.unwrap_or_else(|| panic!("no echo pod {pod}"))
    }
}

/// The infrastructure plus `manifests`, loaded. Panics on manifests that do not load.
pub fn snapshot(net: Net, manifests: &str) -> ConfigSnapshot {
    let text = format!("{}---\n{manifests}", infrastructure(net));
    let loaded = parse_manifests(&text, Path::new("conformance.yaml"));
    if let Some(finding) = loaded.findings.first() {
        let line = finding.source.line;
        let near: Vec<&str> = text.lines().skip(line.saturating_sub(3)).take(4).collect();
        panic!("{finding:?}\nnear line {line}:\n{}", near.join("\n"));
    }
    ConfigSnapshot::new(loaded.objects)
}

/// The translation of the infrastructure plus `manifests`.
pub fn translated(net: Net, manifests: &str) -> Output {
    translate(&snapshot(net, manifests), &TranslateOptions::default())
}

/// `(type, status, reason)` of each condition of HTTPRoute `ns/<route>` on its first
/// parent, as `weft x status` reports them.
pub fn route_conditions(manifests: &str, route: &str) -> Vec<(String, String, String)> {
    let all = statuses(&snapshot(Net(0), manifests));
    let found = all.into_iter().find(|s| {
        s.kind == "HTTPRoute"
            && s.metadata.name == route
            && s.metadata.namespace.as_deref() == Some("ns")
    });
    let Some(ObjectStatus {
        status: Status::Route(status),
        ..
    }) = found
    else {
        panic!("no route status for ns/{route}");
    };
    let parent = status.parents.first().expect("a parent status");
    let conditions = parent.conditions.iter();
    conditions
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

/// The Gateway `ns/gw` of a translation.
pub fn gateway_resource(output: &Output) -> pb::Gateway {
    let resource = output.get(&ResourceKey::gateway("ns/gw"));
    let resource =
        resource.expect("a weft.l7.v1.Gateway for ns/gw (is the Gateway of a weft class?)");
    resource.decode().expect("a Gateway message")
}

fn xds_resource(type_url: &str, resource: &weft_control::translate::Resource) -> XdsResource {
    let body = prost_types::Any {
        type_url: type_url.to_owned(),
        value: resource.encoded.clone(),
    };
    XdsResource::new(resource.name.clone(), resource.aliases.clone(), body)
}

/// The shared manifests: the node, both namespaces, the echo Services and pods on `net`'s
/// addresses, and the gateway's pod.
fn infrastructure(net: Net) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: node-a}}\n\
         spec: {{podCIDR: {}/16}}\n---\n\
         apiVersion: v1\nkind: Namespace\n\
         metadata: {{name: ns, labels: {{istio.io/dataplane-mode: ambient}}}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n",
        net.ip(0, 0)
    );
    for (namespace, pod, app, (third, fourth)) in PODS {
        text += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}, namespace: {namespace}}}\n\
             spec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 8080}}]\n\
             ---\napiVersion: v1\nkind: Pod\n\
             metadata: {{name: {pod}, namespace: {namespace}, labels: {{app: {app}}}}}\n\
             spec: {{nodeName: node-a, serviceAccountName: echo, containers: [{{name: echo, image: echo}}]}}\n\
             status: {{podIP: {}}}\n",
            net.ip(third, fourth)
        );
    }
    text += &format!(
        "---\napiVersion: v1\nkind: Pod\n\
         metadata:\n  name: gw-weft-0\n  namespace: ns\n  \
         labels: {{gateway.networking.k8s.io/gateway-name: gw, istio.io/dataplane-mode: none}}\n\
         spec: {{nodeName: node-a, serviceAccountName: gw-weft, containers: [{{name: gateway, image: weft}}]}}\n\
         status: {{podIP: {}}}\n",
        gateway_ip(net)
    );
    text
}
