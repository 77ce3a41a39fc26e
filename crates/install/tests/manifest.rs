//! The generated install, read back as a user's tools would read it: the YAML parsed into
//! k8s-openapi types, every part the install promises checked by its fields, and the whole
//! accepted by `weft validate`'s checks.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, Namespace, Probe, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use weft_install::rbac::{self, Scope};
use weft_install::{Manifest, Settings};

/// The YAML documents of the install, parsed.
fn documents(settings: &Settings) -> Vec<serde_json::Value> {
    let yaml = Manifest::generate(settings).to_yaml();
    yaml.split("\n---\n")
        .map(|doc| weft_api::yaml::from_str(doc).expect("each document is YAML"))
        .collect()
}

/// The one object of kind `K` named `name` in the documents.
fn find<K: DeserializeOwned + k8s_openapi::Resource>(docs: &[serde_json::Value], name: &str) -> K {
    let matching: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|doc| {
            doc["kind"].as_str() == Some(K::KIND) && doc["metadata"]["name"].as_str() == Some(name)
        })
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{} {name}: {} in the install",
        K::KIND,
        matching.len()
    );
    serde_json::from_value(matching[0].clone()).expect("parses as its k8s-openapi type")
}

fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn probe_target(probe: Option<&Probe>) -> (String, IntOrString) {
    let get = probe
        .and_then(|p| p.http_get.clone())
        .expect("an HTTP probe");
    (get.path.unwrap_or_default(), get.port)
}

/// Whether the rules grant `verb` on `resource` of `group`.
fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|rule| {
        rule.api_groups
            .as_ref()
            .is_some_and(|g| g.iter().any(|g| g == group))
            && rule
                .resources
                .as_ref()
                .is_some_and(|r| r.iter().any(|r| r == resource))
            && rule.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn the_install_has_every_part_the_issue_lists() {
    let docs = documents(&Settings::default());
    let ns = "weft-system";
    let _: Namespace = find(&docs, ns);
    let _: ServiceAccount = find(&docs, "weft-control");
    let _: ServiceAccount = find(&docs, "weft-node");

    // control plane: 2 replicas, probes, resources, PodDisruptionBudget, Service
    let control: Deployment = find(&docs, "weft-control");
    assert_eq!(control.metadata.namespace.as_deref(), Some(ns));
    let spec = control.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("weft-control"));
    let c = container(&pod.containers, "control");
    assert!(
        c.args
            .as_ref()
            .unwrap()
            .contains(&"--kubernetes".to_owned())
    );
    assert_eq!(
        probe_target(c.readiness_probe.as_ref()),
        ("/ready".into(), IntOrString::Int(15014))
    );
    assert_eq!(
        probe_target(c.liveness_probe.as_ref()),
        ("/healthz/live".into(), IntOrString::Int(15014))
    );
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    let security = c.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.capabilities.as_ref().unwrap().add, None);

    let budget: PodDisruptionBudget = find(&docs, "weft-control");
    let budget = budget.spec.unwrap();
    assert_eq!(budget.min_available, Some(IntOrString::Int(1)));
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    let selected = budget.selector.unwrap().match_labels.unwrap();
    assert!(
        selected.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "the budget selects the control pods"
    );

    let service: Service = find(&docs, "weft-control");
    let ports: Vec<i32> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [15012, 15014]);

    // node proxy DaemonSet
    let node: DaemonSet = find(&docs, "weft-node");
    let pod = node.spec.unwrap().template.spec.unwrap();
    let install = container(pod.init_containers.as_deref().unwrap(), "install-cni");
    assert_eq!(
        install.args.as_deref().unwrap()[..2],
        ["cni".to_owned(), "install".to_owned()]
    );
    let proxy = container(&pod.containers, "node");
    let security = proxy.security_context.as_ref().unwrap();
    assert_ne!(
        security.privileged,
        Some(true),
        "capabilities, not privileged"
    );
    let caps = security.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let mut added = caps.add.clone().unwrap();
    added.sort();
    assert_eq!(added, ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]);
    assert_eq!(
        pod.host_pid,
        Some(true),
        "the host's namespaces are reachable"
    );
    let args = proxy.args.as_deref().unwrap();
    let probe_netns = args
        .iter()
        .position(|a| a == "--probe-snat-netns")
        .map(|i| args[i + 1].as_str());
    assert_eq!(
        probe_netns,
        Some("/proc/1/ns/net"),
        "the kubelet's probes pass the capture: {args:?}"
    );
    assert_eq!(
        probe_target(proxy.readiness_probe.as_ref()),
        ("/healthz/ready".into(), IntOrString::Int(15021))
    );
    assert_eq!(
        probe_target(proxy.liveness_probe.as_ref()),
        ("/healthz/live".into(), IntOrString::Int(15021))
    );
    assert!(
        proxy
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()
            .contains_key("memory")
    );
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(35),
        "drain 30 s + margin"
    );
    let volumes = pod.volumes.unwrap();
    let token = volumes
        .iter()
        .find_map(|v| v.projected.as_ref())
        .expect("a projected token");
    let token = token.sources.as_ref().unwrap()[0]
        .service_account_token
        .as_ref()
        .unwrap();
    assert_eq!(token.audience.as_deref(), Some("istio-ca"));
    let host_paths: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v.host_path.as_ref())
        .map(|h| h.path.as_str())
        .collect();
    assert!(
        host_paths.contains(&"/opt/cni/bin") && host_paths.contains(&"/etc/cni/net.d"),
        "{host_paths:?}"
    );

    // GatewayClass weft
    let class = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("GatewayClass"))
        .expect("GatewayClass");
    assert_eq!(class["metadata"]["name"].as_str(), Some("weft"));
    assert_eq!(
        class["spec"]["controllerName"].as_str(),
        Some("weft.dev/gateway")
    );
}

#[test]
fn roles_grant_exactly_the_listed_permissions() {
    let docs = documents(&Settings::default());
    let cluster: ClusterRole = find(&docs, "weft-control");
    let cluster = cluster.rules.unwrap();
    let own: Role = find(&docs, "weft-control");
    let own = own.rules.unwrap();
    for permission in rbac::CONTROL_PLANE {
        let rules = if permission.scope == Scope::Cluster {
            &cluster
        } else {
            &own
        };
        for resource in permission.resources {
            for verb in permission.verbs {
                assert!(
                    grants(rules, permission.group, resource, verb),
                    "{verb} {resource}"
                );
            }
        }
    }
    // what the issue names, spelled out
    assert!(grants(
        &cluster,
        "authentication.k8s.io",
        "tokenreviews",
        "create"
    ));
    assert!(grants(
        &cluster,
        "gateway.networking.k8s.io",
        "httproutes/status",
        "patch"
    ));
    assert!(grants(&cluster, "", "configmaps", "patch"));
    assert!(grants(&own, "coordination.k8s.io", "leases", "update"));
    assert!(grants(&own, "", "secrets", "create"));
    assert!(
        !grants(&cluster, "", "secrets", "create"),
        "secrets are written only in weft's namespace"
    );
    let count = |rules: &[PolicyRule]| -> usize {
        rules
            .iter()
            .map(|r| r.resources.as_ref().map_or(0, Vec::len) * r.verbs.len())
            .sum()
    };
    let listed: usize = rbac::CONTROL_PLANE
        .iter()
        .map(|p| p.resources.len() * p.verbs.len())
        .sum();
    assert_eq!(
        count(&cluster) + count(&own),
        listed,
        "nothing beyond the list"
    );
    let binding: ClusterRoleBinding = find(&docs, "weft-control");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "weft-control")
    );
    assert_eq!(subject.namespace.as_deref(), Some("weft-system"));
    // the node proxy calls no Kubernetes API, so it is granted nothing
    let node_roles = docs.iter().filter(|doc| {
        doc["kind"]
            .as_str()
            .is_some_and(|kind| kind.contains("Role"))
            && doc["metadata"]["name"].as_str() == Some("weft-node")
    });
    assert_eq!(node_roles.count(), 0, "a role for weft-node");
}

#[test]
fn set_values_reach_the_objects() {
    let settings = Settings::from_sets(&[
        "namespace=mesh-system",
        "image=registry.local/weft:dev",
        "control.replicas=3",
        "node.resources.limits.memory=1Gi",
        "node.drainSeconds=60",
        "cni.binDir=/usr/libexec/cni",
    ])
    .unwrap();
    let docs = documents(&settings);
    let _: Namespace = find(&docs, "mesh-system");
    let control: Deployment = find(&docs, "weft-control");
    assert_eq!(control.metadata.namespace.as_deref(), Some("mesh-system"));
    let spec = control.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.local/weft:dev")
    );
    let node: DaemonSet = find(&docs, "weft-node");
    let pod = node.spec.unwrap().template.spec.unwrap();
    let proxy = container(&pod.containers, "node");
    let limits = proxy.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "1Gi");
    let args = proxy.args.as_ref().unwrap();
    assert!(
        args.contains(&"weft-control.mesh-system.svc:15012".to_owned()),
        "{args:?}"
    );
    assert_eq!(pod.termination_grace_period_seconds, Some(65));
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("weft-node"),
        "the node proxy's token names its own service account"
    );
    assert!(pod.volumes.unwrap().iter().any(|v| {
        v.host_path
            .as_ref()
            .is_some_and(|h| h.path == "/usr/libexec/cni")
    }));
}

#[test]
fn weft_validate_accepts_the_install() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(&file, Manifest::generate(&Settings::default()).to_yaml()).unwrap();
    let report = weft_api::validate_paths(&[file]);
    assert!(!report.has_errors(), "{}", report.to_text());
    // mesh kinds are read; the install-only kinds are checked against their schema and skipped
    assert_eq!(
        report.objects,
        7,
        "namespace, 2 service accounts, Deployment, DaemonSet, Service, GatewayClass: {}",
        report.summary()
    );
    let skipped: Vec<&str> = report.findings.iter().map(|f| f.message.as_str()).collect();
    assert!(
        skipped.iter().any(|m| m.contains("ClusterRole")),
        "{skipped:?}"
    );

    // and a broken install-only object is an error naming the field
    let broken = Manifest::generate(&Settings::default())
        .to_yaml()
        .replacen("verbs:", "verb:", 1);
    std::fs::write(dir.path().join("weft.yaml"), broken).unwrap();
    let report = weft_api::validate_paths(&[dir.path().join("weft.yaml")]);
    assert!(report.has_errors());
    assert!(
        report.to_text().contains("unknown field \"verb\""),
        "{}",
        report.to_text()
    );
}
