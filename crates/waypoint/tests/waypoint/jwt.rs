//! Request authentication through the waypoint: a RequestAuthentication rule (inline JWKS of
//! a key made in the test) and an ALLOW policy on `requestPrincipals`. A valid token reaches
//! the backend without its header, a bad one is answered 401, a missing or foreign one 403.

use serde_json::json;
use weft_proto::l7 as pb;
use weft_proto::security::{Action, Clause, Rule};
use weft_testkit::jwt::{RsaSigner, unix_now};

use crate::harness::{
    Mesh, backend, get, policy, request_match, send, string_match, waypoint_resource,
};

const ISS: &str = "https://issuer.example";

fn token(signer: &RsaSigner, sub: &str, exp: u64) -> String {
    signer.rs256(&json!({"iss": ISS, "sub": sub, "aud": "echo", "exp": exp}))
}

fn resource(signer: &RsaSigner) -> pb::Waypoint {
    let only_alice = policy(
        "only-alice",
        Action::Allow,
        vec![Rule {
            clauses: vec![Clause {
                matches: vec![request_match(pb::RequestMatch {
                    request_principals: vec![string_match(&format!("{ISS}/alice"))],
                    ..Default::default()
                })],
            }],
        }],
        &["echo"],
    );
    pb::Waypoint {
        jwt_rules: vec![pb::JwtRule {
            issuer: ISS.into(),
            audiences: vec!["echo".into()],
            jwks: signer.jwks(),
            source: "ns/jwt".into(),
            ..Default::default()
        }],
        ..waypoint_resource(&[("echo", vec![])], vec![only_alice])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_principal_allows_bad_tokens_get_401_and_missing_ones_403() {
    let signer = RsaSigner::generate("k1");
    let mesh = Mesh::start(vec![backend("echo-a", "echo")], resource(&signer)).await;
    let client = mesh.client().await;
    let mut h1 = client.h1(mesh.net.vip(1)).await;
    let bearer = |t: &str| format!("Bearer {t}");

    let alice = bearer(&token(&signer, "alice", unix_now() + 300));
    let ok = send(&mut h1, get("/", &[("authorization", &alice)])).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        ok.header("x-seen-authorization"),
        "",
        "the token is not forwarded"
    );

    let expired = bearer(&token(&signer, "alice", unix_now() - 3600));
    let forged = bearer(&token(
        &RsaSigner::generate("k1"),
        "alice",
        unix_now() + 300,
    ));
    for bad in [expired, forged, bearer("not.a.jwt")] {
        let answer = send(&mut h1, get("/", &[("authorization", &bad)])).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (401, "Jwt verification fails")
        );
    }

    let bob = bearer(&token(&signer, "bob", unix_now() + 300));
    for headers in [vec![], vec![("authorization", bob.as_str())]] {
        let answer = send(&mut h1, get("/", &headers)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (403, "RBAC: access denied")
        );
    }
}
