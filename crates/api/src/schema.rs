//! The numeric bounds, list sizes, string lengths, patterns and enums of the upstream CRD
//! schemas (Gateway API standard channel, Istio), applied by one walker over the untyped
//! document. The constraints themselves are data, in [`crate::constraints`]: a [`Block`] names
//! the kinds it applies to, a path pattern into the object and the [`Check`]s of the fields
//! below it. This module only knows how to select the fields a pattern names and how to
//! judge one value.
//!
//! Path patterns are dot-separated keys; `[]` after a key means every element of that list,
//! `*` every value of a map and `{}` every key of a map (checked as a value itself), e.g.
//! `spec.rules[].backendRefs[]` + `weight`. Values of the wrong type are left alone: the typed
//! parse reports those.

use crate::constraints::BLOCKS;
use crate::finding::Code;
use crate::object::Kind;
use crate::suggest::{Segment, display_path};
use crate::validate::Problem;
use crate::yaml::scalar::{Typed, resolve_plain};
use crate::yaml::{Node, Value};
use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// What an upstream schema says about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `minimum` and `maximum` of an integer.
    Range(i64, i64),
    /// A port number, 1..=65535 (reported as `port-out-of-range`).
    Port,
    /// `minItems`/`maxItems` of a list, or `minProperties`/`maxProperties` of a map.
    Count(usize, usize),
    /// `minLength`/`maxLength` of a string, in characters.
    Length(usize, usize),
    /// `pattern` of a string.
    Format(Format),
    /// `enum` of a string.
    OneOf(&'static [&'static str]),
}

/// "No upper bound" for [`Check::Count`] and [`Check::Length`].
pub const UNBOUNDED: usize = usize::MAX;

/// The named string patterns of the upstream schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Gateway API `Hostname`: RFC 1123 labels, lowercase, optional leading `*.`.
    Hostname,
    /// Gateway API `Group`: empty or an RFC 1123 subdomain.
    Group,
    /// Gateway API `Kind`.
    Kind,
    /// Gateway API `Namespace`: an RFC 1123 label.
    Namespace,
    /// Gateway API `SectionName` (listener and rule names): an RFC 1123 subdomain.
    SectionName,
    /// Gateway API `Duration` (GEP-2257), e.g. `1h30m`, `500ms`.
    Duration,
    /// Gateway API `HeaderName` (HTTP token characters).
    HeaderName,
    /// Gateway API `ProtocolType` of a listener.
    ListenerProtocol,
    /// Gateway API `AddressType`.
    AddressType,
    /// Istio port name of a `WorkloadEntry`.
    PortName,
    /// Istio label selectors: no `*` wildcard.
    NoWildcard,
}

const DNS_SUBDOMAIN: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

impl Format {
    const ALL: [Format; 11] = [
        Format::Hostname,
        Format::Group,
        Format::Kind,
        Format::Namespace,
        Format::SectionName,
        Format::Duration,
        Format::HeaderName,
        Format::ListenerProtocol,
        Format::AddressType,
        Format::PortName,
        Format::NoWildcard,
    ];

    /// The upstream regular expression.
    fn pattern(self) -> String {
        match self {
            Format::Hostname => format!(r"^(\*\.)?{DNS_SUBDOMAIN}$"),
            Format::Group => format!("^$|^{DNS_SUBDOMAIN}$"),
            Format::Kind => r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$".to_owned(),
            Format::Namespace => r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$".to_owned(),
            Format::SectionName => format!("^{DNS_SUBDOMAIN}$"),
            Format::Duration => r"^([0-9]{1,5}(h|m|s|ms)){1,4}$".to_owned(),
            Format::HeaderName => r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$".to_owned(),
            Format::ListenerProtocol => {
                format!(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|{DNS_SUBDOMAIN}/[A-Za-z0-9]+$")
            }
            Format::AddressType => format!(
                r"^Hostname|IPAddress|NamedAddress|{DNS_SUBDOMAIN}/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$"
            ),
            Format::PortName => r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$".to_owned(),
            Format::NoWildcard => r"^[^*]*$".to_owned(),
        }
    }

    /// What a matching value looks like, for messages.
    fn describe(self) -> &'static str {
        match self {
            Format::Hostname => {
                "a hostname: lowercase RFC 1123 labels (a-z, 0-9, '-') joined by '.', optionally starting with \"*.\""
            }
            Format::Group => "an API group: empty or a lowercase DNS subdomain",
            Format::Kind => "a kind: a letter, then letters, digits or '-'",
            Format::Namespace => "a namespace: a lowercase RFC 1123 label (a-z, 0-9, '-')",
            Format::SectionName => "a name: a lowercase DNS subdomain (a-z, 0-9, '-', '.')",
            Format::Duration => {
                "a duration: 1 to 4 parts of up to 5 digits and a unit h, m, s or ms, e.g. 1h30m or 500ms"
            }
            Format::HeaderName => "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
            Format::ListenerProtocol => {
                "a protocol: HTTP, HTTPS, TLS, TCP, UDP, HBONE or a domain-prefixed name like example.com/proto"
            }
            Format::AddressType => {
                "an address type: IPAddress, Hostname or a domain-prefixed name like example.com/type"
            }
            Format::PortName => {
                "a port name: letters, digits and '-', starting and ending alphanumeric"
            }
            Format::NoWildcard => "a value without the '*' wildcard",
        }
    }

    fn regex(self) -> &'static Regex {
        static COMPILED: LazyLock<HashMap<Format, Regex>> = LazyLock::new(|| {
            Format::ALL
                .iter()
                .map(|f| {
                    (
                        *f,
                        Regex::new(&f.pattern()).expect("schema pattern compiles"),
                    )
                })
                .collect()
        });
        &COMPILED[&self]
    }
}

/// The constraints of one part of some kinds' schema.
#[derive(Debug)]
pub struct Block {
    /// Kinds the block applies to.
    pub kinds: &'static [Kind],
    /// `apiVersion`s it applies to (empty: all versions weft reads).
    pub versions: &'static [&'static str],
    /// Path pattern of the part, e.g. `spec.rules[].backendRefs[]`.
    pub at: &'static str,
    /// Field patterns relative to `at` (`""`: the part itself) and their checks.
    pub fields: &'static [(&'static str, Check)],
}

impl Block {
    fn applies_to(&self, kind: Kind, api_version: &str) -> bool {
        self.kinds.contains(&kind)
            && (self.versions.is_empty() || self.versions.contains(&api_version))
    }
}

/// Every schema problem of one object (`value` is the object as written).
#[must_use]
pub fn check_schema(kind: Kind, api_version: &str, value: &Node) -> Vec<Problem> {
    let mut problems = Vec::new();
    for block in BLOCKS.iter().filter(|b| b.applies_to(kind, api_version)) {
        for (field, check) in block.fields {
            let pattern = match (block.at, *field) {
                (at, "") => at.to_owned(),
                ("", field) => field.to_owned(),
                (at, field) => format!("{at}.{field}"),
            };
            for (path, node) in select(value, &pattern) {
                if let Some((code, detail)) = judge(*check, node) {
                    let message = match check {
                        Check::Port => detail,
                        _ => format!("{} {detail}", display_path(&path)),
                    };
                    problems.push(Problem {
                        code,
                        path,
                        message,
                    });
                }
            }
        }
    }
    problems
}

/// One step of a path pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Elements,
    Values,
    Keys,
}

fn steps(pattern: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in pattern.split('.') {
        match part {
            "*" => steps.push(Step::Values),
            "{}" => steps.push(Step::Keys),
            _ => match part.strip_suffix("[]") {
                Some(key) => steps.extend([Step::Key(key), Step::Elements]),
                None => steps.push(Step::Key(part)),
            },
        }
    }
    steps
}

/// Every node the pattern names, with its concrete path.
fn select<'v>(value: &'v Node, pattern: &str) -> Vec<(Vec<Segment>, Subject<'v>)> {
    let mut out = Vec::new();
    collect(value, &steps(pattern), &mut Vec::new(), &mut out);
    out
}

fn collect<'v>(
    value: &'v Node,
    steps: &[Step<'_>],
    path: &mut Vec<Segment>,
    out: &mut Vec<(Vec<Segment>, Subject<'v>)>,
) {
    let Some((step, rest)) = steps.split_first() else {
        out.push((path.clone(), Subject::Node(value)));
        return;
    };
    let mut visit = |segment: Segment, child: &'v Node| {
        path.push(segment);
        collect(child, rest, path, out);
        path.pop();
    };
    match (step, &value.value) {
        (Step::Key(key), Value::Map(_)) => {
            if let Some(child) = value.get(key) {
                visit(Segment::Key((*key).to_owned()), child);
            }
        }
        (Step::Elements, Value::Seq(items)) => {
            for (index, item) in items.iter().enumerate() {
                visit(Segment::Index(index), item);
            }
        }
        (Step::Values, Value::Map(entries)) => {
            for entry in entries {
                visit(Segment::Key(entry.key.to_string()), &entry.value);
            }
        }
        // a key is checked as a value itself; nothing is below it
        (Step::Keys, Value::Map(entries)) if rest.is_empty() => {
            for entry in entries {
                path.push(Segment::Key(entry.key.to_string()));
                out.push((path.clone(), Subject::Key(&entry.key)));
                path.pop();
            }
        }
        _ => {}
    }
}

/// What a check looks at: a node, or a mapping key.
#[derive(Debug, Clone, Copy)]
enum Subject<'v> {
    Node(&'v Node),
    Key(&'v str),
}

impl Subject<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Subject::Node(node) => node.as_str(),
            Subject::Key(key) => match resolve_plain(key) {
                Typed::Str(text) => Some(text),
                _ => None,
            },
        }
    }

    fn integer(&self) -> Option<i128> {
        match self {
            Subject::Node(node) => node.as_int(),
            Subject::Key(key) => match resolve_plain(key) {
                Typed::Int(n) => Some(n),
                _ => None,
            },
        }
    }

    /// The entries of a sequence or mapping.
    fn count(&self) -> Option<usize> {
        match self {
            Subject::Node(node) => match &node.value {
                Value::Seq(items) => Some(items.len()),
                Value::Map(entries) => Some(entries.len()),
                Value::Scalar(_) => None,
            },
            Subject::Key(_) => None,
        }
    }
}

/// The problem with one value, if any: its code and what is wrong (without the path).
fn judge(check: Check, value: Subject<'_>) -> Option<(Code, String)> {
    match check {
        Check::Range(min, max) => {
            let n = value.integer()?;
            (n < i128::from(min) || n > i128::from(max))
                .then(|| (Code::OutOfRange, format!("is {n}; allowed: {min} to {max}")))
        }
        Check::Port => {
            let n = value.integer()?;
            (!(1..=65535).contains(&n)).then(|| {
                let message = format!("port {n} is out of range 1-65535");
                (Code::PortOutOfRange, message)
            })
        }
        Check::Count(min, max) => {
            let count = value.count()?;
            outside(count, min, max).map(|bound| {
                let message = format!("has {count} entries; {bound}");
                (Code::BadItemCount, message)
            })
        }
        Check::Length(min, max) => {
            let length = value.as_str()?.chars().count();
            outside(length, min, max).map(|bound| {
                let message = format!("is {length} characters long; {bound}");
                (Code::BadLength, message)
            })
        }
        Check::Format(format) => {
            let text = value.as_str()?;
            (!format.regex().is_match(text)).then(|| {
                let message = format!("\"{text}\" is not {}", format.describe());
                (Code::BadFormat, message)
            })
        }
        Check::OneOf(allowed) => {
            let text = value.as_str()?;
            (!allowed.contains(&text)).then(|| {
                let message = format!("\"{text}\" is not one of {}", allowed.join(", "));
                (Code::InvalidEnum, message)
            })
        }
    }
}

/// The bound `n` breaks, worded for a message.
fn outside(n: usize, min: usize, max: usize) -> Option<String> {
    if n < min {
        Some(format!("the schema requires at least {min}"))
    } else if n > max {
        Some(format!("the schema allows at most {max}"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles_and_matches_what_upstream_accepts() {
        let cases = [
            (Format::Hostname, "*.example.com", true),
            (Format::Hostname, "Example.com", false),
            (Format::Group, "", true),
            (Format::Group, "example.com/x", false),
            (Format::Duration, "1h30m", true),
            (Format::Duration, "1.5s", false),
            (Format::HeaderName, "x-user`", true),
            (Format::HeaderName, ":method", false),
            (Format::ListenerProtocol, "HBONE", true),
            (Format::ListenerProtocol, "example.com/proto", true),
            (Format::ListenerProtocol, "bad proto", false),
            (Format::AddressType, "IPAddress", true),
            (Format::PortName, "http-web", true),
            (Format::NoWildcard, "a*", false),
        ];
        for (format, text, ok) in cases {
            assert_eq!(format.regex().is_match(text), ok, "{format:?} {text}");
        }
        for format in Format::ALL {
            let _ = format.regex();
        }
    }

    #[test]
    fn patterns_select_elements_values_and_keys() {
        let value = crate::yaml::parse(
            "spec:\n  rules:\n  - refs: [{w: 1}, {w: 2}]\n  - {}\n  ports: {a: 1, b: 2}\n",
        )
        .unwrap()
        .unwrap();
        let weights: Vec<String> = select(&value, "spec.rules[].refs[].w")
            .into_iter()
            .map(|(path, _)| display_path(&path))
            .collect();
        assert_eq!(
            weights,
            ["spec.rules[0].refs[0].w", "spec.rules[0].refs[1].w"]
        );
        assert_eq!(select(&value, "spec.ports.*").len(), 2);
        assert_eq!(select(&value, "spec.ports.{}")[1].1.as_str(), Some("b"));
    }
}
