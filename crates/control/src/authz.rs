//! `weft x authz check`'s whole answer, shared by the command and the dashboard's
//! `/api/authz`: the node proxy's L4 decision for the connection and, when a waypoint
//! serves the destination's port, the waypoint's L7 decision for the request followed by
//! the destination node proxy's L4 decision with the waypoint's identity as the peer.
//!
//! Both callers hold a translation ([`Output`]): the command translates config files, the
//! dashboard rebuilds one from the control plane's `/debug/configz` ([`output_from_configz`]).
//! The L4 decisions are the node proxy's own evaluator (`weft_node::authz_check`), the L7
//! one is [`crate::authz_l7`]'s; this module only chains them.

use crate::authz_l7::{L7Query, check_at_waypoint};
use crate::translate::{
    ADDRESS, AUTHORIZATION, Output, Resource, ResourceKey, ResourceType, WAYPOINT, message_name,
};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use weft_node::authz_check::{AuthzQuery, Source, check};
use weft_node::state::LocalConfig;
use weft_proto::l7::Waypoint;
use weft_proto::security::Authorization;
use weft_proto::workload::Address;

/// The HTTP request a waypoint decides (ignored when no waypoint serves the destination).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Path (a query string is ignored by path rules).
    pub path: &'a str,
    /// The service addressed, `NS/NAME` (`None`: the first, by name, with a waypoint).
    pub service: Option<&'a str>,
    /// Host / authority (`None`: the service's hostname).
    pub host: Option<&'a str>,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// `<iss>/<sub>` of a valid JWT on the request.
    pub request_principal: Option<&'a str>,
}

/// The waypoint's part of an answer.
#[derive(Debug, Clone, Serialize)]
pub struct WaypointAnswer {
    /// `<namespace>/<name>` of the waypoint.
    pub waypoint: String,
    /// The service key the request was addressed to (`None`: the workload itself).
    pub service: Option<String>,
    /// The waypoint's identity, the peer the destination's node proxy sees.
    pub identity: String,
    /// Whether the waypoint lets the request through.
    pub allowed: bool,
    /// The waypoint's decision with the deciding policy and rule.
    pub decision: String,
    /// The destination node proxy's L4 decision for the waypoint's connection.
    pub destination: String,
}

/// One answer of `weft x authz check`.
#[derive(Debug, Clone, Serialize)]
pub struct AuthzAnswer {
    /// Whether the call goes through (at the waypoint, if any, and at the destination).
    pub allowed: bool,
    /// The deciding answer, as the command's first line: `ALLOW`/`DENY` with the policy
    /// and rule, `(at waypoint NS/NAME)` when the waypoint denied.
    pub answer: String,
    /// When a waypoint serves the destination: its decision and the destination's.
    pub waypoint: Option<WaypointAnswer>,
}

impl fmt::Display for AuthzAnswer {
    /// The command's output: the answer, then (through a waypoint) one line for the
    /// waypoint and one for the destination's node proxy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.answer)?;
        if let Some(w) = &self.waypoint {
            let service = w.service.as_deref().unwrap_or("the workload itself");
            writeln!(
                f,
                "  waypoint {} (for {service}): {}",
                w.waypoint, w.decision
            )?;
            writeln!(
                f,
                "  destination node proxy (peer {}): {}",
                w.identity, w.destination
            )?;
        }
        Ok(())
    }
}

/// Decides `query` (and `request` at the destination's waypoint, if one serves it) over
/// `output`; `trust_domain` names the waypoint's identity.
///
/// # Errors
/// Bad input (no such workload) or translated resources a proxy would reject.
pub fn check_request(
    output: &Output,
    trust_domain: &str,
    query: &AuthzQuery,
    request: &Request<'_>,
) -> Result<AuthzAnswer, String> {
    let invalid = |err: &dyn fmt::Display| {
        format!("the translated config is not valid for a node proxy: {err}")
    };
    let addresses = output
        .decode_all(ADDRESS.type_url)
        .map_err(|e| invalid(&e))?;
    let authorizations = output
        .decode_all(AUTHORIZATION.type_url)
        .map_err(|e| invalid(&e))?;
    let config = LocalConfig::from_resources(addresses, authorizations).map_err(|e| invalid(&e))?;
    let state = config.to_state();
    let direct = check(&state, query).map_err(|err| err.to_string())?;
    let l7 = L7Query {
        workload: &direct.workload,
        port: query.port,
        service: request.service,
        source: match &query.from {
            Source::Identity(id) => Some(id.clone()),
            Source::Plaintext => None,
        },
        source_ip: query.source_ip,
        method: request.method,
        path: request.path,
        host: request.host,
        headers: request.headers,
        request_principal: request.request_principal,
    };
    let Some(at_waypoint) =
        check_at_waypoint(output, trust_domain, &l7).map_err(|err| err.to_string())?
    else {
        return Ok(AuthzAnswer {
            allowed: direct.decision.is_allowed(),
            answer: direct.to_string(),
            waypoint: None,
        });
    };
    // Through the waypoint, the destination's node proxy sees the waypoint as the client.
    let via_waypoint = AuthzQuery {
        from: Source::Identity(at_waypoint.identity.clone()),
        source_ip: None,
        ..query.clone()
    };
    let destination = check(&state, &via_waypoint).map_err(|err| err.to_string())?;
    let waypoint_allows = at_waypoint.decision.is_allowed();
    let answer = if waypoint_allows {
        destination.to_string()
    } else {
        format!(
            "{} (at waypoint {})",
            at_waypoint.decision, at_waypoint.waypoint
        )
    };
    Ok(AuthzAnswer {
        allowed: waypoint_allows && destination.decision.is_allowed(),
        answer,
        waypoint: Some(WaypointAnswer {
            waypoint: at_waypoint.waypoint,
            service: at_waypoint.service,
            identity: at_waypoint.identity.to_string(),
            allowed: waypoint_allows,
            decision: at_waypoint.decision.to_string(),
            destination: destination.to_string(),
        }),
    })
}

/// The translation `/debug/configz` shows, read back: its `addresses`, `authorizations`
/// and `waypoints` sections under their resource names.
///
/// # Errors
/// A resource that is not valid proto JSON of its type, naming it.
pub fn output_from_configz(configz: &Value) -> Result<Output, String> {
    let mut output = Output::default();
    add_section::<Address>(&mut output, configz, &ADDRESS)?;
    add_section::<Authorization>(&mut output, configz, &AUTHORIZATION)?;
    add_section::<Waypoint>(&mut output, configz, &WAYPOINT)?;
    Ok(output)
}

fn add_section<M: prost::Message + Default>(
    output: &mut Output,
    configz: &Value,
    resource_type: &ResourceType,
) -> Result<(), String> {
    let (section, full_name) = (resource_type.section, message_name(resource_type.type_url));
    for entry in configz[section].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap_or_default().to_owned();
        let message: M = weft_proto::from_json(full_name, &entry["resource"])
            .map_err(|err| format!("{section} {name:?}: {err}"))?;
        let key = ResourceKey::new(resource_type.type_url, name.clone());
        output.insert(&key, Resource::encode(name, Vec::new(), &message));
    }
    Ok(())
}
