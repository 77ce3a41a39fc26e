//! L7 clauses compiled from the user's `AuthorizationPolicy`: matched as Istio does with
//! request facts, and failing safe without them (as translation for node proxies does).

use http::HeaderMap;
use weft_api::istio::AuthorizationPolicy;

use super::*;

/// A policy `shop/p` from its `spec` in YAML (flow style).
fn policy(spec: &str) -> PolicySet {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: p, namespace: shop}}\nspec: {spec}"
    );
    let parsed: AuthorizationPolicy = weft_api::yaml::from_str(&yaml).unwrap();
    let compiled = CompiledPolicy::from_api(&parsed, "istio-system").unwrap();
    PolicySet::new([Arc::new(compiled)], vec![])
}

/// The same policy as a waypoint receives it: converted, encoded, decoded, compiled.
fn policy_over_the_wire(spec: &str) -> PolicySet {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: p, namespace: shop}}\nspec: {spec}"
    );
    let parsed: AuthorizationPolicy = weft_api::yaml::from_str(&yaml).unwrap();
    let bytes = prost::Message::encode_to_vec(&wire::from_api(&parsed, "istio-system").unwrap());
    let decoded: Authorization = prost::Message::decode(bytes.as_slice()).unwrap();
    let compiled = CompiledPolicy::compile(Some("shop/p"), &decoded).unwrap();
    PolicySet::new([Arc::new(compiled)], vec![])
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "alice".parse().unwrap());
    headers
}

/// `GET http://Shop.example.com:8080/api/items?x=1` from 203.0.113.9 with JWT `iss/alice`.
fn get<'a>(headers: &'a HeaderMap) -> RequestFacts<'a> {
    RequestFacts {
        method: "GET",
        host: "Shop.example.com:8080",
        path: "/api/items?x=1",
        headers,
        request_principal: Some("iss/alice"),
        remote_ip: "203.0.113.9".parse().unwrap(),
    }
}

const ALLOW: &str = "action: ALLOW";
const DENY: &str = "action: DENY";

/// (case, action, rule, verdict with the request, verdict at L4 without it)
#[allow(clippy::too_many_lines)]
fn cases() -> Vec<(&'static str, &'static str, &'static str, Verdict, Verdict)> {
    use Verdict::{Allow as A, Deny as D};
    vec![
        (
            "method",
            ALLOW,
            "{to: [{operation: {methods: [GET]}}]}",
            A,
            D,
        ),
        (
            "other method",
            ALLOW,
            "{to: [{operation: {methods: [POST]}}]}",
            D,
            D,
        ),
        (
            "notMethods",
            ALLOW,
            "{to: [{operation: {notMethods: [POST]}}]}",
            A,
            D,
        ),
        (
            "exact path ignores query",
            ALLOW,
            "{to: [{operation: {paths: [/api/items]}}]}",
            A,
            D,
        ),
        (
            "prefix path",
            ALLOW,
            "{to: [{operation: {paths: [/api/*]}}]}",
            A,
            D,
        ),
        (
            "suffix path",
            ALLOW,
            "{to: [{operation: {paths: ['*/items']}}]}",
            A,
            D,
        ),
        (
            "any path",
            ALLOW,
            "{to: [{operation: {paths: ['*']}}]}",
            A,
            D,
        ),
        (
            "other path",
            ALLOW,
            "{to: [{operation: {paths: [/admin]}}]}",
            D,
            D,
        ),
        (
            "host ignores case and port",
            ALLOW,
            "{to: [{operation: {hosts: [shop.example.com]}}]}",
            A,
            D,
        ),
        (
            "host suffix",
            ALLOW,
            "{to: [{operation: {hosts: ['*.EXAMPLE.com']}}]}",
            A,
            D,
        ),
        (
            "notHosts",
            ALLOW,
            "{to: [{operation: {notHosts: [shop.example.com]}}]}",
            D,
            D,
        ),
        (
            "header exact",
            ALLOW,
            "{when: [{key: 'request.headers[X-User]', values: [alice]}]}",
            A,
            D,
        ),
        (
            "header prefix",
            ALLOW,
            "{when: [{key: 'request.headers[x-user]', values: [al*]}]}",
            A,
            D,
        ),
        (
            "header presence",
            ALLOW,
            "{when: [{key: 'request.headers[x-user]', values: ['*']}]}",
            A,
            D,
        ),
        (
            "absent header",
            ALLOW,
            "{when: [{key: 'request.headers[x-other]', values: ['*']}]}",
            D,
            D,
        ),
        (
            "header notValues",
            ALLOW,
            "{when: [{key: 'request.headers[x-user]', notValues: [bob]}]}",
            A,
            D,
        ),
        (
            "remoteIpBlocks",
            ALLOW,
            "{from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]}",
            A,
            D,
        ),
        (
            "remote.ip",
            ALLOW,
            "{when: [{key: remote.ip, values: [203.0.113.9]}]}",
            A,
            D,
        ),
        (
            "other remote ip",
            ALLOW,
            "{from: [{source: {remoteIpBlocks: [198.51.100.0/24]}}]}",
            D,
            D,
        ),
        (
            "requestPrincipals",
            ALLOW,
            "{from: [{source: {requestPrincipals: [iss/*]}}]}",
            A,
            D,
        ),
        (
            "request.auth.principal",
            ALLOW,
            "{when: [{key: request.auth.principal, values: [iss/alice]}]}",
            A,
            D,
        ),
        (
            "notRequestPrincipals",
            ALLOW,
            "{from: [{source: {notRequestPrincipals: ['*']}}]}",
            D,
            D,
        ),
        (
            "claims: no facts, ALLOW matches nothing",
            ALLOW,
            "{when: [{key: 'request.auth.claims[group]', values: [x]}]}",
            D,
            D,
        ),
        (
            "L4 and L7 together",
            ALLOW,
            "{to: [{operation: {ports: ['8080'], methods: [GET]}}]}",
            A,
            D,
        ),
        (
            "L7 with a failing L4 part",
            ALLOW,
            "{to: [{operation: {ports: ['9090'], methods: [GET]}}]}",
            D,
            D,
        ),
        (
            "DENY method",
            DENY,
            "{to: [{operation: {methods: [GET]}}]}",
            D,
            D,
        ),
        (
            "DENY other method: L4 widens",
            DENY,
            "{to: [{operation: {methods: [POST]}}]}",
            A,
            D,
        ),
        (
            "DENY path",
            DENY,
            "{to: [{operation: {paths: [/api/*]}}]}",
            D,
            D,
        ),
        (
            "DENY notPaths",
            DENY,
            "{to: [{operation: {notPaths: [/api/*]}}]}",
            A,
            D,
        ),
        (
            "DENY header",
            DENY,
            "{when: [{key: 'request.headers[x-user]', values: [bob]}]}",
            A,
            D,
        ),
        (
            "DENY remoteIpBlocks",
            DENY,
            "{from: [{source: {remoteIpBlocks: [198.51.100.0/24]}}]}",
            A,
            D,
        ),
        (
            "DENY requestPrincipals",
            DENY,
            "{from: [{source: {requestPrincipals: [iss/alice]}}]}",
            D,
            D,
        ),
        (
            "DENY claims: no facts, no condition",
            DENY,
            "{when: [{key: 'request.auth.claims[g]', values: [x]}]}",
            D,
            D,
        ),
        (
            "DENY L7 on another port",
            DENY,
            "{to: [{operation: {ports: ['9090'], methods: [GET]}}]}",
            A,
            A,
        ),
    ]
}

#[test]
fn l7_table() {
    let headers = headers();
    let request = get(&headers);
    let facts = mtls(WEB, "10.0.0.5", "10.0.1.2:8080");
    for (case, action, rule, with_request, at_l4) in cases() {
        let set = policy(&format!("{{{action}, rules: [{rule}]}}"));
        let decision = set.evaluate_with(&facts, Some(&request));
        assert_eq!(
            decision.outcome.verdict, with_request,
            "{case}: with request"
        );
        assert_eq!(set.evaluate(&facts).outcome.verdict, at_l4, "{case}: at L4");
        let wire = policy_over_the_wire(&format!("{{{action}, rules: [{rule}]}}"));
        let decision = wire.evaluate_with(&facts, Some(&request));
        assert_eq!(
            decision.outcome.verdict, with_request,
            "{case}: over the wire"
        );
        assert_eq!(
            wire.evaluate(&facts).outcome.verdict,
            at_l4,
            "{case}: wire at L4"
        );
    }
}

#[test]
fn l4_fields_compile_from_the_user_policy_as_translation_does() {
    let set = policy(
        "{rules: [{from: [{source: {principals: ['cluster.local/ns/shop/sa/web'], \
         serviceAccounts: [web], ipBlocks: [10.0.0.0/24]}}], to: [{operation: {ports: ['8080']}}], \
         when: [{key: destination.ip, values: [10.0.1.2]}]}]}",
    );
    let decision = set.evaluate(&mtls(WEB, "10.0.0.5", "10.0.1.2:8080"));
    assert_eq!(decision.outcome.reason, Reason::AllowMatched);
    let decision = set.evaluate(&mtls(ADMIN, "10.0.0.5", "10.0.1.2:8080"));
    assert_eq!(decision.outcome.reason, Reason::NoAllowMatched);
}

#[test]
fn a_principal_written_with_the_spiffe_scheme_never_matches_as_in_istio() {
    // Istio compares principals without the scheme (ztunnel strips it from the peer's
    // identity; Envoy prepends it to the pattern), so `spiffe://...` matches no peer.
    let allow = policy(
        "{rules: [{from: [{source: {principals: ['spiffe://cluster.local/ns/shop/sa/web']}}]}]}",
    );
    let decision = allow.evaluate(&mtls(WEB, "10.0.0.5", "10.0.1.2:8080"));
    assert_eq!(decision.outcome.reason, Reason::NoAllowMatched);
    let deny = policy(
        "{action: DENY, rules: [{when: [{key: source.principal, values: ['spiffe://cluster.local/ns/shop/sa/web']}]}]}",
    );
    let decision = deny.evaluate(&mtls(WEB, "10.0.0.5", "10.0.1.2:8080"));
    assert_eq!(decision.outcome.verdict, Verdict::Allow);
}

#[test]
fn unparsable_values_name_the_field() {
    for (rule, field) in [
        (
            "{to: [{operation: {ports: [http]}}]}",
            "spec.rules[0].to[0].operation.ports",
        ),
        (
            "{to: [{operation: {notPorts: ['0']}}]}",
            "spec.rules[0].to[0].operation.notPorts",
        ),
        (
            "{from: [{source: {serviceAccounts: [shop/]}}]}",
            "spec.rules[0].from[0].source.serviceAccounts",
        ),
        (
            "{from: [{source: {notServiceAccounts: [/web]}}]}",
            "spec.rules[0].from[0].source.notServiceAccounts",
        ),
    ] {
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
             metadata: {{name: p, namespace: shop}}\nspec: {{rules: [{rule}]}}"
        );
        let parsed: AuthorizationPolicy = weft_api::yaml::from_str(&yaml).unwrap();
        let err = CompiledPolicy::from_api(&parsed, "istio-system").unwrap_err();
        assert_eq!(err.field, field, "{rule}");
    }
}

#[test]
fn evaluated_keys_are_the_ones_with_facts() {
    for key in [
        "source.ip",
        "remote.ip",
        "request.auth.principal",
        "request.headers[x-a]",
    ] {
        assert!(wire::is_evaluated_key(key), "{key}");
    }
    for key in [
        "request.auth.claims[group]",
        "connection.sni",
        "experimental.x",
    ] {
        assert!(!wire::is_evaluated_key(key), "{key}");
    }
}

/// `x-debug` with the given raw values, on the request of [`get`].
fn debug_headers(values: &[&[u8]]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append("x-debug", http::HeaderValue::from_bytes(value).unwrap());
    }
    headers
}

#[test]
fn header_values_with_obs_text_bytes_are_matched_not_taken_as_absent() {
    let facts = mtls(WEB, "10.0.0.5", "10.0.1.2:8080");
    let present = policy(
        "{action: DENY, rules: [{when: [{key: 'request.headers[x-debug]', values: ['*']}]}]}",
    );
    let exact = policy(
        "{action: DENY, rules: [{when: [{key: 'request.headers[x-debug]', values: ['é,1']}]}]}",
    );
    let not_values =
        policy("{rules: [{when: [{key: 'request.headers[x-debug]', notValues: [safe]}]}]}");
    for value in [&b"\xc3\xa9"[..], b"\xff", b"a\x80b"] {
        let headers = debug_headers(&[value]);
        let verdict = present
            .evaluate_with(&facts, Some(&get(&headers)))
            .outcome
            .verdict;
        assert_eq!(verdict, Verdict::Deny, "presence DENY with {value:?}");
        let verdict = not_values
            .evaluate_with(&facts, Some(&get(&headers)))
            .outcome
            .verdict;
        assert_eq!(verdict, Verdict::Allow, "notValues ALLOW with {value:?}");
    }
    let headers = debug_headers(&["é".as_bytes(), b"1"]);
    let verdict = exact
        .evaluate_with(&facts, Some(&get(&headers)))
        .outcome
        .verdict;
    assert_eq!(verdict, Verdict::Deny, "several values are joined by ','");
    let headers = HeaderMap::new();
    let verdict = present
        .evaluate_with(&facts, Some(&get(&headers)))
        .outcome
        .verdict;
    assert_eq!(verdict, Verdict::Allow, "an absent header has no value");
}

#[test]
fn a_trailing_dot_or_an_empty_port_does_not_escape_a_host_rule() {
    let facts = mtls(WEB, "10.0.0.5", "10.0.1.2:8080");
    let deny = policy("{action: DENY, rules: [{to: [{operation: {hosts: [shop.example.com]}}]}]}");
    let deny_port =
        policy("{action: DENY, rules: [{to: [{operation: {hosts: ['shop.example.com:8080']}}]}]}");
    let headers = HeaderMap::new();
    for host in [
        "shop.example.com.",
        "Shop.Example.com:",
        "shop.example.com.:8080",
        "shop.example.com.:",
    ] {
        let request = RequestFacts {
            host,
            ..get(&headers)
        };
        let verdict = deny.evaluate_with(&facts, Some(&request)).outcome.verdict;
        assert_eq!(verdict, Verdict::Deny, "{host}");
    }
    for host in ["shop.example.com.:8080", "SHOP.example.com:8080"] {
        let request = RequestFacts {
            host,
            ..get(&headers)
        };
        let verdict = deny_port
            .evaluate_with(&facts, Some(&request))
            .outcome
            .verdict;
        assert_eq!(verdict, Verdict::Deny, "{host} with a port pattern");
    }
    let request = RequestFacts {
        host: "shop.example.com.evil",
        ..get(&headers)
    };
    let verdict = deny.evaluate_with(&facts, Some(&request)).outcome.verdict;
    assert_eq!(verdict, Verdict::Allow, "another host");
}
