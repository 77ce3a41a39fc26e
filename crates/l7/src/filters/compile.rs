//! Filters from the wire form, validated as Gateway API defines them: each filter has a
//! kind; header modifiers, redirect, rewrite and CORS appear at most once, redirect and rewrite
//! never together; `ReplacePrefixMatch` needs a rule whose one match is a `PathPrefix`;
//! header names and values, hostnames, paths, ports, redirect codes and mirror fractions
//! are valid. Errors name the field in Gateway API terms.

use super::{Cors, Filters, HeaderModifier, Mirror, PathModifier, Redirect, RequestStep, Rewrite};
use crate::routes::FieldError;
use crate::rule::RouteBackend;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderName, HeaderValue, StatusCode};
use weft_proto::l7::{self as pb, filter::Kind, path_modifier};

/// Redirect codes Gateway API allows (302 when unset).
const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];

fn err<T>(at: impl Into<String>, message: impl Into<String>) -> Result<T, FieldError> {
    Err((at.into(), message.into()))
}

impl Filters {
    /// Compiles `filters` (at `at`, e.g. `spec.rules[0].filters`); `prefix_only` tells
    /// whether the rule has exactly one match and it is a `PathPrefix`.
    pub(crate) fn compile(
        filters: &[pb::Filter],
        prefix_only: bool,
        at: &str,
    ) -> Result<Self, FieldError> {
        let mut compiled = Filters::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (i, filter) in filters.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let Some(kind) = &filter.kind else {
                return err(at, "a filter without a kind");
            };
            let name = kind_name(kind);
            if name != "RequestMirror" && seen.contains(&name) {
                return err(at, format!("{name} appears more than once"));
            }
            let conflict = [
                ("RequestRedirect", "URLRewrite"),
                ("URLRewrite", "RequestRedirect"),
            ]
            .into_iter()
            .find(|(this, other)| name == *this && seen.contains(other));
            if let Some((this, other)) = conflict {
                return err(
                    at,
                    format!("{this} cannot be used with {other} in one rule"),
                );
            }
            seen.push(name);
            compiled.push(kind, prefix_only, &at)?;
        }
        Ok(compiled)
    }

    fn push(&mut self, kind: &Kind, prefix_only: bool, at: &str) -> Result<(), FieldError> {
        match kind {
            Kind::RequestHeaderModifier(m) => {
                let at = format!("{at}.requestHeaderModifier");
                self.request
                    .push(RequestStep::Headers(HeaderModifier::compile(m, &at)?));
            }
            Kind::ResponseHeaderModifier(m) => {
                let at = format!("{at}.responseHeaderModifier");
                self.response.push(HeaderModifier::compile(m, &at)?);
            }
            Kind::RequestRedirect(r) => {
                let at = format!("{at}.requestRedirect");
                self.request.push(RequestStep::Redirect(Redirect::compile(
                    r,
                    prefix_only,
                    &at,
                )?));
            }
            Kind::UrlRewrite(r) => {
                let at = format!("{at}.urlRewrite");
                self.request
                    .push(RequestStep::Rewrite(Rewrite::compile(r, prefix_only, &at)?));
            }
            Kind::RequestMirror(m) => {
                self.mirrors
                    .push(Mirror::compile(m, &format!("{at}.requestMirror"))?);
            }
            Kind::Cors(c) => self.cors = Some(Cors::compile(c, &format!("{at}.cors"))?),
        }
        Ok(())
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::RequestHeaderModifier(_) => "RequestHeaderModifier",
        Kind::ResponseHeaderModifier(_) => "ResponseHeaderModifier",
        Kind::RequestRedirect(_) => "RequestRedirect",
        Kind::UrlRewrite(_) => "URLRewrite",
        Kind::RequestMirror(_) => "RequestMirror",
        Kind::Cors(_) => "CORS",
    }
}

impl HeaderModifier {
    fn compile(m: &pb::HeaderModifier, at: &str) -> Result<Self, FieldError> {
        let pairs = |list: &[pb::Header], field: &str| {
            let mut out: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(list.len());
            for (i, header) in list.iter().enumerate() {
                let at = format!("{at}.{field}[{i}]");
                let name = header_name(&header.name, &at)?;
                if out.iter().any(|(seen, _)| *seen == name) {
                    return err(format!("{at}.name"), format!("{name} is listed twice"));
                }
                let value = HeaderValue::try_from(header.value.as_str())
                    .or_else(|e| err(format!("{at}.value"), e.to_string()))?;
                out.push((name, value));
            }
            Ok(out)
        };
        let remove = (m.remove.iter().enumerate())
            .map(|(i, name)| header_name(name, &format!("{at}.remove[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(HeaderModifier {
            set: pairs(&m.set, "set")?,
            add: pairs(&m.add, "add")?,
            remove,
        })
    }
}

fn header_name(name: &str, at: &str) -> Result<HeaderName, FieldError> {
    HeaderName::from_bytes(name.as_bytes()).or_else(|e| err(format!("{at}.name"), e.to_string()))
}

fn path_modifier(
    path: Option<&pb::PathModifier>,
    prefix_only: bool,
    at: &str,
) -> Result<Option<PathModifier>, FieldError> {
    let Some(path) = path else { return Ok(None) };
    let at = format!("{at}.path");
    let check = |value: &str, field: &str, empty_ok: bool| {
        let valid = (empty_ok && value.is_empty())
            || (value.starts_with('/')
                && !value.contains(['?', '#'])
                && PathAndQuery::try_from(value).is_ok());
        if valid {
            Ok(value.to_owned())
        } else {
            err(format!("{at}.{field}"), format!("{value:?} is not a path"))
        }
    };
    match &path.kind {
        None => err(at, "a path modifier without a type"),
        Some(path_modifier::Kind::ReplaceFullPath(full)) => Ok(Some(
            PathModifier::ReplaceFullPath(check(full, "replaceFullPath", false)?),
        )),
        Some(path_modifier::Kind::ReplacePrefixMatch(_)) if !prefix_only => err(
            format!("{at}.replacePrefixMatch"),
            "ReplacePrefixMatch needs a rule with exactly one match, of type PathPrefix",
        ),
        Some(path_modifier::Kind::ReplacePrefixMatch(prefix)) => Ok(Some(
            PathModifier::ReplacePrefixMatch(check(prefix, "replacePrefixMatch", true)?),
        )),
    }
}

fn hostname(value: &str, at: &str) -> Result<Option<String>, FieldError> {
    if value.is_empty() {
        return Ok(None);
    }
    let valid = Authority::try_from(value).is_ok_and(|a| a.port().is_none() && a.as_str() == value)
        && !value.contains('@')
        && HeaderValue::try_from(value).is_ok();
    if valid {
        Ok(Some(value.to_owned()))
    } else {
        err(
            format!("{at}.hostname"),
            format!("{value:?} is not a hostname"),
        )
    }
}

impl Redirect {
    fn compile(r: &pb::Redirect, prefix_only: bool, at: &str) -> Result<Self, FieldError> {
        let scheme = match r.scheme.as_str() {
            "" => None,
            "http" | "https" => Some(r.scheme.clone()),
            other => {
                return err(
                    format!("{at}.scheme"),
                    format!("{other:?} is not http or https"),
                );
            }
        };
        let port = match u16::try_from(r.port) {
            Ok(0) => None,
            Ok(port) => Some(port),
            Err(_) => return err(format!("{at}.port"), format!("{} is not a port", r.port)),
        };
        let code = if r.status_code == 0 {
            302
        } else {
            r.status_code
        };
        let status = u16::try_from(code)
            .ok()
            .filter(|c| REDIRECT_CODES.contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok());
        let Some(status) = status else {
            return err(
                format!("{at}.statusCode"),
                format!("{code} is not 301, 302, 303, 307 or 308"),
            );
        };
        Ok(Redirect {
            scheme,
            hostname: hostname(&r.hostname, at)?,
            port,
            path: path_modifier(r.path.as_ref(), prefix_only, at)?,
            status,
        })
    }
}

impl Rewrite {
    fn compile(r: &pb::Rewrite, prefix_only: bool, at: &str) -> Result<Self, FieldError> {
        Ok(Rewrite {
            hostname: hostname(&r.hostname, at)?,
            path: path_modifier(r.path.as_ref(), prefix_only, at)?,
        })
    }
}

impl Mirror {
    fn compile(m: &pb::Mirror, at: &str) -> Result<Self, FieldError> {
        let Some(backend) = &m.backend else {
            return err(format!("{at}.backendRef"), "a mirror without a backend");
        };
        let backend = RouteBackend::compile(backend, false, &format!("{at}.backendRef"))?;
        let (numerator, denominator) = match (m.numerator, m.denominator) {
            (0, 0) => (100, 100),
            (n, 0) => (n, 100),
            fraction => fraction,
        };
        if numerator > denominator {
            return err(
                format!("{at}.fraction"),
                format!("{numerator}/{denominator} is more than every request"),
            );
        }
        Ok(Mirror {
            backend,
            numerator,
            denominator,
        })
    }
}
