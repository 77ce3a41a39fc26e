//! The node proxy's objects: its ServiceAccount and ClusterRole, and the DaemonSet: an init
//! container `weft cni install --watch` (kept running) placing the CNI plugin (host CNI
//! bin/conf directories) and keeping it chained, and
//! `weft node` capturing pods in-pod. The node proxy gets the capabilities it uses (not
//! `privileged`): NET_ADMIN (nftables rules and transparent sockets in pods), NET_RAW, and
//! SYS_ADMIN for `setns` into pod network namespaces. It authenticates to the control plane
//! with a projected service account token of audience `istio-ca`. Rolling updates surge one
//! pod per node so the new proxy takes the old one's listeners over `--handoff-socket`.

use crate::control_plane;
use crate::manifest::{ManifestObject, label_map, meta, service_account, template_meta};
use crate::pod::{container_port, http_probe, resources, weft_container};
use crate::settings::Settings;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, HostPathVolumeSource, PodSpec, PodTemplateSpec,
    ProjectedVolumeSource, SecurityContext, ServiceAccountTokenProjection, Toleration, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Name of the DaemonSet, its ServiceAccount and ClusterRole.
pub const NAME: &str = "weft-node";
/// Audience of the node proxy's projected token (Istio's CA audience).
pub const TOKEN_AUDIENCE: &str = "istio-ca";
/// Where the projected token is mounted.
pub const TOKEN_PATH: &str = "/var/run/secrets/tokens/istio-token";
/// Where the mesh root (ConfigMap `istio-ca-root-cert`) is mounted.
pub const ROOT_CERT_PATH: &str = "/var/run/secrets/istio/root-cert.pem";
/// Host directory shared with the CNI plugin (its socket, the hand-off socket, pod state).
pub const RUN_DIR: &str = "/var/run/weft";
/// Node proxy metrics port.
pub const METRICS_PORT: u16 = 15020;
/// Node proxy readiness port (`/healthz/ready`, `/healthz/live`).
pub const READINESS_PORT: u16 = 15021;
/// The host's network namespace as the node proxy (`hostPID`) sees it: where the kubelet
/// runs, so where its probes of captured pods are given the probe source.
pub const HOST_NETNS: &str = "/proc/1/ns/net";
/// The node proxy's CNI socket on the host (the plugin hands pods over on it).
pub const CNI_SOCKET: &str = "/var/run/weft/cni.sock";
/// Where the host's CNI bin directory is mounted in the CNI containers.
pub const HOST_CNI_BIN: &str = "/host/opt/cni/bin";
/// Where the host's CNI config directory is mounted in the CNI containers.
pub const HOST_CNI_CONF: &str = "/host/etc/cni/net.d";
/// Where container runtimes keep pods' network namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// The node proxy's objects, in apply order.
#[must_use]
pub fn objects(settings: &Settings) -> Vec<ManifestObject> {
    // no role: the node proxy calls no Kubernetes API (its token is only its credential
    // towards the control plane; pods are handed over by the CNI plugin or found in /proc)
    vec![
        ManifestObject::typed(&service_account(settings, NAME)),
        ManifestObject::typed(&daemon_set(settings)),
    ]
}

fn app_labels() -> [(&'static str, &'static str); 1] {
    [("app", NAME)]
}

fn daemon_set(settings: &Settings) -> DaemonSet {
    let drain = settings.number("node.drainSeconds");
    let pod = PodSpec {
        service_account_name: Some(NAME.to_owned()),
        // the network namespaces of pods that started before the proxy are found
        // through /proc/PID/ns/net
        host_pid: Some(true),
        init_containers: Some(vec![cni_install(settings)]),
        containers: vec![node_proxy(settings)],
        volumes: Some(volumes(settings)),
        // SIGTERM starts the drain; the kubelet waits a little longer before SIGKILL
        termination_grace_period_seconds: Some(drain + 5),
        priority_class_name: Some("system-node-critical".to_owned()),
        node_selector: Some(label_map([("kubernetes.io/os", "linux")])),
        tolerations: Some(vec![Toleration {
            operator: Some("Exists".to_owned()),
            ..Toleration::default()
        }]),
        ..PodSpec::default()
    };
    DaemonSet {
        metadata: meta(NAME, Some(settings.namespace()), &app_labels()),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(label_map(app_labels())),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(template_meta(&app_labels())),
                spec: Some(pod),
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    }
}

/// `weft cni install --watch`, a sidecar started before the proxy (an init container that
/// keeps running): places the plugin binary, chains it into the CNI config list, and chains
/// it again whenever the cluster's CNI rewrites that file.
fn cni_install(settings: &Settings) -> Container {
    let args = [
        "cni",
        "install",
        "--watch",
        "--bin-dir",
        HOST_CNI_BIN,
        "--conf-dir",
        HOST_CNI_CONF,
        "--socket",
        CNI_SOCKET,
    ];
    let mut container = weft_tool(settings, "install-cni", &args);
    container.restart_policy = Some("Always".to_owned());
    container
}

/// A `weft` command working on the host's CNI directories and weft's run directory: root
/// (to write them), no capability.
#[must_use]
pub fn weft_tool(settings: &Settings, name: &str, args: &[&str]) -> Container {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let mut container = weft_container(settings, name, &args);
    container.volume_mounts = Some(vec![
        mount("cni-bin", HOST_CNI_BIN, None),
        mount("cni-conf", HOST_CNI_CONF, None),
        mount("weft-run", RUN_DIR, None),
    ]);
    container.security_context = Some(root_with(&[]));
    container
}

/// `weft node`: in-pod capture of the pods the CNI plugin hands over.
fn node_proxy(settings: &Settings) -> Container {
    let mut args = vec!["node".to_owned()];
    args.extend(control_args(settings));
    args.extend([
        "--cni-socket".to_owned(),
        CNI_SOCKET.to_owned(),
        "--handoff-socket".to_owned(),
        format!("{RUN_DIR}/handoff.sock"),
        "--drain-timeout".to_owned(),
        settings.get("node.drainSeconds").to_owned(),
        // the host's network namespace (hostPID): the kubelet's probes of captured pods
        // get the probe source there and pass the pods' redirect
        "--probe-snat-netns".to_owned(),
        HOST_NETNS.to_owned(),
    ]);
    let mut container = weft_container(settings, "node", &args);
    container.ports = Some(vec![
        container_port("http-metrics", METRICS_PORT),
        container_port("http-ready", READINESS_PORT),
    ]);
    container.readiness_probe = Some(http_probe("/healthz/ready", READINESS_PORT, 2, 3));
    container.liveness_probe = Some(http_probe("/healthz/live", READINESS_PORT, 10, 3));
    container.resources = Some(resources(settings, "node"));
    container.security_context = Some(root_with(&["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]));
    let mut mounts = credential_mounts();
    mounts.extend([
        mount("weft-run", RUN_DIR, None),
        mount("netns", NETNS_DIR, Some("HostToContainer")),
    ]);
    container.volume_mounts = Some(mounts);
    container
}

/// Where a proxy container mounts its credentials towards the control plane (see
/// [`credential_volumes`]): the token directory and the root's.
#[must_use]
pub fn credential_mounts() -> Vec<VolumeMount> {
    vec![
        mount("istio-token", "/var/run/secrets/tokens", None),
        mount("istio-root", "/var/run/secrets/istio", None),
    ]
}

/// How a proxy (node proxy, gateway, waypoint) reaches and trusts the control plane:
/// `--control weft-control.NS.svc:15012 --control-san weft-control.NS.svc`, its token
/// ([`TOKEN_PATH`]), the mesh root ([`ROOT_CERT_PATH`]) and the trust domain.
#[must_use]
pub fn control_args(settings: &Settings) -> Vec<String> {
    let namespace = settings.namespace();
    let control_host = format!("{}.{namespace}.svc", control_plane::NAME);
    vec![
        "--control".to_owned(),
        format!("{control_host}:{}", control_plane::SECURE_PORT),
        "--control-san".to_owned(),
        control_host,
        "--token-file".to_owned(),
        TOKEN_PATH.to_owned(),
        "--ca-root".to_owned(),
        ROOT_CERT_PATH.to_owned(),
        "--trust-domain".to_owned(),
        settings.get("trustDomain").to_owned(),
    ]
}

/// Root (to write host paths and own its sockets) with only the capabilities `add`, not
/// privileged, read-only root filesystem.
fn root_with(add: &[&str]) -> SecurityContext {
    SecurityContext {
        run_as_user: Some(0),
        run_as_non_root: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: (!add.is_empty()).then(|| add.iter().map(|c| (*c).to_owned()).collect()),
        }),
        ..SecurityContext::default()
    }
}

fn mount(name: &str, path: &str, propagation: Option<&str>) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        mount_propagation: propagation.map(str::to_owned),
        ..VolumeMount::default()
    }
}

/// The host directories the node's containers use: CNI bin and config, weft's run
/// directory, the runtime's network namespaces.
#[must_use]
pub fn host_volumes(settings: &Settings) -> Vec<Volume> {
    let host = |name: &str, path: &str, kind: &str| Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_owned(),
            type_: Some(kind.to_owned()),
        }),
        ..Volume::default()
    };
    vec![
        host("cni-bin", settings.get("cni.binDir"), "DirectoryOrCreate"),
        host("cni-conf", settings.get("cni.confDir"), "DirectoryOrCreate"),
        host("weft-run", RUN_DIR, "DirectoryOrCreate"),
        host("netns", NETNS_DIR, "DirectoryOrCreate"),
    ]
}

fn volumes(settings: &Settings) -> Vec<Volume> {
    let mut volumes = host_volumes(settings);
    volumes.extend(credential_volumes());
    volumes
}

/// A proxy's credentials towards the control plane, as the node proxy, gateways and
/// waypoints mount them ([`credential_mounts`]): its projected service account token of
/// audience [`TOKEN_AUDIENCE`] ([`TOKEN_PATH`]) and the mesh root from ConfigMap
/// `istio-ca-root-cert` ([`ROOT_CERT_PATH`]).
#[must_use]
pub fn credential_volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: "istio-token".to_owned(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(TOKEN_AUDIENCE.to_owned()),
                        expiration_seconds: Some(43_200),
                        path: "istio-token".to_owned(),
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "istio-root".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: "istio-ca-root-cert".to_owned(),
                items: None,
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}
