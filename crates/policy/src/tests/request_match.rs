//! The `weft.l7.request` extension of the wire form: its conditions are evaluated with
//! request facts, fail safe without them (a node proxy), and a malformed one is rejected
//! naming the field.

use http::HeaderMap;
use weft_proto::l7::{HeaderCondition, RequestMatch};

use super::*;

fn get<'a>(headers: &'a HeaderMap, path: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        method: "GET",
        host: "shop.example.com",
        path,
        headers,
        request_principal: None,
        remote_ip: "203.0.113.9".parse().unwrap(),
    }
}

fn path_admin() -> RequestMatch {
    RequestMatch {
        paths: vec![prefix("/admin")],
        ..Default::default()
    }
}

/// Verdicts for (request to /admin, request to /shop, no request facts).
fn verdicts(policy: &Authorization) -> [Verdict; 3] {
    let set = set(std::slice::from_ref(policy));
    let headers = HeaderMap::new();
    let facts = mtls(WEB, "10.0.0.5", "10.0.1.2:80");
    [
        set.evaluate_with(&facts, Some(&get(&headers, "/admin/x"))),
        set.evaluate_with(&facts, Some(&get(&headers, "/shop"))),
        set.evaluate(&facts),
    ]
    .map(|d| d.outcome.verdict)
}

#[test]
fn request_match_is_evaluated_with_request_facts_and_fails_safe_without() {
    use Verdict::{Allow as A, Deny as D};
    let admin_from_web = with_request(principals(vec![exact(WEB)]), &path_admin());
    let allow_admin = allow("shop/a", vec![one(admin_from_web.clone())]);
    // ALLOW: only /admin is allowed; at L4 the rule matches nothing.
    assert_eq!(verdicts(&allow_admin), [A, D, D]);
    // DENY: only /admin is denied; at L4 it denies on its L4 part (web's identity).
    assert_eq!(
        verdicts(&deny("shop/d", vec![one(admin_from_web)])),
        [D, A, D]
    );
    // A DENY whose L4 part does not hold denies nothing, at L7 or L4.
    let admin_from_admin = with_request(principals(vec![exact(ADMIN)]), &path_admin());
    assert_eq!(
        verdicts(&deny("shop/d", vec![one(admin_from_admin)])),
        [A, A, A]
    );
}

#[test]
fn unsupported_request_match_fails_safe_even_with_request_facts() {
    use Verdict::{Allow as A, Deny as D};
    let unsupported = RequestMatch {
        unsupported: true,
        ..path_admin()
    };
    let m = with_request(pb::Match::default(), &unsupported);
    assert_eq!(verdicts(&allow("shop/a", vec![one(m.clone())])), [D, D, D]);
    // DENY ignores the condition it cannot evaluate but keeps the others.
    assert_eq!(verdicts(&deny("shop/d", vec![one(m)])), [D, A, D]);
}

#[test]
fn header_conditions_compare_names_case_insensitively() {
    let request = RequestMatch {
        headers: vec![HeaderCondition {
            name: "X-User".into(),
            values: vec![exact("alice")],
            not_values: vec![],
        }],
        ..Default::default()
    };
    let set = set(&[allow(
        "shop/a",
        vec![one(with_request(pb::Match::default(), &request))],
    )]);
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "alice".parse().unwrap());
    let facts = mtls(WEB, "10.0.0.5", "10.0.1.2:80");
    let decision = set.evaluate_with(&facts, Some(&get(&headers, "/")));
    assert_eq!(decision.outcome.verdict, Verdict::Allow);
}

#[test]
fn malformed_request_matches_are_rejected_naming_the_field() {
    let field = |m: pb::Match| {
        let policy = allow("shop/x", vec![one(m)]);
        CompiledPolicy::compile(None, &policy).unwrap_err().field
    };
    let mut wrong_type = with_request(pb::Match::default(), &path_admin());
    wrong_type.extensions[0].config.as_mut().unwrap().type_url = "type.googleapis.com/x".into();
    assert_eq!(
        field(wrong_type),
        "rules[0].clauses[0].matches[0].extensions[0].config.type_url"
    );
    let mut garbage = with_request(pb::Match::default(), &path_admin());
    garbage.extensions[0].config.as_mut().unwrap().value = vec![0xff, 0xff];
    assert_eq!(
        field(garbage),
        "rules[0].clauses[0].matches[0].extensions[0].config.value"
    );
    let twice = with_request(
        with_request(pb::Match::default(), &path_admin()),
        &path_admin(),
    );
    assert_eq!(field(twice), "rules[0].clauses[0].matches[0].extensions[1]");
    let bad_header = RequestMatch {
        headers: vec![HeaderCondition {
            name: "bad header".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        field(with_request(pb::Match::default(), &bad_header)),
        "rules[0].clauses[0].matches[0].extensions[0].config.headers[0].name"
    );
    let unset = RequestMatch {
        methods: vec![StringMatch::default()],
        ..Default::default()
    };
    assert_eq!(
        field(with_request(pb::Match::default(), &unset)),
        "rules[0].clauses[0].matches[0].extensions[0].config.methods[0]"
    );
}
