//! The L7 half of a wire match: the `istio.security.Match` extension named
//! [`weft_proto::REQUEST_MATCH_EXTENSION`], whose config is a packed
//! `weft.l7.v1.RequestMatch`, compiled into an [`L7Match`].
//!
//! Any other extension, and a `RequestMatch` flagged `unsupported`, is a condition this
//! engine cannot evaluate: the caller fails safe on it (see `compile_rule`).

use http::HeaderName;
use prost::Message;
use weft_proto::l7::RequestMatch;
use weft_proto::security::{self, Extension};
use weft_proto::{REQUEST_MATCH_EXTENSION, REQUEST_MATCH_TYPE_URL};

use crate::compile::{compile_cidrs, compile_strings};
use crate::l7::{HeaderCondition, L7Match};
use crate::validation::{Ctx, Problem, ValidationError};

/// What the extensions of one match amount to.
#[derive(Debug, Default)]
pub(crate) struct Extensions {
    /// The decoded L7 conditions (empty when there were none).
    pub l7: L7Match,
    /// Some condition cannot be evaluated here (an unknown extension, `unsupported`).
    pub unevaluable: bool,
}

/// Compiles the extensions of the match at `path`.
///
/// # Errors
/// A `weft.l7.request` extension with a missing or foreign config, one that does not
/// decode, a second one on the same match, or a malformed condition inside it.
pub(crate) fn compile_extensions(
    ctx: Ctx<'_>,
    path: &str,
    extensions: &[Extension],
) -> Result<Extensions, ValidationError> {
    let mut out = Extensions::default();
    let mut seen = false;
    for (e, extension) in extensions.iter().enumerate() {
        let field = format!("{path}.extensions[{e}]");
        if extension.name != REQUEST_MATCH_EXTENSION {
            out.unevaluable = true;
            continue;
        }
        if seen {
            return Err(ctx.error(
                field,
                Problem::Malformed(format!(
                    "a second {REQUEST_MATCH_EXTENSION} extension on one match"
                )),
            ));
        }
        seen = true;
        let request = decode(ctx, &field, extension)?;
        out.unevaluable |= request.unsupported;
        out.l7 = compile_request_match(ctx, &format!("{field}.config"), &request)?;
    }
    Ok(out)
}

fn decode(
    ctx: Ctx<'_>,
    field: &str,
    extension: &Extension,
) -> Result<RequestMatch, ValidationError> {
    let config = extension
        .config
        .as_ref()
        .ok_or_else(|| ctx.error(format!("{field}.config"), Problem::Unset))?;
    if config.type_url != REQUEST_MATCH_TYPE_URL {
        return Err(ctx.error(
            format!("{field}.config.type_url"),
            Problem::Malformed(format!(
                "{:?} is not {REQUEST_MATCH_TYPE_URL}",
                config.type_url
            )),
        ));
    }
    RequestMatch::decode(config.value.as_slice()).map_err(|e| {
        ctx.error(
            format!("{field}.config.value"),
            Problem::Malformed(format!("not a RequestMatch: {e}")),
        )
    })
}

fn compile_request_match(
    ctx: Ctx<'_>,
    path: &str,
    m: &RequestMatch,
) -> Result<L7Match, ValidationError> {
    let strings =
        |field: &str, list: &[security::StringMatch]| compile_strings(ctx, path, field, list);
    let cidrs = |field: &str, list: &[security::Address]| compile_cidrs(ctx, path, field, list);
    let headers = m.headers.iter().enumerate().map(|(i, h)| {
        let field = format!("{path}.headers[{i}]");
        Ok(HeaderCondition {
            name: header_name(ctx, &format!("{field}.name"), &h.name)?,
            values: strings(&format!("headers[{i}].values"), &h.values)?,
            not_values: strings(&format!("headers[{i}].not_values"), &h.not_values)?,
        })
    });
    Ok(L7Match {
        hosts: strings("hosts", &m.hosts)?,
        not_hosts: strings("not_hosts", &m.not_hosts)?,
        methods: strings("methods", &m.methods)?,
        not_methods: strings("not_methods", &m.not_methods)?,
        paths: strings("paths", &m.paths)?,
        not_paths: strings("not_paths", &m.not_paths)?,
        request_principals: strings("request_principals", &m.request_principals)?,
        not_request_principals: strings("not_request_principals", &m.not_request_principals)?,
        remote_ips: cidrs("remote_ips", &m.remote_ips)?,
        not_remote_ips: cidrs("not_remote_ips", &m.not_remote_ips)?,
        headers: headers.collect::<Result<_, ValidationError>>()?,
    })
}

/// A header name, lower-cased (HTTP header names compare case-insensitively).
pub(crate) fn header_name(
    ctx: Ctx<'_>,
    field: &str,
    name: &str,
) -> Result<HeaderName, ValidationError> {
    HeaderName::try_from(name.to_ascii_lowercase()).map_err(|_| {
        ctx.error(
            field,
            Problem::Malformed(format!("{name:?} is not a valid header name")),
        )
    })
}
