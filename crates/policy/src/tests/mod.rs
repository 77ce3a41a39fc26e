//! Table-driven tests of L4 authorization semantics.

use std::sync::Arc;

use weft_proto::security::{self as pb, Authorization, StringMatch};

use super::*;

mod empty_clauses;
#[cfg(feature = "api")]
mod l7;
mod request_match;
use crate::testing::*;

fn set(policies: &[Authorization]) -> PolicySet {
    let compiled = policies
        .iter()
        .map(|p| Arc::new(CompiledPolicy::compile(None, p).unwrap()));
    PolicySet::new(compiled, vec![])
}

const WEB: &str = "cluster.local/ns/shop/sa/web";
const ADMIN: &str = "cluster.local/ns/ops/sa/admin";
const FOREIGN: &str = "other.domain/ns/shop/sa/web";

fn principals(list: Vec<StringMatch>) -> pb::Match {
    pb::Match {
        principals: list,
        ..Default::default()
    }
}
fn not_principals(list: Vec<StringMatch>) -> pb::Match {
    pb::Match {
        not_principals: list,
        ..Default::default()
    }
}
fn namespaces(list: Vec<StringMatch>) -> pb::Match {
    pb::Match {
        namespaces: list,
        ..Default::default()
    }
}
fn ports(list: Vec<u32>) -> pb::Match {
    pb::Match {
        destination_ports: list,
        ..Default::default()
    }
}

/// Expected enforced outcome: verdict, deciding policy, rule, reason.
type Expect = (Verdict, Option<&'static str>, Option<usize>, Reason);

const ALLOWED_BY_DEFAULT: Expect = (Verdict::Allow, None, None, Reason::NoAllowPolicy);
const NOT_ALLOWED: Expect = (Verdict::Deny, None, None, Reason::NoAllowMatched);
fn allowed_by(policy: &'static str, rule: usize) -> Expect {
    (
        Verdict::Allow,
        Some(policy),
        Some(rule),
        Reason::AllowMatched,
    )
}
fn denied_by(policy: &'static str, rule: usize) -> Expect {
    (Verdict::Deny, Some(policy), Some(rule), Reason::DenyMatched)
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<(&'static str, Vec<Authorization>, ConnectionFacts, Expect)> {
    let web = || mtls(WEB, "10.0.0.5", "10.0.1.2:8080");
    let admin = || mtls(ADMIN, "10.0.0.6", "10.0.1.2:8080");
    let plain = || plaintext("10.0.0.7", "10.0.1.2:8080");
    vec![
        ("no policies", vec![], web(), ALLOWED_BY_DEFAULT),
        (
            "no policies, plaintext",
            vec![],
            plain(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "allow-nothing denies mTLS",
            vec![allow("shop/none", vec![])],
            web(),
            NOT_ALLOWED,
        ),
        (
            "allow-nothing denies plaintext",
            vec![allow("shop/none", vec![])],
            plain(),
            NOT_ALLOWED,
        ),
        (
            "empty rule allows everything",
            vec![allow("shop/all", vec![rule(vec![])])],
            plain(),
            allowed_by("shop/all", 0),
        ),
        (
            "empty match allows everything",
            vec![allow("shop/all", vec![one(pb::Match::default())])],
            web(),
            allowed_by("shop/all", 0),
        ),
        (
            "empty rule in DENY denies everything",
            vec![deny("shop/block", vec![rule(vec![])])],
            web(),
            denied_by("shop/block", 0),
        ),
        (
            "exact principal allows",
            vec![allow("shop/p", vec![one(principals(vec![exact(WEB)]))])],
            web(),
            allowed_by("shop/p", 0),
        ),
        (
            "exact principal, other caller",
            vec![allow("shop/p", vec![one(principals(vec![exact(WEB)]))])],
            admin(),
            NOT_ALLOWED,
        ),
        (
            "principal list is any-of",
            vec![allow(
                "shop/p",
                vec![one(principals(vec![exact("x/ns/y/sa/z"), exact(ADMIN)]))],
            )],
            admin(),
            allowed_by("shop/p", 0),
        ),
        (
            "principal prefix",
            vec![allow(
                "shop/p",
                vec![one(principals(vec![prefix("cluster.local/ns/shop/")]))],
            )],
            web(),
            allowed_by("shop/p", 0),
        ),
        (
            "principal prefix, other ns",
            vec![allow(
                "shop/p",
                vec![one(principals(vec![prefix("cluster.local/ns/shop/")]))],
            )],
            admin(),
            NOT_ALLOWED,
        ),
        (
            "principal suffix",
            vec![allow(
                "shop/p",
                vec![one(principals(vec![suffix("/sa/admin")]))],
            )],
            admin(),
            allowed_by("shop/p", 0),
        ),
        (
            "trust domain is part of the principal",
            vec![allow("shop/p", vec![one(principals(vec![exact(WEB)]))])],
            mtls(FOREIGN, "10.0.0.5", "10.0.1.2:8080"),
            NOT_ALLOWED,
        ),
        (
            "presence matches any identity",
            vec![allow("shop/p", vec![one(principals(vec![presence()]))])],
            admin(),
            allowed_by("shop/p", 0),
        ),
        (
            "plaintext never matches presence",
            vec![allow("shop/p", vec![one(principals(vec![presence()]))])],
            plain(),
            NOT_ALLOWED,
        ),
        (
            "plaintext never matches a prefix",
            vec![allow("shop/p", vec![one(principals(vec![prefix("")]))])],
            plain(),
            NOT_ALLOWED,
        ),
        (
            "not_principals excludes",
            vec![allow(
                "shop/p",
                vec![one(not_principals(vec![exact(ADMIN)]))],
            )],
            admin(),
            NOT_ALLOWED,
        ),
        (
            "not_principals lets others in",
            vec![allow(
                "shop/p",
                vec![one(not_principals(vec![exact(ADMIN)]))],
            )],
            web(),
            allowed_by("shop/p", 0),
        ),
        (
            "not_principals holds for plaintext",
            vec![allow(
                "shop/p",
                vec![one(not_principals(vec![exact(ADMIN)]))],
            )],
            plain(),
            allowed_by("shop/p", 0),
        ),
        (
            "namespace exact",
            vec![allow("shop/n", vec![one(namespaces(vec![exact("ops")]))])],
            admin(),
            allowed_by("shop/n", 0),
        ),
        (
            "namespace exact, other ns",
            vec![allow("shop/n", vec![one(namespaces(vec![exact("ops")]))])],
            web(),
            NOT_ALLOWED,
        ),
        (
            "namespace prefix",
            vec![allow("shop/n", vec![one(namespaces(vec![prefix("sh")]))])],
            web(),
            allowed_by("shop/n", 0),
        ),
        (
            "namespace needs an identity",
            vec![allow("shop/n", vec![one(namespaces(vec![presence()]))])],
            plain(),
            NOT_ALLOWED,
        ),
        (
            "not_namespaces",
            vec![deny(
                "shop/n",
                vec![one(pb::Match {
                    not_namespaces: vec![exact("shop")],
                    ..Default::default()
                })],
            )],
            admin(),
            denied_by("shop/n", 0),
        ),
        (
            "not_namespaces, own ns passes",
            vec![deny(
                "shop/n",
                vec![one(pb::Match {
                    not_namespaces: vec![exact("shop")],
                    ..Default::default()
                })],
            )],
            web(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "service account match",
            vec![allow(
                "shop/s",
                vec![one(pb::Match {
                    service_accounts: vec![sa("ops", "admin")],
                    ..Default::default()
                })],
            )],
            admin(),
            allowed_by("shop/s", 0),
        ),
        (
            "service account needs both parts",
            vec![allow(
                "shop/s",
                vec![one(pb::Match {
                    service_accounts: vec![sa("shop", "admin")],
                    ..Default::default()
                })],
            )],
            admin(),
            NOT_ALLOWED,
        ),
        (
            "service account needs an identity",
            vec![allow(
                "shop/s",
                vec![one(pb::Match {
                    service_accounts: vec![sa("ops", "admin")],
                    ..Default::default()
                })],
            )],
            plain(),
            NOT_ALLOWED,
        ),
        (
            "not_service_accounts",
            vec![deny(
                "shop/s",
                vec![one(pb::Match {
                    not_service_accounts: vec![sa("shop", "web")],
                    ..Default::default()
                })],
            )],
            admin(),
            denied_by("shop/s", 0),
        ),
        (
            "not_service_accounts, excluded one passes",
            vec![deny(
                "shop/s",
                vec![one(pb::Match {
                    not_service_accounts: vec![sa("shop", "web")],
                    ..Default::default()
                })],
            )],
            web(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "source CIDR",
            vec![allow(
                "shop/ip",
                vec![one(pb::Match {
                    source_ips: vec![cidr("10.0.0.0/24")],
                    ..Default::default()
                })],
            )],
            plain(),
            allowed_by("shop/ip", 0),
        ),
        (
            "source CIDR, outside",
            vec![allow(
                "shop/ip",
                vec![one(pb::Match {
                    source_ips: vec![cidr("10.9.0.0/16")],
                    ..Default::default()
                })],
            )],
            plain(),
            NOT_ALLOWED,
        ),
        (
            "source single IP",
            vec![allow(
                "shop/ip",
                vec![one(pb::Match {
                    source_ips: vec![cidr("10.0.0.6/32")],
                    ..Default::default()
                })],
            )],
            admin(),
            allowed_by("shop/ip", 0),
        ),
        (
            "source CIDR with host bits set still matches its network",
            vec![allow(
                "shop/ip",
                vec![one(pb::Match {
                    source_ips: vec![cidr("10.0.0.99/24")],
                    ..Default::default()
                })],
            )],
            web(),
            allowed_by("shop/ip", 0),
        ),
        (
            "IPv6 CIDR does not match IPv4",
            vec![allow(
                "shop/ip",
                vec![one(pb::Match {
                    source_ips: vec![cidr("::/0")],
                    ..Default::default()
                })],
            )],
            web(),
            NOT_ALLOWED,
        ),
        (
            "IPv4-mapped IPv6 source matches IPv4 CIDR",
            vec![allow(
                "shop/ip",
                vec![one(pb::Match {
                    source_ips: vec![cidr("10.0.0.0/8")],
                    ..Default::default()
                })],
            )],
            plaintext("::ffff:10.0.0.7", "10.0.1.2:8080"),
            allowed_by("shop/ip", 0),
        ),
        (
            "not_source_ips",
            vec![deny(
                "shop/ip",
                vec![one(pb::Match {
                    not_source_ips: vec![cidr("10.0.0.0/24")],
                    ..Default::default()
                })],
            )],
            plaintext("192.168.1.1", "10.0.1.2:8080"),
            denied_by("shop/ip", 0),
        ),
        (
            "not_source_ips, inside passes",
            vec![deny(
                "shop/ip",
                vec![one(pb::Match {
                    not_source_ips: vec![cidr("10.0.0.0/24")],
                    ..Default::default()
                })],
            )],
            plain(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "destination CIDR",
            vec![allow(
                "shop/d",
                vec![one(pb::Match {
                    destination_ips: vec![cidr("10.0.1.0/24")],
                    ..Default::default()
                })],
            )],
            web(),
            allowed_by("shop/d", 0),
        ),
        (
            "not_destination_ips",
            vec![deny(
                "shop/d",
                vec![one(pb::Match {
                    not_destination_ips: vec![cidr("10.0.1.2/32")],
                    ..Default::default()
                })],
            )],
            web(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "destination port",
            vec![allow("shop/port", vec![one(ports(vec![80, 8080]))])],
            web(),
            allowed_by("shop/port", 0),
        ),
        (
            "destination port, other port",
            vec![allow("shop/port", vec![one(ports(vec![9090]))])],
            web(),
            NOT_ALLOWED,
        ),
        (
            "not_destination_ports",
            vec![deny(
                "shop/port",
                vec![one(pb::Match {
                    not_destination_ports: vec![8080],
                    ..Default::default()
                })],
            )],
            mtls(WEB, "10.0.0.5", "10.0.1.2:22"),
            denied_by("shop/port", 0),
        ),
        (
            "all fields of a match must hold",
            vec![allow(
                "shop/and",
                vec![one(pb::Match {
                    principals: vec![exact(WEB)],
                    destination_ports: vec![9090],
                    ..Default::default()
                })],
            )],
            web(),
            NOT_ALLOWED,
        ),
        (
            "all clauses of a rule must hold",
            vec![allow(
                "shop/and",
                vec![rule(vec![
                    vec![principals(vec![exact(WEB)])],
                    vec![ports(vec![9090])],
                ])],
            )],
            web(),
            NOT_ALLOWED,
        ),
        (
            "all clauses hold",
            vec![allow(
                "shop/and",
                vec![rule(vec![
                    vec![principals(vec![exact(WEB)])],
                    vec![ports(vec![8080])],
                ])],
            )],
            web(),
            allowed_by("shop/and", 0),
        ),
        (
            "any match of a clause",
            vec![allow(
                "shop/or",
                vec![rule(vec![vec![
                    principals(vec![exact(ADMIN)]),
                    ports(vec![8080]),
                ]])],
            )],
            web(),
            allowed_by("shop/or", 0),
        ),
        (
            "any rule of a policy, index reported",
            vec![allow(
                "shop/or",
                vec![
                    one(ports(vec![1])),
                    one(ports(vec![2])),
                    one(ports(vec![8080])),
                ],
            )],
            web(),
            allowed_by("shop/or", 2),
        ),
        (
            "DENY beats ALLOW",
            vec![
                allow("shop/a", vec![rule(vec![])]),
                deny("shop/d", vec![one(principals(vec![exact(WEB)]))]),
            ],
            web(),
            denied_by("shop/d", 0),
        ),
        (
            "DENY not matching leaves ALLOW",
            vec![
                allow("shop/a", vec![rule(vec![])]),
                deny("shop/d", vec![one(principals(vec![exact(ADMIN)]))]),
            ],
            web(),
            allowed_by("shop/a", 0),
        ),
        (
            "only DENY policies: unmatched is allowed",
            vec![deny("shop/d", vec![one(principals(vec![exact(ADMIN)]))])],
            web(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "one matching ALLOW among several",
            vec![
                allow("shop/a1", vec![one(ports(vec![1]))]),
                allow("shop/a2", vec![one(principals(vec![exact(WEB)]))]),
            ],
            web(),
            allowed_by("shop/a2", 0),
        ),
        (
            "allow-nothing next to a matching ALLOW allows",
            vec![
                allow("shop/none", vec![]),
                allow("shop/web", vec![one(principals(vec![exact(WEB)]))]),
            ],
            web(),
            allowed_by("shop/web", 0),
        ),
        (
            "first DENY by name decides",
            vec![
                deny("shop/z", vec![rule(vec![])]),
                deny("shop/b", vec![rule(vec![])]),
            ],
            web(),
            denied_by("shop/b", 0),
        ),
        (
            "STRICT (deny not principals presence) rejects plaintext",
            vec![deny(
                "istio-system/strict",
                vec![one(not_principals(vec![presence()]))],
            )],
            plain(),
            denied_by("istio-system/strict", 0),
        ),
        (
            "STRICT accepts mTLS",
            vec![deny(
                "istio-system/strict",
                vec![one(not_principals(vec![presence()]))],
            )],
            web(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "dry-run DENY is not enforced",
            vec![dry(deny("shop/d", vec![rule(vec![])]))],
            web(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "dry-run allow-nothing is not enforced",
            vec![dry(allow("shop/none", vec![]))],
            plain(),
            ALLOWED_BY_DEFAULT,
        ),
        (
            "dry-run ALLOW does not count as an ALLOW policy",
            vec![
                dry(allow("shop/a", vec![rule(vec![])])),
                allow("shop/none", vec![]),
            ],
            web(),
            NOT_ALLOWED,
        ),
    ]
}

#[test]
fn policy_table() {
    let mut failures = Vec::new();
    for (name, policies, facts, (verdict, policy, rule, reason)) in cases() {
        let decision = set(&policies).evaluate(&facts);
        let got = &decision.outcome;
        if got.verdict != verdict
            || got.policy.as_deref() != policy
            || got.rule != rule
            || got.reason != reason
        {
            failures.push(format!(
                "{name}: got {got}, want {verdict} {policy:?} rule {rule:?} ({reason})"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn dry_run_reports_what_it_would_have_done() {
    let policies = [dry(deny(
        "shop/trial",
        vec![one(principals(vec![exact(WEB)]))],
    ))];
    let set = set(&policies);
    let web = set.evaluate(&mtls(WEB, "10.0.0.5", "10.0.1.2:80"));
    assert!(web.is_allowed());
    assert!(web.dry_run_would_deny());
    let dry = web.dry_run.as_ref().unwrap();
    assert_eq!(dry.verdict, Verdict::Deny);
    assert_eq!(dry.policy.as_deref(), Some("shop/trial"));
    assert_eq!(
        web.to_string(),
        "ALLOW (no ALLOW policy applies); dry-run: DENY shop/trial rule 0 (a DENY rule matched)"
    );
    let admin = set.evaluate(&mtls(ADMIN, "10.0.0.6", "10.0.1.2:80"));
    assert!(!admin.dry_run_would_deny());
    assert_eq!(admin.dry_run.unwrap().verdict, Verdict::Allow);
}

#[test]
fn no_dry_run_policies_means_no_dry_run_outcome() {
    let decision =
        set(&[allow("shop/a", vec![rule(vec![])])]).evaluate(&plaintext("1.1.1.1", "2.2.2.2:1"));
    assert_eq!(decision.dry_run, None);
    assert_eq!(
        decision.to_string(),
        "ALLOW shop/a rule 0 (an ALLOW rule matched)"
    );
}

#[test]
fn extensions_the_proxy_cannot_evaluate_fail_safe() {
    let extension = || pb::Extension {
        name: "example.com/unknown-condition".into(),
        config: None,
    };
    // A match whose only condition is an extension would otherwise match everyone.
    let guarded = pb::Match {
        extensions: vec![extension()],
        ..Default::default()
    };
    let web = || mtls(WEB, "10.0.0.5", "10.0.1.2:80");
    let allow_ext = allow("shop/ext", vec![one(guarded.clone())]);
    assert_eq!(
        set(&[allow_ext]).evaluate(&web()).outcome.reason,
        Reason::NoAllowMatched
    );
    let deny_ext = deny("shop/ext", vec![one(guarded)]);
    assert_eq!(
        set(&[deny_ext]).evaluate(&web()).outcome.reason,
        Reason::DenyMatched
    );
    // Policy-level extensions: an ALLOW matches nothing, a DENY keeps its rules.
    let mut allow_all = allow("shop/all", vec![rule(vec![])]);
    allow_all.extensions.push(extension());
    assert_eq!(
        set(&[allow_all]).evaluate(&web()).outcome.reason,
        Reason::NoAllowMatched
    );
    let mut deny_web = deny("shop/web", vec![one(principals(vec![exact(WEB)]))]);
    deny_web.extensions.push(extension());
    assert_eq!(
        set(&[deny_web]).evaluate(&web()).outcome.reason,
        Reason::DenyMatched
    );
}

#[test]
fn malformed_policies_are_rejected_naming_the_field() {
    let bad_cidr = allow(
        "shop/x",
        vec![rule(vec![
            vec![pb::Match::default()],
            vec![pb::Match {
                source_ips: vec![pb::Address {
                    address: vec![10, 0, 0],
                    length: 8,
                }],
                ..Default::default()
            }],
        ])],
    );
    let long_prefix = allow(
        "shop/x",
        vec![one(pb::Match {
            not_destination_ips: vec![pb::Address {
                address: vec![10, 0, 0, 1],
                length: 33,
            }],
            ..Default::default()
        })],
    );
    let big_port = deny("shop/x", vec![one(ports(vec![65_536]))]);
    let unset_string = allow(
        "shop/x",
        vec![one(principals(vec![StringMatch { match_type: None }]))],
    );
    let mut unknown_action = allow("shop/x", vec![]);
    unknown_action.action = 7;
    let mut no_name = allow("shop/x", vec![]);
    no_name.name.clear();
    let cases = [
        (
            bad_cidr,
            "rules[0].clauses[1].matches[0].source_ips[0].address",
            Problem::AddressLength(3),
        ),
        (
            long_prefix,
            "rules[0].clauses[0].matches[0].not_destination_ips[0].length",
            Problem::PrefixTooLong {
                length: 33,
                max: 32,
            },
        ),
        (
            big_port,
            "rules[0].clauses[0].matches[0].destination_ports[0]",
            Problem::PortOutOfRange(65_536),
        ),
        (
            unset_string,
            "rules[0].clauses[0].matches[0].principals[0]",
            Problem::Unset,
        ),
        (unknown_action, "action", Problem::UnknownEnum(7)),
        (no_name, "name", Problem::Empty),
    ];
    for (policy, field, problem) in cases {
        let err = CompiledPolicy::compile(Some("shop/x"), &policy).unwrap_err();
        assert_eq!(err.resource, "shop/x");
        assert_eq!(
            (err.field.as_str(), &err.problem),
            (field, &problem),
            "{err}"
        );
    }
}

#[test]
fn xds_name_must_match_namespace_and_name() {
    let err = CompiledPolicy::compile(Some("shop/other"), &allow("shop/x", vec![])).unwrap_err();
    assert_eq!(err.resource, "shop/other");
    assert_eq!(
        err.problem,
        Problem::NameMismatch {
            expected: "shop/x".into()
        }
    );
}
