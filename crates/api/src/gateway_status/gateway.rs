//! A Gateway's own status: addresses (its pods'), `Accepted`, `Programmed`, and each
//! listener's conditions, supported kinds and attached route count.

use super::build::Attached;
use super::conditions::{
    Condition, GatewayStatus, GatewayStatusAddress, ListenerStatus, ObjectStatus, RouteGroupKind,
    Stamp, Status,
};
use super::gateway_addresses;
use super::gateway_tls::check_backend_client_certificate;
use super::listeners::ListenerEval;
use super::parents::GatewayView;
use crate::routes::GATEWAY_GROUP;
use crate::snapshot::ConfigSnapshot;
use std::collections::BTreeSet;

pub(super) fn gateway_status(
    snapshot: &ConfigSnapshot,
    view: &GatewayView<'_>,
    attached: &Attached,
) -> ObjectStatus {
    let stamp = Stamp::of(view.loaded);
    let addresses = gateway_addresses(snapshot, view.namespace, view.name());
    let has_address = !addresses.is_empty();
    let listeners: Vec<ListenerStatus> = view
        .own_listeners()
        .iter()
        .enumerate()
        .map(|(index, eval)| {
            let key = (view.namespace.to_owned(), view.name().to_owned(), index);
            let count = attached.get(&key).map_or(0, BTreeSet::len);
            listener_status(&stamp, eval, count, has_address)
        })
        .collect();
    let requested = address_problem(view, &addresses);
    let accepted = gateway_accepted(&stamp, view, requested.as_ref());
    let programmed = gateway_programmed(
        &stamp,
        view,
        &accepted,
        requested,
        has_address,
        snapshot.is_observed(),
    );
    let addresses = addresses
        .iter()
        .map(|ip| GatewayStatusAddress {
            type_: "IPAddress".to_owned(),
            value: ip.to_string(),
        })
        .collect();
    let mut conditions = vec![accepted, programmed];
    let sets = super::listener_sets::attached_condition(view, &stamp);
    let attached_listener_sets = sets.as_ref().map(|(_, count)| *count);
    conditions.extend(sets.map(|(condition, _)| condition));
    conditions.extend(backend_refs(snapshot, view, &stamp));
    let status = GatewayStatus {
        addresses,
        attached_listener_sets,
        conditions,
        listeners,
    };
    ObjectStatus::new(view.loaded, Status::Gateway(status))
}

/// The Gateway's `ResolvedRefs`, reported when it sets `spec.tls.backend.clientCertificateRef`
/// (the only reference of the Gateway itself): False with `InvalidClientCertificateRef` or
/// `RefNotPermitted` when the Secret cannot be used.
fn backend_refs(
    snapshot: &ConfigSnapshot,
    view: &GatewayView<'_>,
    stamp: &Stamp,
) -> Option<Condition> {
    let checked = check_backend_client_certificate(snapshot, view.gateway, view.namespace)?;
    Some(match checked {
        Ok(()) => stamp.condition(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "spec.tls.backend.clientCertificateRef resolved",
        ),
        Err((reason, message)) => stamp.condition("ResolvedRefs", false, reason, message),
    })
}

/// `Accepted`: the requested addresses' type, then the listeners' validity.
fn gateway_accepted(
    stamp: &Stamp,
    view: &GatewayView<'_>,
    requested: Option<&AddressProblem>,
) -> Condition {
    if let Some(AddressProblem::Unsupported(message)) = requested {
        return stamp.condition("Accepted", false, "UnsupportedAddress", message.clone());
    }
    let invalid: Vec<&str> = view
        .own_listeners()
        .iter()
        .filter(|l| !l.attachable())
        .map(|l| l.listener.name.as_str())
        .collect();
    if invalid.is_empty() {
        return stamp.condition("Accepted", true, "Accepted", "all listeners are valid");
    }
    let all = invalid.len() == view.own_listeners().len();
    let message = format!("listeners not valid: {}", invalid.join(", "));
    stamp.condition("Accepted", !all, "ListenersNotValid", message)
}

/// `Programmed`: accepted (else `Invalid`, whatever the address), an address (the gateway's
/// pods'), a usable requested address, and at least one listener served.
fn gateway_programmed(
    stamp: &Stamp,
    view: &GatewayView<'_>,
    accepted: &Condition,
    requested: Option<AddressProblem>,
    has_address: bool,
    observed: bool,
) -> Condition {
    let (ok, reason, message) = if !accepted.is_true() {
        (false, "Invalid", "the gateway is not accepted".to_owned())
    } else if !has_address {
        (false, "AddressNotAssigned", no_address(view, observed))
    } else if let Some(AddressProblem::NotUsable(message)) = requested {
        (false, "AddressNotUsable", message)
    } else if view.own_listeners().iter().any(ListenerEval::programmed) {
        (
            true,
            "Programmed",
            "the gateway serves its valid listeners".to_owned(),
        )
    } else {
        (false, "Invalid", "no listener can be served".to_owned())
    };
    stamp.condition("Programmed", ok, reason, message)
}

/// Why a Gateway has no address: no pod of it runs (file mode), or its Service has none
/// yet (in a cluster).
fn no_address(view: &GatewayView<'_>, observed: bool) -> String {
    if observed {
        return format!(
            "the Service weft deploys for the gateway in namespace {} has no address yet",
            view.namespace
        );
    }
    format!(
        "no pod labelled {}={} runs in namespace {}",
        super::GATEWAY_NAME_LABEL,
        view.name(),
        view.namespace
    )
}

/// What the Gateway's `spec.addresses` ask for that weft cannot give.
enum AddressProblem {
    /// A type other than `IPAddress` (Accepted=False, `UnsupportedAddress`).
    Unsupported(String),
    /// An IP address that is not one of the gateway's pods' (Programmed=False,
    /// `AddressNotUsable`).
    NotUsable(String),
}

/// The first requested address weft cannot give: the gateway's addresses are its pods'
/// (an entry without a value asks for any address, which they are).
fn address_problem(view: &GatewayView<'_>, pods: &[std::net::IpAddr]) -> Option<AddressProblem> {
    let mut requested = view.gateway.spec.addresses.iter().flatten().enumerate();
    requested.find_map(|(index, address)| {
        let kind = address.r#type.as_deref().unwrap_or("IPAddress");
        let value = address.value.as_deref().filter(|v| !v.is_empty());
        if kind != "IPAddress" {
            return Some(AddressProblem::Unsupported(format!(
                "spec.addresses[{index}]: address type {kind} is not supported (IPAddress is)"
            )));
        }
        let value = value?;
        let usable = value.parse::<std::net::IpAddr>().is_ok_and(|ip| pods.contains(&ip));
        (!usable).then(|| {
            AddressProblem::NotUsable(format!(
                "spec.addresses[{index}]: {value} is not an address of the gateway's pods; weft gives a gateway the addresses of the pods that run it"
            ))
        })
    })
}

pub(super) fn listener_status(
    stamp: &Stamp,
    eval: &ListenerEval<'_>,
    attached_routes: usize,
    has_address: bool,
) -> ListenerStatus {
    let name = &eval.listener.name;
    let accepted = match (&eval.protocol, &eval.no_valid_ca) {
        (Err((reason, message)), _) | (Ok(()), Some((reason, message))) => {
            stamp.condition("Accepted", false, reason, message.clone())
        }
        (Ok(()), None) => stamp.condition(
            "Accepted",
            true,
            "Accepted",
            format!("listener {name} is valid"),
        ),
    };
    let conflicted = match &eval.conflict {
        Some((reason, message)) => stamp.condition("Conflicted", true, reason, message.clone()),
        None => stamp.condition(
            "Conflicted",
            false,
            "NoConflicts",
            "no conflicting listener",
        ),
    };
    let resolved = resolved_refs(stamp, eval);
    let programmed = if !eval.programmed() {
        stamp.condition(
            "Programmed",
            false,
            "Invalid",
            format!("listener {name} cannot be served"),
        )
    } else if has_address {
        stamp.condition(
            "Programmed",
            true,
            "Programmed",
            format!("listener {name} is served"),
        )
    } else {
        stamp.condition(
            "Programmed",
            false,
            "Pending",
            "the gateway has no address yet",
        )
    };
    let supported_kinds = eval
        .kinds
        .iter()
        .map(|k| RouteGroupKind {
            group: GATEWAY_GROUP.to_owned(),
            kind: k.name().to_owned(),
        })
        .collect();
    ListenerStatus {
        name: name.clone(),
        supported_kinds,
        attached_routes: i32::try_from(attached_routes).unwrap_or(i32::MAX),
        conditions: vec![accepted, programmed, resolved, conflicted],
    }
}

fn resolved_refs(stamp: &Stamp, eval: &ListenerEval<'_>) -> Condition {
    if !eval.invalid_kinds.is_empty() {
        let message = format!(
            "allowedRoutes.kinds: {} cannot attach to a {} listener",
            eval.invalid_kinds.join(", "),
            eval.listener.protocol
        );
        return stamp.condition("ResolvedRefs", false, "InvalidRouteKinds", message);
    }
    match eval.certificate_problems.first() {
        None => stamp.condition(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all references resolved",
        ),
        Some((reason, _)) => {
            let messages: Vec<&str> = eval
                .certificate_problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect();
            stamp.condition("ResolvedRefs", false, reason, messages.join("; "))
        }
    }
}
