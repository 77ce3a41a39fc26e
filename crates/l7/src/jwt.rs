//! Request authentication: a request's JWT checked against the waypoint's
//! `RequestAuthentication` rules (`weft_proto::l7::JwtRule`).
//!
//! [`JwtValidator::new`] compiles the rules once (each rule's inline JWKS parsed into
//! verification keys, its token locations into header names); [`JwtValidator::validate`]
//! then reads the tokens of one request and answers a [`JwtOutcome`]:
//!
//! - [`JwtOutcome::NoToken`]: no token in any location the rules read. The request goes on
//!   with no request principal (a policy that requires `requestPrincipals` denies it).
//! - [`JwtOutcome::Valid`]: every token found verified; the principal is `<iss>/<sub>`.
//! - [`JwtOutcome::Invalid`]: a token was found and failed (unknown issuer, no matching key,
//!   bad signature, expired, not yet valid, audience not allowed). The waypoint answers
//!   [`REJECTION_STATUS`] with [`REJECTION_BODY`].
//!
//! Security choices: the algorithm a token names must be one its verification key is made
//! for (an RSA key never verifies an `HS256` token), symmetric (`oct`) keys are refused at
//! compile time, and a rule that names only a `jwksUri` (not fetched: this module does no
//! I/O) rejects every token of its issuer.

use http::{HeaderMap, HeaderName};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use weft_proto::l7::JwtRule;

/// HTTP status of a request whose token failed.
pub const REJECTION_STATUS: u16 = 401;
/// Body of a request whose token failed (Istio's text).
pub const REJECTION_BODY: &str = "Jwt verification fails";
/// Allowed clock skew on `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// The query parameter read by a rule that names no location.
pub const DEFAULT_PARAM: &str = "access_token";

/// The answer for one request.
#[derive(Clone, Debug, PartialEq)]
pub enum JwtOutcome {
    /// No token in any location: allowed, no request principal.
    NoToken,
    /// The token verified.
    Valid {
        /// `<iss>/<sub>`, matched by `requestPrincipals`.
        principal: String,
        /// The token's claims (for `request.auth.claims[...]`).
        claims: Map<String, Value>,
        /// The header that carried the token, to remove before forwarding upstream when
        /// its rule does not set `forwardOriginalToken` (None: keep everything).
        strip_header: Option<HeaderName>,
    },
    /// A token was present and failed, with the reason (for logs, not for the client).
    Invalid(String),
}

/// A rule that cannot be compiled: which rule, which field, why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("RequestAuthentication {source_name} jwtRules[issuer={issuer:?}].{field}: {reason}")]
pub struct JwtConfigError {
    /// `<namespace>/<name>` of the RequestAuthentication (`JwtRule.source`).
    pub source_name: String,
    pub issuer: String,
    pub field: String,
    pub reason: String,
}

/// Where a rule reads its token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenLocation {
    /// A header whose value is `<prefix><token>` (the prefix compared ignoring ASCII case).
    Header { name: HeaderName, prefix: String },
    /// A query parameter.
    Param(String),
}

/// One verification key of a rule's JWKS.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// A compiled `JwtRule`.
struct Rule {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<Key>,
    locations: Vec<TokenLocation>,
    services: Vec<String>,
    forward: bool,
}

/// The compiled `RequestAuthentication` rules of a waypoint.
#[derive(Default)]
pub struct JwtValidator {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self.rules.iter().map(|r| r.issuer.as_str()).collect();
        f.debug_struct("JwtValidator")
            .field("issuers", &issuers)
            .finish()
    }
}

impl JwtValidator {
    /// Compiles every rule; the first rule that cannot be compiled is the error.
    pub fn new(rules: &[JwtRule]) -> Result<Self, JwtConfigError> {
        let rules = rules.iter().map(compile_rule).collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// Compiles what it can: a broken rule is kept with no keys (every token of its issuer
    /// is then rejected, fail closed) and its error returned beside the validator.
    pub fn new_lenient(rules: &[JwtRule]) -> (Self, Vec<JwtConfigError>) {
        let mut errors = Vec::new();
        let rules = rules
            .iter()
            .map(|rule| {
                compile_rule(rule).unwrap_or_else(|e| {
                    errors.push(e);
                    Rule {
                        keys: Vec::new(),
                        ..bare_rule(rule)
                    }
                })
            })
            .collect();
        (Self { rules }, errors)
    }

    /// True when no rule applies to `service` (a service key `<ns>/<hostname>`).
    pub fn is_empty_for(&self, service: &str) -> bool {
        self.rules_for(service).next().is_none()
    }

    /// Checks the tokens of a request to `service` (a service key; rules with no services
    /// apply to every request). `query` is the raw query string, without `?`.
    pub fn validate(&self, service: &str, headers: &HeaderMap, query: Option<&str>) -> JwtOutcome {
        let mut locations: Vec<&TokenLocation> = Vec::new();
        for location in self.rules_for(service).flat_map(|r| &r.locations) {
            if !locations.contains(&location) {
                locations.push(location);
            }
        }
        let mut outcome = JwtOutcome::NoToken;
        for location in locations {
            let Some(token) = read_token(location, headers, query) else {
                continue;
            };
            match self.verify(service, location, token) {
                Ok(valid) if outcome == JwtOutcome::NoToken => outcome = valid,
                Ok(_) => {}
                Err(reason) => return JwtOutcome::Invalid(reason),
            }
        }
        outcome
    }

    fn rules_for<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.services.is_empty() || r.services.iter().any(|s| s == service))
    }

    /// Verifies one token found at `location` against the rules for its issuer.
    fn verify(
        &self,
        service: &str,
        location: &TokenLocation,
        token: &str,
    ) -> Result<JwtOutcome, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("Jwt is not in the form of Header.Payload.Signature: {e}"))?;
        let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode(token)
            .map_err(|e| format!("Jwt payload is not a JSON object: {e}"))?
            .claims;
        let issuer = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or("Jwt has no iss claim")?;
        let mut rules = self
            .rules_for(service)
            .filter(|r| r.issuer == issuer && r.locations.contains(location))
            .peekable();
        if rules.peek().is_none() {
            return Err(format!("Jwt issuer {issuer:?} is not configured"));
        }
        let mut last = String::new();
        for rule in rules {
            match rule.verify(&header, token) {
                Ok(claims) => return Ok(valid_outcome(rule, location, claims)),
                Err(reason) => last = reason,
            }
        }
        Err(last)
    }
}

impl Rule {
    /// Verifies `token` with this rule's keys and claims checks.
    fn verify(
        &self,
        header: &jsonwebtoken::Header,
        token: &str,
    ) -> Result<Map<String, Value>, String> {
        if self.keys.is_empty() {
            return Err(format!(
                "issuer {:?} has no inline JWKS (jwksUri is not fetched)",
                self.issuer
            ));
        }
        let candidates = self.keys.iter().filter(|k| {
            k.algorithms.contains(&header.alg)
                && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
        });
        let mut reason = "Jwks doesn't have key to match kid or alg from Jwt".to_owned();
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(
                token,
                &key.key,
                &self.validation(header.alg),
            ) {
                Ok(data) => return Ok(data.claims),
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => {
                    reason = "Jwt verification fails: signature mismatch".to_owned();
                }
                Err(e) => return Err(claim_error(e.kind())),
            }
        }
        Err(reason)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = CLOCK_SKEW_SECS;
        v.required_spec_claims.clear();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
            v.required_spec_claims.insert("aud".to_owned());
        }
        v
    }
}

fn valid_outcome(rule: &Rule, location: &TokenLocation, claims: Map<String, Value>) -> JwtOutcome {
    let claim = |name| claims.get(name).and_then(Value::as_str).unwrap_or_default();
    let principal = format!("{}/{}", claim("iss"), claim("sub"));
    let strip_header = match location {
        TokenLocation::Header { name, .. } if !rule.forward => Some(name.clone()),
        _ => None,
    };
    JwtOutcome::Valid {
        principal,
        claims,
        strip_header,
    }
}

/// The reason for a token whose signature held but whose claims did not.
fn claim_error(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "Jwt is expired".to_owned(),
        ErrorKind::ImmatureSignature => "Jwt not yet valid".to_owned(),
        ErrorKind::InvalidAudience | ErrorKind::MissingRequiredClaim(_) => {
            "Audiences in Jwt are not allowed".to_owned()
        }
        ErrorKind::InvalidIssuer => "Jwt issuer is not configured".to_owned(),
        other => format!("Jwt verification fails: {other:?}"),
    }
}

/// The token at `location`, if the request has one there.
fn read_token<'a>(
    location: &TokenLocation,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Option<&'a str> {
    match location {
        TokenLocation::Header { name, prefix } => headers.get_all(name).iter().find_map(|value| {
            let value = value.to_str().ok()?.trim();
            let head = value.get(..prefix.len())?;
            head.eq_ignore_ascii_case(prefix)
                .then(|| value[prefix.len()..].trim())
                .filter(|t| !t.is_empty())
        }),
        TokenLocation::Param(param) => query?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == param && !value.is_empty()).then_some(value)
        }),
    }
}

/// A rule's fields that need no parsing.
fn bare_rule(rule: &JwtRule) -> Rule {
    Rule {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        keys: Vec::new(),
        locations: Vec::new(),
        services: rule.services.clone(),
        forward: rule.forward_original_token,
    }
}

fn compile_rule(rule: &JwtRule) -> Result<Rule, JwtConfigError> {
    let error = |field: &str, reason: String| JwtConfigError {
        source_name: rule.source.clone(),
        issuer: rule.issuer.clone(),
        field: field.to_owned(),
        reason,
    };
    if rule.issuer.is_empty() {
        return Err(error("issuer", "must not be empty".to_owned()));
    }
    let keys = if rule.jwks.is_empty() {
        if rule.jwks_uri.is_empty() {
            return Err(error(
                "jwks",
                "one of jwks and jwksUri is required".to_owned(),
            ));
        }
        Vec::new()
    } else {
        parse_jwks(&rule.jwks).map_err(|(field, reason)| error(&field, reason))?
    };
    Ok(Rule {
        keys,
        locations: locations(rule).map_err(|(field, reason)| error(&field, reason))?,
        ..bare_rule(rule)
    })
}

/// The rule's token locations; none named means `Authorization: Bearer` and `access_token`.
fn locations(rule: &JwtRule) -> Result<Vec<TokenLocation>, (String, String)> {
    if rule.from_headers.is_empty() && rule.from_params.is_empty() {
        return Ok(vec![
            TokenLocation::Header {
                name: http::header::AUTHORIZATION,
                prefix: "Bearer ".to_owned(),
            },
            TokenLocation::Param(DEFAULT_PARAM.to_owned()),
        ]);
    }
    let mut out = Vec::new();
    for (i, h) in rule.from_headers.iter().enumerate() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
            (
                format!("fromHeaders[{i}].name"),
                format!("{:?} is not a valid header name", h.name),
            )
        })?;
        out.push(TokenLocation::Header {
            name,
            prefix: h.prefix.clone(),
        });
    }
    for (i, p) in rule.from_params.iter().enumerate() {
        if p.is_empty() {
            return Err((format!("fromParams[{i}]"), "must not be empty".to_owned()));
        }
        out.push(TokenLocation::Param(p.clone()));
    }
    Ok(out)
}

/// Parses a JWKS document into verification keys; keys meant for encryption are skipped.
fn parse_jwks(jwks: &str) -> Result<Vec<Key>, (String, String)> {
    let doc: Value =
        serde_json::from_str(jwks).map_err(|e| ("jwks".to_owned(), format!("not JSON: {e}")))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(("jwks".to_owned(), "has no \"keys\" array".to_owned()));
    };
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let field = || format!("jwks.keys[{i}]");
        let jwk: Jwk = serde_json::from_value(entry.clone())
            .map_err(|e| (field(), format!("not a JWK: {e}")))?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        keys.push(key_of(&jwk).map_err(|reason| (field(), reason))?);
    }
    if keys.is_empty() {
        return Err((
            "jwks.keys".to_owned(),
            "holds no signature verification key".to_owned(),
        ));
    }
    Ok(keys)
}

/// One JWK as a verification key with the algorithms it may verify.
fn key_of(jwk: &Jwk) -> Result<Key, String> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            ref other => return Err(format!("curve {other:?} is not supported (P-256, P-384)")),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            return Err(format!("curve {:?} is not supported (Ed25519)", p.curve));
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric keys (kty \"oct\") are not accepted".to_owned());
        }
        _ => return Err("key type is not supported (RSA, EC, OKP)".to_owned()),
    };
    let algorithms = match &jwk.common.key_algorithm {
        None => family,
        Some(named) => {
            let alg = Algorithm::try_from(*named)
                .map_err(|_| format!("alg {named} is not a signature algorithm"))?;
            if !family.contains(&alg) {
                return Err(format!("alg {named} does not fit the key type"));
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    })
}
