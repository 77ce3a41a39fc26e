//! Generated meshes for scale runs, written as YAML files the way an operator would keep
//! them: `mesh.yaml` (nodes, root namespace, mesh-wide STRICT mTLS), and per namespace
//! `ns-N/namespace.yaml`, `ns-N/policy.yaml` and one file per app (Deployment + Service).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// Shape of a generated mesh.
#[derive(Debug, Clone, Copy)]
pub struct MeshSize {
    /// Enrolled namespaces.
    pub namespaces: usize,
    /// Apps (one Deployment + one Service each) per namespace.
    pub apps_per_namespace: usize,
    /// Pods per Deployment.
    pub replicas: usize,
    /// Nodes the pods spread over.
    pub nodes: usize,
}

impl MeshSize {
    /// Issue 5's scale: 10,000 pods and 1,000 services.
    pub const LARGE: Self = Self {
        namespaces: 10,
        apps_per_namespace: 100,
        replicas: 10,
        nodes: 20,
    };
    /// 1,000 pods and 100 services.
    pub const SMALL: Self = Self {
        namespaces: 10,
        apps_per_namespace: 10,
        replicas: 10,
        nodes: 4,
    };

    /// Pods the mesh runs.
    pub fn pods(&self) -> usize {
        self.namespaces * self.apps_per_namespace * self.replicas
    }

    /// Services (one per app).
    pub fn services(&self) -> usize {
        self.namespaces * self.apps_per_namespace
    }
}

/// The file whose AuthorizationPolicy the scale runs edit.
pub const EDITED_FILE: &str = "ns-0/policy.yaml";
/// The xDS name of that policy.
pub const EDITED_POLICY: &str = "ns-0/allow";

/// Writes the mesh into `dir`.
///
/// # Errors
/// File system failures.
pub fn write_mesh(dir: &Path, size: &MeshSize) -> io::Result<()> {
    std::fs::write(dir.join("mesh.yaml"), mesh_yaml(size.nodes))?;
    for ns in 0..size.namespaces {
        let namespace = format!("ns-{ns}");
        let ns_dir = dir.join(&namespace);
        std::fs::create_dir_all(&ns_dir)?;
        std::fs::write(
            ns_dir.join("namespace.yaml"),
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n  labels:\n    istio.io/dataplane-mode: ambient\n"
            ),
        )?;
        std::fs::write(ns_dir.join("policy.yaml"), policy_yaml(&namespace, 0))?;
        for app in 0..size.apps_per_namespace {
            let name = format!("app-{app:03}");
            std::fs::write(
                ns_dir.join(format!("{name}.yaml")),
                app_yaml(&namespace, &name, size.replicas),
            )?;
        }
    }
    Ok(())
}

/// Nodes (each with a /16 pod CIDR), the root namespace and mesh-wide STRICT mTLS.
fn mesh_yaml(nodes: usize) -> String {
    let mut yaml = String::new();
    for node in 0..nodes {
        let _ = write!(
            yaml,
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-{node:02}\nspec:\n  podCIDR: 10.{}.0.0/16\n---\n",
            100 + node
        );
    }
    yaml.push_str(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n---\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n",
    );
    yaml
}

/// A Deployment (own service account, named port) and its Service.
fn app_yaml(namespace: &str, name: &str, replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n\
         \x20   metadata:\n      labels:\n        app: {name}\n    spec:\n      serviceAccountName: {name}\n\
         \x20     containers:\n      - name: app\n        image: weft\n        ports:\n        - name: http\n          containerPort: 8080\n\
         ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n    appProtocol: http\n"
    )
}

/// The namespace's L4 policy on `app-000`; `revision` changes which caller it allows, so
/// each revision is a different resource version and nothing else changes.
pub fn policy_yaml(namespace: &str, revision: usize) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow\n  namespace: {namespace}\n\
         spec:\n  selector:\n    matchLabels:\n      app: app-000\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n\
         \x20       principals: [\"cluster.local/ns/{namespace}/sa/caller-{revision}\"]\n    to:\n    - operation:\n        ports: [\"8080\"]\n"
    )
}

/// Loads `dir` and translates it in one go (what every client must end up holding).
///
/// # Panics
/// If the directory cannot be read.
pub fn translate_dir(dir: &Path) -> weft_control::translate::Output {
    let store = weft_api::ConfigStore::open(dir).expect("config dir");
    let options = weft_control::translate::TranslateOptions::default();
    weft_control::translate::translate(&store.snapshot(), &options)
}

fn names(
    output: &weft_control::translate::Output,
    type_url: &str,
) -> std::collections::BTreeSet<String> {
    output.of_type(type_url).keys().cloned().collect()
}

/// The resource names of a translation.
pub fn expected_names(output: &weft_control::translate::Output) -> super::swarm::Expected {
    super::swarm::Expected {
        addresses: names(output, weft_proto::ADDRESS_TYPE_URL),
        authorizations: names(output, weft_proto::AUTHORIZATION_TYPE_URL),
    }
}
