//! Builders for `istio.security` wire policies and connection facts, for tests here and in
//! the proxies (feature `test-support`). They panic on malformed input.

use std::net::IpAddr;

use weft_proto::security::{
    self as pb, Action as PbAction, Authorization, Clause, Rule, Scope as PbScope,
    ServiceAccountMatch, StringMatch, string_match::MatchType,
};

use crate::{ConnectionFacts, Transport};
use weft_identity::SpiffeId;

pub fn exact(s: &str) -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Exact(s.into())),
    }
}
pub fn prefix(s: &str) -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Prefix(s.into())),
    }
}
pub fn suffix(s: &str) -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Suffix(s.into())),
    }
}
pub fn presence() -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Presence(())),
    }
}
pub fn cidr(text: &str) -> pb::Address {
    let net: ipnet::IpNet = text.parse().unwrap();
    let address = match net.addr() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    pb::Address {
        address,
        length: u32::from(net.prefix_len()),
    }
}
pub fn sa(namespace: &str, service_account: &str) -> ServiceAccountMatch {
    ServiceAccountMatch {
        namespace: namespace.into(),
        service_account: service_account.into(),
    }
}
/// A rule of clauses, each clause a list of alternative matches.
pub fn rule(clauses: Vec<Vec<pb::Match>>) -> Rule {
    Rule {
        clauses: clauses
            .into_iter()
            .map(|matches| Clause { matches })
            .collect(),
    }
}
/// A rule with a single clause holding a single match.
pub fn one(m: pb::Match) -> Rule {
    rule(vec![vec![m]])
}
pub fn authz(key: &str, scope: PbScope, action: PbAction, rules: Vec<Rule>) -> Authorization {
    let (namespace, name) = key.split_once('/').unwrap();
    Authorization {
        name: name.into(),
        namespace: namespace.into(),
        scope: scope.into(),
        action: action.into(),
        rules,
        dry_run: false,
        extensions: vec![],
    }
}
pub fn allow(key: &str, rules: Vec<Rule>) -> Authorization {
    authz(key, PbScope::Namespace, PbAction::Allow, rules)
}
pub fn deny(key: &str, rules: Vec<Rule>) -> Authorization {
    authz(key, PbScope::Namespace, PbAction::Deny, rules)
}
pub fn dry(mut policy: Authorization) -> Authorization {
    policy.dry_run = true;
    policy
}
pub fn mtls(principal: &str, src: &str, dst: &str) -> ConnectionFacts {
    ConnectionFacts {
        source_identity: Some(SpiffeId::parse_uri_or_principal(principal).unwrap()),
        source_ip: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
        transport: Transport::Hbone,
    }
}
pub fn plaintext(src: &str, dst: &str) -> ConnectionFacts {
    ConnectionFacts {
        source_identity: None,
        source_ip: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
        transport: Transport::Plaintext,
    }
}
/// `m` with `request` as its `weft.l7.request` extension (the L7 half of the match).
pub fn with_request(mut m: pb::Match, request: &weft_proto::l7::RequestMatch) -> pb::Match {
    m.extensions.push(pb::Extension {
        name: weft_proto::REQUEST_MATCH_EXTENSION.into(),
        config: Some(weft_proto::pack_any(
            weft_proto::REQUEST_MATCH_TYPE_URL,
            request,
        )),
    });
    m
}
