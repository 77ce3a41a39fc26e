//! What weft deploys in a cluster for each Gateway it runs (applied by the leader control
//! plane, `weft_kube::deploy`): a ServiceAccount (the proxy's identity), a Deployment
//! running `weft gateway` or `weft waypoint run`, and a Service. Names, labels, ports and
//! the command come from [`weft_api::expand::gateway_deployment`], the same description
//! file mode expands into a pod, so both modes (and Istio's gateway deployment controller,
//! whose names they follow) agree. Here they become cluster objects:
//!
//! - every object is owned by the Gateway (an ownerReference with its uid, `controller:
//!   true`), so deleting the Gateway lets the garbage collector delete them;
//! - labels: `gateway.networking.k8s.io/gateway-name`, `istio.io/gateway-name`, the class,
//!   `app.kubernetes.io/managed-by: weft`, and the Gateway's `spec.infrastructure` labels
//!   and annotations (weft's own keys win);
//! - the container gets the control plane's address, the projected token (audience
//!   `istio-ca`) and the mesh root as the node proxy does ([`crate::node::control_args`]);
//!   it runs as a non-root user without capabilities, and a gateway's pod may bind listener
//!   ports below 1024 through the namespaced sysctl `net.ipv4.ip_unprivileged_port_start`;
//! - a gateway's Service is of type `LoadBalancer` (Istio's default; the Gateway's
//!   annotation `networking.istio.io/service-type` chooses another), a waypoint's
//!   `ClusterIP`.

use crate::manifest::{MANAGED_BY, ManifestObject};
use crate::node::{control_args, credential_mounts, credential_volumes};
use crate::pod::{container_port, http_probe, weft_container};
use crate::settings::Settings;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, PodSpec, PodTemplateSpec, SecurityContext, ServiceAccount,
    Sysctl,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use std::collections::BTreeMap;
use weft_api::expand::waypoint::WAYPOINT_CONTAINER;
use weft_api::expand::{GATEWAY_NAME_LABEL, GatewayDeployment};
use weft_api::gateway::Gateway;

/// Istio's label naming the Gateway on what it deploys.
pub const ISTIO_GATEWAY_NAME_LABEL: &str = "istio.io/gateway-name";
/// The Gateway annotation choosing its Service's type (Istio's).
pub const SERVICE_TYPE_ANNOTATION: &str = "networking.istio.io/service-type";
/// Where a waypoint answers `/healthz/ready` (its metrics port).
const WAYPOINT_READY_PORT: u16 = 15020;
/// Where a gateway answers `/healthz/ready`.
const GATEWAY_READY_PORT: u16 = 15021;
/// The user gateways and waypoints run as (as the control plane does).
const PROXY_USER: i64 = 1337;

/// Why a Gateway's objects cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayObjectsError {
    /// The Gateway has no uid yet (not read from the API), so nothing can be owned by it.
    #[error("Gateway {0}: no metadata.uid, so its objects cannot be owned by it")]
    NoUid(String),
}

/// The ServiceAccount, Deployment and Service of `gateway`, described by `deployed`, for
/// an install of `settings` (namespace of the control plane, image, pull policy, log level,
/// trust domain).
///
/// # Errors
/// The Gateway has no uid.
pub fn gateway_objects(
    settings: &Settings,
    gateway: &Gateway,
    deployed: &GatewayDeployment,
) -> Result<Vec<ManifestObject>, GatewayObjectsError> {
    let owner = owner_reference(gateway)?;
    let labels = cluster_labels(deployed);
    let annotations = (!deployed.annotations.is_empty()).then(|| deployed.annotations.clone());
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(deployed.namespace.clone()),
        labels: Some(labels.clone()),
        annotations: annotations.clone(),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let account = ServiceAccount {
        metadata: meta(&deployed.service_account),
        ..ServiceAccount::default()
    };
    let deployment = Deployment {
        metadata: meta(&deployed.service_name),
        spec: Some(DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    GATEWAY_NAME_LABEL.to_owned(),
                    deployed.gateway.clone(),
                )])),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: annotations.clone(),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(settings, deployed)),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let mut service = deployed.service();
    service.metadata = meta(&deployed.service_name);
    if let Some(spec) = service.spec.as_mut() {
        spec.type_ = Some(service_type(gateway, deployed));
    }
    Ok(vec![
        ManifestObject::typed(&account),
        ManifestObject::typed(&deployment),
        ManifestObject::typed(&service),
    ])
}

/// The Gateway as the controlling owner of what it deploys.
///
/// # Errors
/// The Gateway has no uid.
pub fn owner_reference(gateway: &Gateway) -> Result<OwnerReference, GatewayObjectsError> {
    let name = gateway.metadata.name.clone().unwrap_or_default();
    let uid = (gateway.metadata.uid.clone())
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| GatewayObjectsError::NoUid(name.clone()))?;
    Ok(OwnerReference {
        api_version: "gateway.networking.k8s.io/v1".to_owned(),
        kind: "Gateway".to_owned(),
        name,
        uid,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

/// Whether `deployed` is a waypoint's (else an ingress/egress gateway's).
fn is_waypoint(deployed: &GatewayDeployment) -> bool {
    deployed.container == WAYPOINT_CONTAINER
}

/// The description's labels with Istio's gateway-name label and weft's managed-by label
/// (weft's values win over `spec.infrastructure` ones).
fn cluster_labels(deployed: &GatewayDeployment) -> BTreeMap<String, String> {
    let mut labels = deployed.labels.clone();
    labels.insert(
        ISTIO_GATEWAY_NAME_LABEL.to_owned(),
        deployed.gateway.clone(),
    );
    labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
    labels
}

fn pod_spec(settings: &Settings, deployed: &GatewayDeployment) -> PodSpec {
    // the description's command is `weft SUBCOMMAND...`; the cluster adds the control plane
    let mut args: Vec<String> = deployed.command.iter().skip(1).cloned().collect();
    args.extend(control_args(settings));
    let mut container = weft_container(settings, deployed.container, &args);
    container.ports = Some(
        (deployed.container_ports.iter())
            .map(|(name, port)| container_port(name, *port))
            .collect(),
    );
    let ready = if is_waypoint(deployed) {
        WAYPOINT_READY_PORT
    } else {
        GATEWAY_READY_PORT
    };
    container.readiness_probe = Some(http_probe("/healthz/ready", ready, 2, 3));
    container.security_context = Some(SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(PROXY_USER),
        run_as_group: Some(PROXY_USER),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    });
    container.volume_mounts = Some(credential_mounts());
    // listener ports such as 80 and 443 without a capability: a namespaced, safe sysctl
    let sysctls = (!is_waypoint(deployed)).then(|| {
        vec![Sysctl {
            name: "net.ipv4.ip_unprivileged_port_start".to_owned(),
            value: "0".to_owned(),
        }]
    });
    PodSpec {
        service_account_name: Some(deployed.service_account.clone()),
        containers: vec![container],
        volumes: Some(credential_volumes()),
        security_context: Some(PodSecurityContext {
            sysctls,
            ..PodSecurityContext::default()
        }),
        termination_grace_period_seconds: Some(35),
        ..PodSpec::default()
    }
}

/// `LoadBalancer` for a gateway (unless its annotation chooses), `ClusterIP` for a
/// waypoint.
fn service_type(gateway: &Gateway, deployed: &GatewayDeployment) -> String {
    if is_waypoint(deployed) {
        return "ClusterIP".to_owned();
    }
    (gateway.metadata.annotations.as_ref())
        .and_then(|a| a.get(SERVICE_TYPE_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| "LoadBalancer".to_owned())
}
