//! Scale: 10,000 pods (1,000 Deployments x 10 replicas over 20 nodes) and 1,000 services in
//! 10 enrolled namespaces, with a mesh-wide STRICT PeerAuthentication and one selector policy
//! per namespace. Prints full translation time, first-push size and the cost of one policy
//! edit; asserts only sanity (counts, sizes, incremental scope), never timing.
//!
//! Fast figures: `cargo test -p weft-control --release --test translate_scale -- --nocapture`.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, NodeSpec, PodSpec, PodTemplateSpec, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use weft_api::istio::{
    AuthorizationPolicySpec, MtlsMode, MutualTls, PeerAuthenticationSpec, Rule, RuleFrom,
    Source as PolicySource, WorkloadSelector,
};
use weft_api::resource::Resource;
use weft_api::{ConfigSnapshot, Kind, LoadedObject, Object, ObjectRef, Source};
use weft_control::translate::{ADDRESS, AUTHORIZATION, ResourceKey, TranslateOptions, Translator};

const NAMESPACES: usize = 10;
const SERVICES_PER_NAMESPACE: usize = 100;
const REPLICAS: i32 = 10;
const NODES: usize = 20;

fn meta(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ObjectMeta::default()
    }
}

fn loaded(object: Object) -> LoadedObject {
    LoadedObject {
        object,
        source: Source {
            file: PathBuf::from("generated"),
            line: 1,
        },
        layout: None,
    }
}

fn app_labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), app.to_owned())])
}

fn deployment(namespace: &str, app: &str) -> Object {
    let container = Container {
        name: "app".to_owned(),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: 8080,
            ..Default::default()
        }]),
        ..Container::default()
    };
    Object::Deployment(Deployment {
        metadata: meta(app, Some(namespace), &[]),
        spec: Some(DeploymentSpec {
            replicas: Some(REPLICAS),
            selector: LabelSelector {
                match_labels: Some(app_labels(app)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(app_labels(app)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(app.to_owned()),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

fn service(namespace: &str, app: &str, cluster_ip: String) -> Object {
    Object::Service(Service {
        metadata: meta(app, Some(namespace), &[]),
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip),
            selector: Some(app_labels(app)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80,
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

fn allow_policy(namespace: &str, app: &str, from_namespace: &str) -> Object {
    Object::AuthorizationPolicy(Resource {
        api_version: "security.istio.io/v1".to_owned(),
        kind: "AuthorizationPolicy".to_owned(),
        metadata: meta("allow", Some(namespace), &[]),
        spec: AuthorizationPolicySpec {
            selector: Some(WorkloadSelector {
                match_labels: app_labels(app),
            }),
            rules: Some(vec![Rule {
                from: Some(vec![RuleFrom {
                    source: Some(PolicySource {
                        namespaces: Some(vec![from_namespace.to_owned()]),
                        ..PolicySource::default()
                    }),
                }]),
                ..Rule::default()
            }]),
            ..AuthorizationPolicySpec::default()
        },
        status: None,
    })
}

fn mesh() -> Vec<LoadedObject> {
    let mut objects = Vec::new();
    for node in 0..NODES {
        objects.push(loaded(Object::Node(Node {
            metadata: meta(&format!("node-{node}"), None, &[]),
            spec: Some(NodeSpec {
                pod_cidr: Some(format!("10.{}.0.0/20", 100 + node)),
                ..NodeSpec::default()
            }),
            status: None,
        })));
    }
    objects.push(loaded(Object::PeerAuthentication(Resource {
        api_version: "security.istio.io/v1".to_owned(),
        kind: "PeerAuthentication".to_owned(),
        metadata: meta("mesh", Some("istio-system"), &[]),
        spec: PeerAuthenticationSpec {
            mtls: Some(MutualTls {
                mode: Some(MtlsMode::Strict),
            }),
            ..PeerAuthenticationSpec::default()
        },
        status: None,
    })));
    for n in 0..NAMESPACES {
        let namespace = format!("ns-{n}");
        objects.push(loaded(Object::Namespace(Namespace {
            metadata: meta(&namespace, None, &[("istio.io/dataplane-mode", "ambient")]),
            ..Namespace::default()
        })));
        for s in 0..SERVICES_PER_NAMESPACE {
            let app = format!("svc-{s}");
            objects.push(loaded(deployment(&namespace, &app)));
            objects.push(loaded(service(
                &namespace,
                &app,
                format!("10.96.{n}.{}", s + 1),
            )));
        }
        objects.push(loaded(allow_policy(&namespace, "svc-0", "ns-0")));
    }
    objects
}

#[test]
fn scale_full_translation_and_one_policy_edit() {
    let objects = mesh();
    let snapshot = ConfigSnapshot::new(objects.clone());

    let started = Instant::now();
    let mut translator = Translator::new(TranslateOptions::default());
    translator.full(&snapshot);
    let full_time = started.elapsed();
    let output = translator.output();
    let addresses = output.of_type(ADDRESS.type_url);
    let authorizations = output.of_type(AUTHORIZATION.type_url);
    let workloads = addresses
        .keys()
        .filter(|k| k.starts_with("Kubernetes//Pod/"))
        .count();
    let pushed_bytes = output.encoded_size();
    eprintln!(
        "scale: {workloads} workloads, {} addresses, {} authorizations; full translation {full_time:?}; \
         first push {pushed_bytes} bytes ({} KiB, {:.0} bytes/resource)",
        addresses.len(),
        authorizations.len(),
        pushed_bytes / 1024,
        pushed_bytes as f64 / output.resource_count() as f64,
    );
    assert_eq!(
        workloads,
        NAMESPACES * SERVICES_PER_NAMESPACE * REPLICAS as usize
    );
    assert_eq!(
        addresses.len(),
        workloads + NAMESPACES * SERVICES_PER_NAMESPACE
    );
    assert_eq!(
        authorizations.len(),
        NAMESPACES + 1,
        "one policy per namespace plus mesh STRICT"
    );
    assert!(
        pushed_bytes > 100 * workloads && pushed_bytes < 2_000 * workloads,
        "{pushed_bytes} bytes"
    );
    assert_eq!(output.all_warnings().count(), 0);

    let target = ObjectRef {
        kind: Kind::AuthorizationPolicy,
        namespace: Some("ns-3".to_owned()),
        name: "allow".to_owned(),
    };
    let edited: Vec<LoadedObject> = objects
        .into_iter()
        .map(|mut loaded| {
            if loaded.object.object_ref() == target
                && let Object::AuthorizationPolicy(policy) = &mut loaded.object
            {
                policy.spec.action = Some(weft_api::istio::Action::Deny);
            }
            loaded
        })
        .collect();
    let started = Instant::now();
    let change =
        translator.apply_change(&ConfigSnapshot::new(edited), std::slice::from_ref(&target));
    let edit_time = started.elapsed();
    eprintln!(
        "scale: one policy edit re-translated {} resource(s) in {edit_time:?}",
        change.retranslated.len()
    );
    let only = std::collections::BTreeSet::from([ResourceKey::authorization("ns-3/allow")]);
    assert_eq!(change.retranslated, only);
    assert_eq!(change.updated, only);
}
