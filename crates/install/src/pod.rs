//! Pieces the control plane's and the node proxy's pod templates share: the container
//! image and log level, HTTP probes, resources from the settings, the downward-API
//! environment.

use crate::settings::Settings;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// A container running `weft ARGS...` with the install's image and log level.
#[must_use]
pub fn weft_container(settings: &Settings, name: &str, args: &[String]) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(settings.image()),
        image_pull_policy: Some(settings.get("imagePullPolicy").to_owned()),
        command: Some(vec!["weft".to_owned()]),
        args: Some(args.to_vec()),
        env: Some(vec![
            EnvVar {
                name: "WEFT_LOG".to_owned(),
                value: Some(settings.get("logLevel").to_owned()),
                ..EnvVar::default()
            },
            field_env("NODE_NAME", "spec.nodeName"),
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ..Container::default()
    }
}

fn field_env(name: &str, field: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// An HTTP GET probe of `path` on `port`, every `period` seconds, failing after
/// `failures` misses.
#[must_use]
pub fn http_probe(path: &str, port: u16, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(port)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Probe::default()
    }
}

/// Requests and limits from the settings under `prefix` (`control` or `node`):
/// `PREFIX.resources.requests.cpu`, `.requests.memory`, `.limits.memory`. No CPU limit:
/// throttling a proxy adds latency to every connection through it.
#[must_use]
pub fn resources(settings: &Settings, prefix: &str) -> ResourceRequirements {
    let quantity = |key: &str| {
        Quantity(
            settings
                .get(&format!("{prefix}.resources.{key}"))
                .to_owned(),
        )
    };
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), quantity("requests.cpu")),
            ("memory".to_owned(), quantity("requests.memory")),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            quantity("limits.memory"),
        )])),
        ..ResourceRequirements::default()
    }
}

/// A named TCP port of a container.
#[must_use]
pub fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(port),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}
