//! A clause with no matches (possible on the wire, never produced by weft's translation)
//! must fail safe: it switches an ALLOW rule off and imposes no condition in a DENY rule.

use super::*;

#[test]
fn empty_clause_allows_less_and_denies_more() {
    let web = || mtls(WEB, "10.0.0.5", "10.0.1.2:80");
    let port_80 = pb::Match {
        destination_ports: vec![80],
        ..Default::default()
    };
    // ALLOW: [port 80] AND [nothing] -> the rule matches nothing.
    let allow_rule = rule(vec![vec![port_80.clone()], vec![]]);
    assert_eq!(
        set(&[allow("shop/a", vec![allow_rule])])
            .evaluate(&web())
            .outcome
            .reason,
        Reason::NoAllowMatched
    );
    // DENY: [port 80] AND [nothing] -> denies port 80 (the empty clause is no condition).
    let deny_rule = rule(vec![vec![port_80], vec![]]);
    let decision = set(&[deny("shop/d", vec![deny_rule])]).evaluate(&web());
    assert_eq!(decision.outcome.reason, Reason::DenyMatched);
    // DENY with only an empty clause denies everything, like a rule with no clauses.
    let decision = set(&[deny("shop/d", vec![rule(vec![vec![]])])]).evaluate(&web());
    assert_eq!(decision.outcome.reason, Reason::DenyMatched);
}
