//! Gateway TLS and TCP listeners end to end through `weft up` (root: network namespaces;
//! never skipped), requests made from this machine's shell with curl: two HTTPS listeners on
//! one port, each with its own hostname and certificate (a Secret of type
//! `kubernetes.io/tls` made here with rcgen), chosen by the client's SNI and verified against
//! the test CA; a Host that belongs to the other listener answered 421; a TLS passthrough
//! listener relaying a ClientHello untouched to the backend of the TLSRoute its SNI names
//! (and closing one whose name has no route); a TCP listener relaying bytes to its
//! TCPRoute's backend; a cross-namespace backend refused until a ReferenceGrant allows it;
//! and an auto-certificate listener verified against the mesh root `weft up` prints.
//!
//! Each test has its own `--prefix`, state, config directory and pod CIDRs (`10.21x.*`), so
//! tests run in parallel with each other and with `up_gateway.rs`.

mod up_harness;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use up_harness::{Up, eventually, is_root, unique_prefix};

const WAIT: Duration = Duration::from_secs(60);
/// How long a change of configuration may take to reach the gateway.
const CONVERGE: Duration = Duration::from_secs(30);

fn require_root_and_curl() {
    assert!(
        is_root(),
        "these tests build network namespaces and must run as root (CI runs them as root)"
    );
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|out| out.status.success()),
        "these tests make requests with curl: install curl"
    );
}

/// Two nodes whose pod CIDRs are `10.<octet>.1.0/24` and `10.<octet>.2.0/24`, and the
/// manifests, in a fresh config directory.
fn config(octet: u8, manifests: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("config dir");
    let nodes: Vec<String> = (1..=2)
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: node-{n}}}\n\
                 spec: {{podCIDR: 10.{octet}.{n}.0/24}}\n"
            )
        })
        .collect();
    std::fs::write(dir.path().join("nodes.yaml"), nodes.join("---\n")).expect("write nodes");
    std::fs::write(dir.path().join("mesh.yaml"), manifests).expect("write manifests");
    dir
}

/// `weft up DIR` with its own prefix and state directory.
fn start_up(dir: &Path) -> Up {
    let state = tempfile::tempdir().expect("temp state dir");
    let binary = env!("CARGO_BIN_EXE_weft").into();
    let dir = dir.to_str().expect("utf-8 path");
    Up::start(
        Command::new(env!("CARGO_BIN_EXE_weft")),
        binary,
        state,
        unique_prefix('t'),
        &[dir],
        WAIT,
    )
}

/// The address of gateway `namespace/name` from the line `weft up` printed for it.
fn gateway_ip(up: &mut Up, gateway: &str) -> String {
    let line = up.wait_line(&format!("gateway {gateway}: "));
    let (_, urls) = line.split_once(": ").expect("gateway line");
    assert!(!urls.contains("another weft up"), "{line}");
    let url = urls.split(", ").next().expect("a URL");
    let host = url.split("://").nth(1).expect("scheme");
    host.split(':').next().expect("IP").to_owned()
}

/// `curl` from this machine: (HTTP status, body).
fn curl(args: &[&str]) -> (String, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), body.to_owned())
}

/// `"pod":"NAME"` of the echo answer in `text`.
fn answering_pod(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("\"pod\":\"")?;
    Some(rest.split_once('"')?.0.to_owned())
}

/// Sends `bytes` to `ip:port` and reads as many back (`Err("closed")` when the connection
/// ends first).
fn exchange(ip: &str, port: u16, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream =
        std::net::TcpStream::connect((ip, port)).map_err(|e| format!("connect: {e}"))?;
    let timeout = Some(Duration::from_secs(5));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    stream.write_all(bytes).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; bytes.len()];
    let mut read = 0;
    while read < back.len() {
        match stream.read(&mut back[read..]) {
            Ok(0) => return Err("closed".to_owned()),
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err("closed".to_owned());
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(back)
}

/// The first flight of a real TLS client (rustls) for server name `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("server name");
    let mut client =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("TLS client");
    let mut hello = Vec::new();
    client.write_tls(&mut hello).expect("ClientHello");
    hello
}

/// A private CA issuing serving certificates; its certificate is written to `ca.pem`.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "up gateway test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A Secret `namespace/name` of type `kubernetes.io/tls` for `host`.
    fn tls_secret(&self, namespace: &str, name: &str, host: &str) -> String {
        let params = CertificateParams::new(vec![host.to_owned()]).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let indent = |pem: &str| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
             type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&cert.pem()),
            indent(&key.serialize_pem())
        )
    }
}

/// Echo workloads `blue` and `green` (HTTP on 8080, raw bytes echoed) behind Services of
/// port 80 and 9000, in the enrolled namespace `edge`.
const EDGE_APPS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: edge, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: blue, namespace: edge}
spec:
  selector: {matchLabels: {app: blue}}
  template:
    metadata: {labels: {app: blue}}
    spec:
      containers:
      - {name: app, image: example/blue, ports: [{containerPort: 8080}, {containerPort: 9000}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: green, namespace: edge}
spec:
  selector: {matchLabels: {app: green}}
  template:
    metadata: {labels: {app: green}}
    spec:
      containers:
      - {name: app, image: example/green, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: blue, namespace: edge}
spec:
  selector: {app: blue}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: raw, port: 9000, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: green, namespace: edge}
spec:
  selector: {app: green}
  ports: [{name: http, port: 80, targetPort: 8080}]
";

/// Two HTTPS listeners on 443 (one certificate each), a TCP listener on 9000 and a TLS
/// passthrough listener on 8443 (to blue's raw port, which echoes what it receives).
const EDGE_GATEWAY: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: edge}
spec:
  gatewayClassName: weft
  listeners:
  - name: a
    port: 443
    protocol: HTTPS
    hostname: a.example.com
    tls: {mode: Terminate, certificateRefs: [{name: a-cert}]}
  - name: b
    port: 443
    protocol: HTTPS
    hostname: b.example.com
    tls: {mode: Terminate, certificateRefs: [{name: b-cert}]}
  - {name: raw, port: 9000, protocol: TCP}
  - {name: pass, port: 8443, protocol: TLS, tls: {mode: Passthrough}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: pass, namespace: edge}
spec:
  parentRefs: [{name: edge, sectionName: pass}]
  hostnames: [pass.example.com]
  rules: [{backendRefs: [{name: blue, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: edge}
spec:
  parentRefs: [{name: edge, sectionName: a}]
  rules: [{backendRefs: [{name: blue, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: edge}
spec:
  parentRefs: [{name: edge, sectionName: b}]
  rules: [{backendRefs: [{name: green, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: raw, namespace: edge}
spec:
  parentRefs: [{name: edge, sectionName: raw}]
  rules: [{backendRefs: [{name: blue, port: 9000}]}]
";

#[test]
fn https_picks_certificates_by_sni_tls_passes_through_and_tcp_is_relayed() {
    require_root_and_curl();
    let ca = TestCa::new();
    let manifests = format!(
        "{EDGE_APPS}---\n{EDGE_GATEWAY}---\n{}---\n{}",
        ca.tls_secret("edge", "a-cert", "a.example.com"),
        ca.tls_secret("edge", "b-cert", "b.example.com")
    );
    let config = config(211, &manifests);
    let ca_file = config.path().join("ca.pem.txt");
    std::fs::write(&ca_file, &ca.pem).expect("write CA");
    let ca_file = ca_file.to_str().expect("utf-8 path").to_owned();
    let mut up = start_up(config.path());
    let ip = gateway_ip(&mut up, "edge/edge");
    up.wait_line("mesh is up");
    let https = |host: &str, extra: &[&str]| {
        let resolve = format!("{host}:443:{ip}");
        let url = format!("https://{host}/");
        let mut args = vec!["--cacert", &ca_file, "--resolve", &resolve];
        args.extend(extra);
        args.push(&url);
        curl(&args)
    };

    // Each name gets its own listener's certificate (curl verifies it against the CA and
    // the name) and its own route.
    for (host, pod) in [("a.example.com", "blue-0"), ("b.example.com", "green-0")] {
        let body = eventually(CONVERGE, || match https(host, &[]) {
            (status, body) if status == "200" => Ok(body),
            (status, body) => Err(format!("{host}: {status} {body}")),
        });
        assert_eq!(answering_pod(&body).as_deref(), Some(pod), "{host}: {body}");
    }
    // SNI a.example.com, Host b.example.com: the other listener's host is misdirected.
    let (status, body) = https("a.example.com", &["-H", "Host: b.example.com"]);
    assert_eq!(status, "421", "{body}");

    // The TCP listener relays bytes to blue's raw port, which echoes them.
    let ping = b"ping over tcp\n".to_vec();
    let echoed = eventually(CONVERGE, || exchange(&ip, 9000, &ping));
    assert_eq!(echoed, ping);

    // Passthrough: the ClientHello reaches the backend unchanged (it echoes it back: no
    // ServerHello from the gateway), chosen by its SNI; a name without a route is closed.
    let hello = client_hello("pass.example.com");
    let echoed = eventually(CONVERGE, || exchange(&ip, 8443, &hello));
    assert_eq!(
        echoed, hello,
        "the gateway passed the ClientHello through untouched"
    );
    let other = exchange(&ip, 8443, &client_hello("other.example.com"));
    assert_eq!(
        other,
        Err("closed".to_owned()),
        "no TLSRoute for other.example.com"
    );

    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}

/// A Gateway in `front` whose HTTPRoute sends to a Service in `back`.
const CROSS_NAMESPACE: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: back, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: front}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: back}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - {name: app, image: example/api, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: back}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: door, namespace: front}
spec:
  gatewayClassName: weft
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: front}
spec:
  parentRefs: [{name: door}]
  rules: [{backendRefs: [{name: api, namespace: back, port: 80}]}]
";

/// What lets routes in `front` use Services in `back`.
const GRANT: &str = "\
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: front-to-api, namespace: back}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: front}]
  to: [{group: '', kind: Service}]
";

#[test]
fn a_cross_namespace_backend_needs_a_reference_grant() {
    require_root_and_curl();
    let config = config(212, CROSS_NAMESPACE);
    // The status says why before anything runs.
    let status = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["x", "status"])
        .arg(config.path())
        .output()
        .expect("run weft x status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("RefNotPermitted"), "{text}");

    let mut up = start_up(config.path());
    let ip = gateway_ip(&mut up, "front/door");
    up.wait_line("mesh is up");
    let url = format!("http://{ip}/");
    let refused = eventually(CONVERGE, || match curl(&[&url]) {
        (status, _) if status.starts_with('5') => Ok(status),
        (status, body) => Err(format!("{status} {body}")),
    });
    assert_eq!(refused, "500", "an unpermitted backend is not used");

    std::fs::write(config.path().join("grant.yaml"), GRANT).expect("write grant");
    let body = eventually(CONVERGE, || match curl(&[&url]) {
        (status, body) if status == "200" => Ok(body),
        (status, body) => Err(format!("{status} {body}")),
    });
    assert_eq!(answering_pod(&body).as_deref(), Some("api-0"), "{body}");

    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}

/// An HTTPS listener without certificateRefs, asking weft's CA for its certificate.
const AUTO_CERTIFICATE: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: dev}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
      - {name: app, image: example/app, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: dev}
spec:
  selector: {app: app}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: dev, namespace: dev}
spec:
  gatewayClassName: weft
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: app.dev.example
    tls:
      mode: Terminate
      options: {weft.dev/auto-certificate: 'true'}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: dev}
spec:
  parentRefs: [{name: dev}]
  rules: [{backendRefs: [{name: app, port: 80}]}]
";

#[test]
fn an_auto_certificate_listener_is_trusted_through_the_mesh_root_weft_up_prints() {
    require_root_and_curl();
    let config = config(213, AUTO_CERTIFICATE);
    let mut up = start_up(config.path());
    let ip = gateway_ip(&mut up, "dev/dev");
    let root = up.wait_line("mesh root CA (curl --cacert): ");
    let (_, root) = root.split_once(": ").expect("root line");
    up.wait_line("mesh is up");
    let resolve = format!("app.dev.example:443:{ip}");
    let args = [
        "--cacert",
        root,
        "--resolve",
        &resolve,
        "https://app.dev.example/",
    ];
    let body = eventually(CONVERGE, || match curl(&args) {
        (status, body) if status == "200" => Ok(body),
        (status, body) => Err(format!("{status} {body}")),
    });
    assert_eq!(answering_pod(&body).as_deref(), Some("app-0"), "{body}");

    up.signal("-TERM");
    assert!(up.wait_exit().success(), "{}", up.output());
}
