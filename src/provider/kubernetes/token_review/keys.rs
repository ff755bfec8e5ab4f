//! The service-account issuer's public keys, read from the API server's OIDC discovery
//! (`/.well-known/openid-configuration`, then `/openid/v1/jwks`), so that a token's signature
//! and issuer are checked here before a TokenReview is spent on it: a forged token costs the
//! controller one signature check and the API server nothing.
//!
//! The keys are fetched at the first token, and again when a token names a key id they do not
//! have (the issuer rotated its keys), at most once per [`REFETCH_AFTER`], so that tokens
//! naming made-up key ids cannot make the controller fetch per token. Tokens are RS256 or
//! ES256, as the API server signs them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde::Deserialize;
use tokio::time::Instant;

/// How soon the keys may be fetched again for a key id they do not have.
pub const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// How long one fetch of the discovery document or the keys may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a token's signature could not be checked, or did not hold.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The token is not a signed JWT of a kind the issuer makes, or its signature is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The issuer's keys could not be read from the API server.
    #[error("cannot read the service-account issuer's keys: {0}")]
    Unavailable(String),
}

/// The issuer's keys, by key id, kept between tokens.
pub struct IssuerKeys {
    client: kube::Client,
    known: RwLock<Arc<Known>>,
    /// Held while a fetch runs, so that concurrent tokens share one; the time of the last.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Known {
    issuer: String,
    keys: HashMap<String, PublicKey>,
}

enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed P-256 point.
    P256(Vec<u8>),
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: String,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
    #[serde(default)]
    x: String,
    #[serde(default)]
    y: String,
}

impl IssuerKeys {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            known: RwLock::default(),
            fetching: tokio::sync::Mutex::new(None),
        }
    }

    /// Checks `token`'s signature against the issuer's key it names, and its `iss` claim.
    pub async fn verify(&self, token: &str, issuer_claim: Option<&str>) -> Result<(), KeyError> {
        let invalid = |why: &str| KeyError::Invalid(why.to_string());
        // `header.payload` is what was signed.
        let (signed, signature) = token
            .rsplit_once('.')
            .filter(|(signed, _)| signed.matches('.').count() == 1)
            .ok_or_else(|| invalid("the bearer token is not a signed JWT"))?;
        let header = signed.split('.').next().unwrap_or_default();
        let header: Header = decode(header)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| invalid("the token's header is not JSON"))?;
        let signature = decode(signature).ok_or_else(|| invalid("the signature is not base64"))?;
        let known = self.known_for(&header.kid).await?;
        let key = known.keys.get(&header.kid).ok_or_else(|| {
            invalid("the token is signed with a key the service-account issuer does not publish")
        })?;
        if issuer_claim != Some(known.issuer.as_str()) {
            return Err(invalid(
                "the token is not from this cluster's service-account issuer",
            ));
        }
        let verified = match (header.alg.as_str(), key) {
            ("RS256", PublicKey::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
                .is_ok(),
            ("ES256", PublicKey::P256(point)) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed.as_bytes(), &signature)
                    .is_ok()
            }
            _ => false,
        };
        match verified {
            true => Ok(()),
            false => Err(invalid("the token's signature does not verify")),
        }
    }

    /// The keys, fetched first when none are known or `kid` is not among them (and the last
    /// fetch is old enough).
    async fn known_for(&self, kid: &str) -> Result<Arc<Known>, KeyError> {
        let current = self.current();
        if current.keys.contains_key(kid) {
            return Ok(current);
        }
        let mut last = self.fetching.lock().await;
        // Another token's fetch may have brought it meanwhile.
        let current = self.current();
        let due = last.is_none_or(|last| last.elapsed() >= REFETCH_AFTER);
        if current.keys.contains_key(kid) {
            return Ok(current);
        }
        if !due {
            return match current.keys.is_empty() {
                true => Err(KeyError::Unavailable("the last read failed".to_string())),
                false => Ok(current),
            };
        }
        *last = Some(Instant::now());
        let fetched = Arc::new(self.fetch().await?);
        tracing::info!(issuer = %fetched.issuer, keys = fetched.keys.len(), "read the service-account issuer's keys");
        *self
            .known
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&fetched);
        Ok(fetched)
    }

    fn current(&self) -> Arc<Known> {
        Arc::clone(
            &self
                .known
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    async fn fetch(&self) -> Result<Known, KeyError> {
        let discovery: Discovery = self.get("/.well-known/openid-configuration").await?;
        let jwks: Jwks = self.get("/openid/v1/jwks").await?;
        let keys = jwks.keys.into_iter().filter_map(public_key).collect();
        Ok(Known {
            issuer: discovery.issuer,
            keys,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, KeyError> {
        let unavailable = |why: String| KeyError::Unavailable(format!("{path}: {why}"));
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|error| unavailable(error.to_string()))?;
        let text = tokio::time::timeout(FETCH_TIMEOUT, self.client.request_text(request))
            .await
            .map_err(|_| unavailable(format!("no answer within {FETCH_TIMEOUT:?}")))?
            .map_err(|error| unavailable(error.to_string()))?;
        serde_json::from_str(&text).map_err(|error| unavailable(error.to_string()))
    }
}

/// A JWK as a key this module can check signatures with; `None` for other kinds.
fn public_key(jwk: Jwk) -> Option<(String, PublicKey)> {
    let key = match (jwk.kty.as_str(), jwk.crv.as_str()) {
        ("RSA", _) => PublicKey::Rsa {
            n: decode(&jwk.n)?,
            e: decode(&jwk.e)?,
        },
        ("EC", "P-256") => {
            let mut point = vec![0x04];
            point.extend(decode(&jwk.x)?);
            point.extend(decode(&jwk.y)?);
            PublicKey::P256(point)
        }
        _ => return None,
    };
    Some((jwk.kid, key))
}

/// A JWT part or JWK field, base64url with or without padding.
pub(super) fn decode(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}
