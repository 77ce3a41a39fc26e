//! JWT fixtures: RSA keys generated in the test (aws-lc-rs), their JWK / JWKS documents, and
//! compact tokens signed with them or with any signing function a test brings (to forge
//! one, or to use another algorithm).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, KeyPair, RsaEncoding, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Base64url without padding, as JOSE encodes everything.
#[must_use]
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch, for `exp` / `nbf` / `iat`.
///
/// # Panics
/// When the clock is before 1970.
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `<header>.<claims>.<signature>` with the signature `sign` makes over the first two parts.
pub fn token(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = sign(message.as_bytes());
    format!("{message}.{}", b64url(&signature))
}

/// An RSA signing key (2048 bits) and the `kid` its JWK carries.
#[derive(Debug)]
pub struct RsaSigner {
    key: RsaKeyPair,
    kid: String,
}

impl RsaSigner {
    /// A new key.
    ///
    /// # Panics
    /// When key generation fails.
    #[must_use]
    pub fn generate(kid: &str) -> Self {
        Self {
            key: RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"),
            kid: kid.to_owned(),
        }
    }

    /// The key pair (for raw signatures or its public parts).
    #[must_use]
    pub fn key(&self) -> &RsaKeyPair {
        &self.key
    }

    /// The public key as a JWK (`kty RSA`, `use sig`, `kid`).
    #[must_use]
    pub fn jwk(&self) -> Value {
        let parts = PublicKeyComponents::<Vec<u8>>::from(self.key.public_key());
        json!({"kty": "RSA", "kid": self.kid, "use": "sig", "n": b64url(&parts.n), "e": b64url(&parts.e)})
    }

    /// A JWKS document holding only this key.
    #[must_use]
    pub fn jwks(&self) -> String {
        json!({"keys": [self.jwk()]}).to_string()
    }

    /// A raw signature of `message`.
    ///
    /// # Panics
    /// When signing fails.
    #[must_use]
    pub fn sign(&self, encoding: &'static dyn RsaEncoding, message: &[u8]) -> Vec<u8> {
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(encoding, &SystemRandom::new(), message, &mut signature)
            .expect("RSA signature");
        signature
    }

    /// An RS256 token over `claims` whose header names `kid`.
    #[must_use]
    pub fn rs256_as(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
        token(&header, claims, |m| {
            self.sign(&signature::RSA_PKCS1_SHA256, m)
        })
    }

    /// An RS256 token over `claims` naming this key's `kid`.
    #[must_use]
    pub fn rs256(&self, claims: &Value) -> String {
        self.rs256_as(&self.kid, claims)
    }
}
