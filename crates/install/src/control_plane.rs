//! The control plane's objects: its ServiceAccount and RBAC (from [`crate::rbac`]), the
//! Deployment running `weft control --kubernetes` (replicas, probes, resources, no
//! privileges), a PodDisruptionBudget keeping one replica through voluntary disruptions,
//! and the Service node proxies and waypoints reach it on (15012 CA + xDS, 15014 monitoring).

use crate::manifest::{ManifestObject, label_map, meta, service_account, template_meta};
use crate::pod::{container_port, http_probe, resources, weft_container};
use crate::rbac::{self, Scope};
use crate::settings::Settings;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, EmptyDirVolumeSource, PodSpec, PodTemplateSpec, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Name of the Deployment, its ServiceAccount, roles and Service.
pub const NAME: &str = "weft-control";
/// TLS port of the CA and xDS.
pub const SECURE_PORT: u16 = 15012;
/// Monitoring port: `/ready`, `/healthz/live`, `/metrics`, debug pages.
pub const MONITORING_PORT: u16 = 15014;
/// Where the control plane keeps private state (an emptyDir: the CA root lives in a Secret).
const STATE_DIR: &str = "/var/lib/weft";

/// The control plane's objects, in apply order.
#[must_use]
pub fn objects(settings: &Settings) -> Vec<ManifestObject> {
    let mut objects = vec![ManifestObject::typed(&service_account(settings, NAME))];
    objects.extend(role_objects(settings, NAME, rbac::CONTROL_PLANE));
    objects.push(ManifestObject::typed(&deployment(settings)));
    objects.push(ManifestObject::typed(&disruption_budget(settings)));
    objects.push(ManifestObject::typed(&service(settings)));
    objects
}

/// ClusterRole + ClusterRoleBinding (and Role + RoleBinding when some permissions hold only
/// in the install's namespace) for the ServiceAccount `name`.
#[must_use]
pub fn role_objects(
    settings: &Settings,
    name: &str,
    permissions: &[rbac::Permission],
) -> Vec<ManifestObject> {
    let namespace = settings.namespace();
    let subject = Subject {
        kind: "ServiceAccount".to_owned(),
        name: name.to_owned(),
        namespace: Some(namespace.to_owned()),
        ..Subject::default()
    };
    let role_ref = |kind: &str| RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    };
    let mut objects = vec![
        ManifestObject::typed(&ClusterRole {
            metadata: meta(name, None, &[]),
            rules: Some(rbac::rules(permissions, Scope::Cluster)),
            ..ClusterRole::default()
        }),
        ManifestObject::typed(&ClusterRoleBinding {
            metadata: meta(name, None, &[]),
            role_ref: role_ref("ClusterRole"),
            subjects: Some(vec![subject.clone()]),
        }),
    ];
    let own = rbac::rules(permissions, Scope::OwnNamespace);
    if !own.is_empty() {
        objects.push(ManifestObject::typed(&Role {
            metadata: meta(name, Some(namespace), &[]),
            rules: Some(own),
        }));
        objects.push(ManifestObject::typed(&RoleBinding {
            metadata: meta(name, Some(namespace), &[]),
            role_ref: role_ref("Role"),
            subjects: Some(vec![subject]),
        }));
    }
    objects
}

fn app_labels() -> [(&'static str, &'static str); 1] {
    [("app", NAME)]
}

fn selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(label_map(app_labels())),
        ..LabelSelector::default()
    }
}

fn deployment(settings: &Settings) -> Deployment {
    let namespace = settings.namespace();
    let image = settings.image();
    // the gateways and waypoints it deploys run the install's image
    let args: Vec<String> = [
        "control",
        "--kubernetes",
        "--namespace",
        namespace,
        "--trust-domain",
        settings.get("trustDomain"),
        "--state-dir",
        STATE_DIR,
        "--proxy-image",
        &image,
        "--proxy-image-pull-policy",
        settings.get("imagePullPolicy"),
    ]
    .map(str::to_owned)
    .to_vec();
    let mut container = weft_container(settings, "control", &args);
    container.ports = Some(vec![
        container_port("tls-xds", SECURE_PORT),
        container_port("http-monitoring", MONITORING_PORT),
    ]);
    container.readiness_probe = Some(http_probe("/ready", MONITORING_PORT, 2, 3));
    container.liveness_probe = Some(http_probe("/healthz/live", MONITORING_PORT, 10, 3));
    container.resources = Some(resources(settings, "control"));
    container.security_context = Some(unprivileged());
    container.volume_mounts = Some(vec![VolumeMount {
        name: "state".to_owned(),
        mount_path: STATE_DIR.to_owned(),
        ..VolumeMount::default()
    }]);
    let pod = PodSpec {
        service_account_name: Some(NAME.to_owned()),
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: "state".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        termination_grace_period_seconds: Some(30),
        ..PodSpec::default()
    };
    Deployment {
        metadata: meta(NAME, Some(namespace), &app_labels()),
        spec: Some(DeploymentSpec {
            replicas: i32::try_from(settings.number("control.replicas")).ok(),
            selector: selector(),
            template: PodTemplateSpec {
                metadata: Some(template_meta(&app_labels())),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// No privilege at all: a non-root user, no capabilities, a read-only root filesystem.
fn unprivileged() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(1337),
        run_as_group: Some(1337),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn disruption_budget(settings: &Settings) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(NAME, Some(settings.namespace()), &app_labels()),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(selector()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

fn service(settings: &Settings) -> Service {
    let port = |name: &str, port: u16| ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(port),
        target_port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    Service {
        metadata: meta(NAME, Some(settings.namespace()), &app_labels()),
        spec: Some(ServiceSpec {
            selector: Some(label_map(app_labels())),
            ports: Some(vec![
                port("tls-xds", SECURE_PORT),
                port("http-monitoring", MONITORING_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
