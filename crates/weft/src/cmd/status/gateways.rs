//! `weft status --gateways`: each Gateway's class, addresses and conditions, its listeners
//! (port, protocol, conditions, attached routes), then each route's conditions per parent.
//! A condition shows as `True`/`False`, with its reason when that says more than the type
//! (`False (BackendNotFound)`, `True (HostnameConflict)`).

use super::columns;
use weft_api::gateway_status::{Condition, ObjectStatus, Status};

/// The full gateway report.
pub(super) fn render(statuses: &[ObjectStatus]) -> String {
    let gateways: Vec<&ObjectStatus> = statuses.iter().filter(|s| s.kind == "Gateway").collect();
    if gateways.is_empty() {
        return "no gateways\n".to_owned();
    }
    let mut out = String::new();
    for gateway in gateways {
        out.push_str(&render_gateway(gateway));
        out.push('\n');
    }
    out.push_str(&render_routes(statuses));
    out
}

/// `GATEWAY ADDRESSES PROGRAMMED` lines for plain `weft status` (empty without gateways).
pub(super) fn render_addresses(statuses: &[ObjectStatus]) -> String {
    let mut rows = vec![header(&["GATEWAY", "CLASS", "ADDRESSES", "PROGRAMMED"])];
    for status in statuses.iter().filter(|s| s.kind == "Gateway") {
        if let Status::Gateway(gateway) = &status.status {
            rows.push(vec![
                name(status),
                class(status),
                addresses(gateway),
                shown(&gateway.conditions, "Programmed"),
            ]);
        }
    }
    if rows.len() == 1 {
        return String::new();
    }
    format!("\n{}", columns(&rows, ""))
}

fn render_gateway(status: &ObjectStatus) -> String {
    let Status::Gateway(gateway) = &status.status else {
        return String::new();
    };
    // a ListenerSet's status has a Gateway's shape: shown the same way, under its kind
    let kind = status.kind.to_uppercase();
    let top = [
        header(&[&kind, "CLASS", "ADDRESSES", "ACCEPTED", "PROGRAMMED"]),
        vec![
            name(status),
            class(status),
            addresses(gateway),
            shown(&gateway.conditions, "Accepted"),
            shown(&gateway.conditions, "Programmed"),
        ],
    ];
    let mut rows = vec![header(&[
        "LISTENER",
        "PORT",
        "PROTOCOL",
        "ACCEPTED",
        "PROGRAMMED",
        "RESOLVEDREFS",
        "CONFLICTED",
        "ROUTES",
    ])];
    let echoes = status
        .spec
        .as_ref()
        .map(|s| s.listeners.as_slice())
        .unwrap_or_default();
    for listener in &gateway.listeners {
        let echo = echoes.iter().find(|e| e.name == listener.name);
        rows.push(vec![
            listener.name.clone(),
            echo.map_or_else(|| "-".to_owned(), |e| e.port.to_string()),
            echo.map_or_else(|| "-".to_owned(), |e| e.protocol.clone()),
            shown(&listener.conditions, "Accepted"),
            shown(&listener.conditions, "Programmed"),
            shown(&listener.conditions, "ResolvedRefs"),
            shown(&listener.conditions, "Conflicted"),
            listener.attached_routes.to_string(),
        ]);
    }
    format!("{}{}", columns(&top, ""), columns(&rows, "  "))
}

fn render_routes(statuses: &[ObjectStatus]) -> String {
    let mut rows = vec![header(&["ROUTE", "PARENT", "ACCEPTED", "RESOLVEDREFS"])];
    for status in statuses {
        let Status::Route(route) = &status.status else {
            continue;
        };
        for parent in &route.parents {
            let reference = &parent.parent_ref;
            let namespace = reference
                .namespace
                .as_deref()
                .or(status.metadata.namespace.as_deref())
                .unwrap_or("-");
            let mut target = format!(
                "{} {namespace}/{}",
                reference.kind.as_deref().unwrap_or("Gateway"),
                reference.name
            );
            if let Some(section) = &reference.section_name {
                target.push_str(&format!(" ({section})"));
            }
            if let Some(port) = reference.port {
                target.push_str(&format!(" :{port}"));
            }
            rows.push(vec![
                format!("{} {}", status.kind, name(status)),
                target,
                shown(&parent.conditions, "Accepted"),
                shown(&parent.conditions, "ResolvedRefs"),
            ]);
        }
    }
    if rows.len() == 1 {
        return "no routes attached to gateways\n".to_owned();
    }
    columns(&rows, "")
}

fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn name(status: &ObjectStatus) -> String {
    match &status.metadata.namespace {
        Some(namespace) => format!("{namespace}/{}", status.metadata.name),
        None => status.metadata.name.clone(),
    }
}

fn class(status: &ObjectStatus) -> String {
    status
        .spec
        .as_ref()
        .map_or_else(|| "-".to_owned(), |s| s.gateway_class_name.clone())
}

fn addresses(gateway: &weft_api::gateway_status::GatewayStatus) -> String {
    if gateway.addresses.is_empty() {
        return "-".to_owned();
    }
    let values: Vec<&str> = gateway.addresses.iter().map(|a| a.value.as_str()).collect();
    values.join(",")
}

/// `True`, `False`, with the reason when it is not just the type's name (`-` if absent).
fn shown(conditions: &[Condition], type_: &str) -> String {
    let Some(condition) = conditions.iter().find(|c| c.type_ == type_) else {
        return "-".to_owned();
    };
    if condition.reason == type_ || condition.reason == "NoConflicts" {
        condition.status.clone()
    } else {
        format!("{} ({})", condition.status, condition.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::{render, render_addresses};
    use std::path::Path;

    const CONFIG: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: weft
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: raw, port: 80, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{backendRefs: [{name: missing, port: 80}]}]
"#;

    #[test]
    fn the_table_shows_listeners_and_route_reasons() {
        let loaded = weft_api::parse_manifests(CONFIG, Path::new("gw.yaml"));
        let statuses =
            weft_api::gateway_status::statuses(&weft_api::ConfigSnapshot::new(loaded.objects));
        // Through JSON, as `weft status` reads /debug/gatewayz.
        let json = serde_json::to_vec(&statuses).unwrap();
        let statuses: Vec<weft_api::gateway_status::ObjectStatus> =
            serde_json::from_slice(&json).unwrap();
        let table = render(&statuses);
        assert!(table.contains("default/gw  weft"), "{table}");
        assert!(table.contains("  http      80    HTTP"), "{table}");
        assert!(table.contains("True (ProtocolConflict)"), "{table}");
        assert!(
            table.contains(
                "HTTPRoute default/r  Gateway default/gw (http)  True      False (BackendNotFound)"
            ),
            "{table}"
        );
        assert!(render_addresses(&statuses).contains("GATEWAY"), "{table}");
        assert_eq!(render(&[]), "no gateways\n");
    }
}
