//! `weft_l7::jwt` against tokens signed here with keys generated here (aws-lc-rs), one
//! behaviour per test: algorithms, claims checks, token locations, rule scoping, config
//! errors and algorithm confusion.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use http::HeaderMap;
use serde_json::{Value, json};
use weft_l7::jwt::{JwtOutcome, JwtValidator};
use weft_proto::l7::{JwtHeader, JwtRule};
use weft_testkit::jwt::{RsaSigner, b64url as b64, token, unix_now as now};

const ISS: &str = "https://issuer.example";

/// Two RSA keys (`kid` k0 and k1) shared by the tests: generation is the slow part.
fn rsa_keys() -> &'static [RsaSigner; 2] {
    static KEYS: OnceLock<[RsaSigner; 2]> = OnceLock::new();
    KEYS.get_or_init(|| [RsaSigner::generate("k0"), RsaSigner::generate("k1")])
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": ["shop", "other"], "exp": now() + 600, "nbf": now() - 10, "group": "admins"})
}

fn rule(jwks: Value) -> JwtRule {
    JwtRule {
        issuer: ISS.to_owned(),
        jwks: jwks.to_string(),
        source: "shop/jwt".to_owned(),
        ..Default::default()
    }
}

fn rsa_rule() -> JwtRule {
    rule(json!({"keys": [rsa_keys()[0].jwk()]}))
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers
}

fn check(rules: &[JwtRule], headers: &HeaderMap, query: Option<&str>) -> JwtOutcome {
    JwtValidator::new(rules).unwrap().validate(
        "shop/catalog.shop.svc.cluster.local",
        headers,
        query,
    )
}

fn principal(outcome: &JwtOutcome) -> &str {
    match outcome {
        JwtOutcome::Valid { principal, .. } => principal,
        other => panic!("expected a valid token, got {other:?}"),
    }
}

fn invalid_reason(outcome: JwtOutcome) -> String {
    match outcome {
        JwtOutcome::Invalid(reason) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[test]
fn rs256_bearer_token_is_valid_with_principal_claims_and_header_to_strip() {
    let outcome = check(
        &[rsa_rule()],
        &bearer(&rsa_keys()[0].rs256(&claims())),
        None,
    );
    let JwtOutcome::Valid {
        principal,
        claims,
        strip_header,
    } = outcome
    else {
        panic!("expected valid: {outcome:?}");
    };
    assert_eq!(principal, format!("{ISS}/alice"));
    assert_eq!(claims["group"], "admins");
    assert_eq!(strip_header, Some(http::header::AUTHORIZATION));
}

#[test]
fn forward_original_token_keeps_the_header() {
    let rule = JwtRule {
        forward_original_token: true,
        ..rsa_rule()
    };
    let outcome = check(&[rule], &bearer(&rsa_keys()[0].rs256(&claims())), None);
    assert!(
        matches!(
            outcome,
            JwtOutcome::Valid {
                strip_header: None,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[test]
fn missing_token_or_other_scheme_is_no_token() {
    assert_eq!(
        check(&[rsa_rule()], &HeaderMap::new(), None),
        JwtOutcome::NoToken
    );
    let mut basic = HeaderMap::new();
    basic.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(
        check(&[rsa_rule()], &basic, Some("q=1")),
        JwtOutcome::NoToken
    );
}

#[test]
fn expired_token_is_invalid_but_skew_within_leeway_passes() {
    let expired = json!({"iss": ISS, "sub": "alice", "exp": now() - 3600});
    let reason = invalid_reason(check(
        &[rsa_rule()],
        &bearer(&rsa_keys()[0].rs256(&expired)),
        None,
    ));
    assert!(reason.contains("expired"), "{reason}");
    let just = json!({"iss": ISS, "sub": "alice", "exp": now() - 5});
    principal(&check(
        &[rsa_rule()],
        &bearer(&rsa_keys()[0].rs256(&just)),
        None,
    ));
}

#[test]
fn token_not_yet_valid_is_invalid() {
    let early = json!({"iss": ISS, "sub": "alice", "nbf": now() + 3600});
    let reason = invalid_reason(check(
        &[rsa_rule()],
        &bearer(&rsa_keys()[0].rs256(&early)),
        None,
    ));
    assert!(reason.contains("not yet valid"), "{reason}");
}

#[test]
fn unknown_issuer_is_invalid() {
    let other = json!({"iss": "https://elsewhere", "sub": "alice", "exp": now() + 60});
    let reason = invalid_reason(check(
        &[rsa_rule()],
        &bearer(&rsa_keys()[0].rs256(&other)),
        None,
    ));
    assert!(reason.contains("not configured"), "{reason}");
}

#[test]
fn audiences_must_intersect_when_set() {
    let rule = |auds: &[&str]| JwtRule {
        audiences: auds.iter().map(|a| (*a).to_owned()).collect(),
        ..rsa_rule()
    };
    let token = rsa_keys()[0].rs256(&claims());
    principal(&check(&[rule(&["nope", "shop"])], &bearer(&token), None));
    let reason = invalid_reason(check(&[rule(&["billing"])], &bearer(&token), None));
    assert!(reason.contains("Audiences"), "{reason}");
    let no_aud = rsa_keys()[0].rs256(&json!({"iss": ISS, "sub": "a", "exp": now() + 60}));
    invalid_reason(check(&[rule(&["shop"])], &bearer(&no_aud), None));
}

#[test]
fn signature_of_another_key_is_invalid() {
    let forged = rsa_keys()[1].rs256_as("k0", &claims());
    let reason = invalid_reason(check(&[rsa_rule()], &bearer(&forged), None));
    assert!(reason.contains("verification fails"), "{reason}");
    let mut tampered = rsa_keys()[0].rs256(&claims());
    let payload = b64(json!({"iss": ISS, "sub": "mallory", "exp": now() + 60})
        .to_string()
        .as_bytes());
    let parts: Vec<&str> = tampered.split('.').collect();
    tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    invalid_reason(check(&[rsa_rule()], &bearer(&tampered), None));
}

#[test]
fn kid_selects_the_key_among_several() {
    let jwks = json!({"keys": [rsa_keys()[1].jwk(), rsa_keys()[0].jwk()]});
    principal(&check(
        &[rule(jwks.clone())],
        &bearer(&rsa_keys()[0].rs256(&claims())),
        None,
    ));
    let unknown_kid = rsa_keys()[0].rs256_as("k9", &claims());
    let reason = invalid_reason(check(&[rule(jwks)], &bearer(&unknown_kid), None));
    assert!(reason.contains("kid"), "{reason}");
}

#[test]
fn hs256_token_against_rsa_jwks_is_rejected() {
    // The classic confusion: the attacker MACs with the server's public key as the secret.
    let n = PublicKeyComponents::<Vec<u8>>::from(rsa_keys()[0].key().public_key()).n;
    let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &n);
    let forged = token(&json!({"alg": "HS256", "kid": "k0"}), &claims(), |m| {
        aws_lc_rs::hmac::sign(&mac_key, m).as_ref().to_vec()
    });
    invalid_reason(check(&[rsa_rule()], &bearer(&forged), None));
    let unsigned = token(&json!({"alg": "none"}), &claims(), |_| Vec::new());
    invalid_reason(check(&[rsa_rule()], &bearer(&unsigned), None));
}

#[test]
fn es256_ps256_and_eddsa_tokens_verify() {
    let rng = SystemRandom::new();
    let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = ec.public_key().as_ref();
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..])});
    let ed = Ed25519KeyPair::generate().unwrap();
    let ed_jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(ed.public_key().as_ref())});
    let jwks = json!({"keys": [ec_jwk, ed_jwk, rsa_keys()[0].jwk()]});
    let es = token(&json!({"alg": "ES256", "kid": "ec"}), &claims(), |m| {
        ec.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    let eddsa = token(&json!({"alg": "EdDSA", "kid": "ed"}), &claims(), |m| {
        ed.sign(m).as_ref().to_vec()
    });
    let ps = token(&json!({"alg": "PS256", "kid": "k0"}), &claims(), |m| {
        rsa_keys()[0].sign(&signature::RSA_PSS_SHA256, m)
    });
    for t in [es, eddsa, ps] {
        principal(&check(&[rule(jwks.clone())], &bearer(&t), None));
    }
}

#[test]
fn custom_header_with_prefix_and_query_param() {
    let rule = JwtRule {
        from_headers: vec![JwtHeader {
            name: "x-jwt-assertion".to_owned(),
            prefix: "Token ".to_owned(),
        }],
        from_params: vec!["jwt".to_owned()],
        ..rsa_rule()
    };
    let token = rsa_keys()[0].rs256(&claims());
    let mut headers = HeaderMap::new();
    headers.insert("x-jwt-assertion", format!("Token {token}").parse().unwrap());
    let outcome = check(std::slice::from_ref(&rule), &headers, None);
    assert!(
        matches!(&outcome, JwtOutcome::Valid { strip_header: Some(h), .. } if h == "x-jwt-assertion"),
        "{outcome:?}"
    );
    principal(&check(
        std::slice::from_ref(&rule),
        &HeaderMap::new(),
        Some(&format!("a=1&jwt={token}")),
    ));
    // The default location is not read by a rule that names its own.
    assert_eq!(
        check(std::slice::from_ref(&rule), &bearer(&token), None),
        JwtOutcome::NoToken
    );
    // A header without the prefix holds no token.
    let mut bare = HeaderMap::new();
    bare.insert("x-jwt-assertion", token.parse().unwrap());
    assert_eq!(check(&[rule], &bare, None), JwtOutcome::NoToken);
}

#[test]
fn default_locations_include_access_token_param() {
    let token = rsa_keys()[0].rs256(&claims());
    principal(&check(
        &[rsa_rule()],
        &HeaderMap::new(),
        Some(&format!("access_token={token}")),
    ));
}

#[test]
fn rules_apply_only_to_their_services() {
    let scoped = JwtRule {
        services: vec!["shop/other.shop.svc.cluster.local".to_owned()],
        ..rsa_rule()
    };
    let garbage = bearer("not-a-jwt");
    assert_eq!(
        check(std::slice::from_ref(&scoped), &garbage, None),
        JwtOutcome::NoToken
    );
    let validator = JwtValidator::new(&[scoped]).unwrap();
    assert!(validator.is_empty_for("shop/catalog.shop.svc.cluster.local"));
    invalid_reason(validator.validate("shop/other.shop.svc.cluster.local", &garbage, None));
}

#[test]
fn jwks_uri_only_rejects_tokens_of_its_issuer() {
    let rule = JwtRule {
        jwks: String::new(),
        jwks_uri: "https://issuer.example/jwks".to_owned(),
        ..rsa_rule()
    };
    let reason = invalid_reason(check(
        &[rule],
        &bearer(&rsa_keys()[0].rs256(&claims())),
        None,
    ));
    assert!(reason.contains("jwksUri"), "{reason}");
}

#[test]
fn broken_rules_are_errors_naming_rule_and_field() {
    let cases = [
        (
            JwtRule {
                jwks: "{".to_owned(),
                ..rsa_rule()
            },
            "jwks: not JSON",
        ),
        (
            rule(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
            "jwks.keys[0]: symmetric",
        ),
        (rule(json!({"keys": [rsa_keys()[0].jwk()], "x": 1})), ""),
        (
            JwtRule {
                issuer: String::new(),
                ..rsa_rule()
            },
            "issuer: must not be empty",
        ),
        (
            JwtRule {
                from_headers: vec![JwtHeader {
                    name: "bad header".to_owned(),
                    prefix: String::new(),
                }],
                ..rsa_rule()
            },
            "fromHeaders[0].name",
        ),
        (
            JwtRule {
                jwks: String::new(),
                ..rsa_rule()
            },
            "one of jwks and jwksUri",
        ),
    ];
    for (rule, expected) in cases {
        let result = JwtValidator::new(std::slice::from_ref(&rule));
        if expected.is_empty() {
            assert!(result.is_ok());
            continue;
        }
        let message = result.unwrap_err().to_string();
        assert!(
            message.starts_with("RequestAuthentication shop/jwt jwtRules[issuer="),
            "{message}"
        );
        assert!(message.contains(expected), "{message} lacks {expected}");
    }
}

#[test]
fn lenient_compile_keeps_good_rules_and_fails_closed_on_broken_ones() {
    let broken = JwtRule {
        issuer: "https://broken".to_owned(),
        jwks: "[]".to_owned(),
        ..rsa_rule()
    };
    let (validator, errors) = JwtValidator::new_lenient(&[broken, rsa_rule()]);
    assert_eq!(errors.len(), 1);
    let service = "shop/catalog.shop.svc.cluster.local";
    let good = rsa_keys()[0].rs256(&claims());
    principal(&validator.validate(service, &bearer(&good), None));
    let to_broken =
        rsa_keys()[0].rs256(&json!({"iss": "https://broken", "sub": "x", "exp": now() + 60}));
    invalid_reason(validator.validate(service, &bearer(&to_broken), None));
}
