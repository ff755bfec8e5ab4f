//! ADS streams authenticated by the pod's ServiceAccount token.
//!
//! With `--xds-auth kubernetes`, every stream opens with a projected ServiceAccount token
//! (audience `--xds-audience`) in its `authorization: Bearer …` header. Envoy reads the token
//! file when it opens a stream, so the token the kubelet renews is the one the next stream
//! carries. The controller checks the token's signature against the service-account issuer's
//! public keys (`auth/keys.rs`), then asks the API server who the token belongs to (a
//! TokenReview per new token: answers are kept for up to five minutes and never past the
//! token's expiry, refusals for 30 seconds; a token that is not a JWT for the audience, has
//! expired by its own claims, or is not signed by the issuer is refused without asking), and
//! the stream may speak only for that pod: its node id must be `<pod>.<namespace>`. A stream
//! ends when its token expires, and Envoy opens the next one with the current token.
//!
//! No token, or one the API server does not accept (wrong audience, expired, of a deleted pod):
//! `UNAUTHENTICATED`. A valid token that names no pod, or a node id of another pod:
//! `PERMISSION_DENIED`. The API server unreachable: `UNAVAILABLE` (Envoy retries).

mod keys;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tonic::codegen::http::HeaderMap;

use crate::metrics::{Metrics, ResultLabel};
use crate::xds::auth::{Authenticate, Identity, Refusal};

/// The audience sidecars' xDS tokens are issued for, unless `--xds-audience` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "lattice-xds";

/// How long an accepted token is trusted without asking again (capped by its expiry): a pod
/// deleted meanwhile can reconnect for at most this long.
const TRUSTED_FOR: Duration = Duration::from_secs(300);
/// How long a refused token stays refused without asking again.
const REFUSED_FOR: Duration = Duration::from_secs(30);
/// How long one TokenReview may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers kept at most; beyond it, expired ones are dropped, and new ones are not kept.
const MAX_CACHED: usize = 65_536;
/// TokenReviews asked at once.
const MAX_IN_FLIGHT: usize = 32;
/// TokenReviews asked at once for one client address.
const MAX_IN_FLIGHT_PER_ADDRESS: usize = 4;
/// Bytes of a token worth reviewing; service account tokens are around 1 KB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The token of an `authorization: Bearer …` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let header = headers.get("authorization").ok_or_else(|| {
        Refusal::unauthenticated(
            "no credentials: send the pod's projected service account token as authorization: Bearer <token>",
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            Refusal::unauthenticated("the authorization header is not a bearer token")
        })?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::unauthenticated(format!(
            "the bearer token is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    Ok(token)
}

/// TokenReviews against the API server, with their answers kept for a while.
pub struct TokenReviews {
    client: kube::Client,
    audience: String,
    metrics: Arc<Metrics>,
    keys: keys::IssuerKeys,
    answers: Mutex<HashMap<[u8; 32], Answer>>,
    in_flight: tokio::sync::Semaphore,
    /// TokenReviews under way, by client address.
    per_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl std::fmt::Debug for TokenReviews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviews")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
struct Answer {
    /// The identity, or why the token was refused.
    outcome: Result<Identity, (&'static str, String)>,
    until: Instant,
}

#[tonic::async_trait]
impl Authenticate for TokenReviews {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<Identity>, Refusal> {
        let token = bearer_token(headers)?;
        self.review(token, peer).await.map(Some)
    }
}

impl TokenReviews {
    pub fn new(client: kube::Client, audience: String, metrics: Arc<Metrics>) -> Self {
        Self {
            keys: keys::IssuerKeys::new(client.clone()),
            client,
            audience,
            metrics,
            answers: Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            per_address: Arc::default(),
        }
    }

    /// The pod `token` belongs to; `peer` is the client's address, when known.
    pub async fn review(&self, token: &str, peer: Option<IpAddr>) -> Result<Identity, Refusal> {
        // What the token says of itself is checked first, so that garbage, another audience's
        // tokens and expired ones cost the API server nothing.
        // Checked on every stream, so a cached answer is never used past the token's expiry.
        let (expires, issuer) =
            plausible(token, &self.audience).map_err(Refusal::unauthenticated)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        let known = self.lock().get(&key).filter(|a| a.until > now).cloned();
        let outcome = match known {
            Some(answer) => {
                self.metrics.token_review_cache_hits.inc();
                answer.outcome
            }
            None => {
                // Then its signature, against the issuer's own keys: a forged token is refused
                // here, without a TokenReview.
                self.keys
                    .verify(token, issuer.as_deref())
                    .await
                    .map_err(|error| self.key_refusal(error))?;
                let _turn = self.turn(peer)?;
                let outcome = self.ask(token, expires).await?;
                let until = match &outcome {
                    Ok(identity) => now + trusted_for(identity),
                    Err(_) => now + REFUSED_FOR,
                };
                self.remember(key, outcome.clone(), until);
                outcome
            }
        };
        outcome.map_err(|(reason, message)| match reason {
            "unauthenticated" => Refusal::unauthenticated(message),
            _ => Refusal::permission_denied(reason, message),
        })
    }

    /// One TokenReview of a token that expires at `expires`. `Err` only when the API server
    /// gave no answer.
    async fn ask(
        &self,
        token: &str,
        expires: SystemTime,
    ) -> Result<Result<Identity, (&'static str, String)>, Refusal> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        // A fleet reconnecting at once waits its turn rather than flooding the API server, but
        // not for ever.
        let Ok(Ok(_permit)) = tokio::time::timeout(REVIEW_TIMEOUT, self.in_flight.acquire()).await
        else {
            return Err(self.unanswered(format!(
                "no TokenReview could be asked within {REVIEW_TIMEOUT:?}: {MAX_IN_FLIGHT} are under way"
            )));
        };
        let answered =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review)).await;
        let review = match answered {
            Ok(Ok(review)) => review,
            Ok(Err(error)) => return Err(self.unanswered(error.to_string())),
            Err(_) => return Err(self.unanswered(format!("no answer within {REVIEW_TIMEOUT:?}"))),
        };
        let outcome = identity(&review, &self.audience).map(|mut identity| {
            identity.expires_at = Some(expires);
            identity
        });
        let result = if outcome.is_ok() {
            "authenticated"
        } else {
            "refused"
        };
        self.metrics
            .token_reviews
            .get_or_create(&ResultLabel::new(result))
            .inc();
        Ok(outcome)
    }

    /// A place among the TokenReviews of `peer`'s address, or a refusal when it has
    /// [`MAX_IN_FLIGHT_PER_ADDRESS`] under way.
    fn turn(&self, peer: Option<IpAddr>) -> Result<Option<Turn>, Refusal> {
        let Some(address) = peer else {
            return Ok(None);
        };
        let mut counts = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(address).or_default();
        if *count >= MAX_IN_FLIGHT_PER_ADDRESS {
            return Err(Refusal::unavailable(
                "token_review_busy",
                format!(
                    "{MAX_IN_FLIGHT_PER_ADDRESS} tokens from this address are being checked already; retry"
                ),
            ));
        }
        *count += 1;
        Ok(Some(Turn {
            address,
            counts: Arc::clone(&self.per_address),
        }))
    }

    fn key_refusal(&self, error: keys::KeyError) -> Refusal {
        match error {
            keys::KeyError::Invalid(why) => Refusal::unauthenticated(why),
            keys::KeyError::Unavailable(why) => {
                tracing::warn!(error = %why, "the stream is refused and may retry");
                Refusal::unavailable(
                    "token_keys_unavailable",
                    "cannot check the token now; retry",
                )
            }
        }
    }

    fn unanswered(&self, error: String) -> Refusal {
        self.metrics
            .token_reviews
            .get_or_create(&ResultLabel::new("error"))
            .inc();
        tracing::warn!(%error, "TokenReview failed; the stream is refused and may retry");
        Refusal::unavailable("token_review_failed", "cannot check the token now; retry")
    }

    fn remember(
        &self,
        key: [u8; 32],
        outcome: Result<Identity, (&'static str, String)>,
        until: Instant,
    ) {
        let mut answers = self.lock();
        if answers.len() >= MAX_CACHED {
            let now = Instant::now();
            answers.retain(|_, answer| answer.until > now);
            if answers.len() >= MAX_CACHED {
                // Full of live answers: keep them, and ask again for this token next time.
                return;
            }
        }
        answers.insert(key, Answer { outcome, until });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Answer>> {
        self.answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A TokenReview under way for one client address; its count goes down when it is dropped.
struct Turn {
    address: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// How long an accepted identity is kept: [`TRUSTED_FOR`], or until its token expires.
fn trusted_for(identity: &Identity) -> Duration {
    identity
        .expires_at
        .and_then(|expires| expires.duration_since(SystemTime::now()).ok())
        .map_or(TRUSTED_FOR, |left| left.min(TRUSTED_FOR))
}

/// The pod a reviewed token belongs to, or why it does not prove one.
fn identity(review: &TokenReview, audience: &str) -> Result<Identity, (&'static str, String)> {
    let Some(status) = review
        .status
        .as_ref()
        .filter(|status| status.authenticated == Some(true))
    else {
        let why = review
            .status
            .as_ref()
            .and_then(|s| s.error.clone())
            .filter(|error| !error.is_empty())
            .unwrap_or_else(|| "the token is not valid".to_string());
        return Err((
            "unauthenticated",
            format!("the Kubernetes API did not accept the token: {why}"),
        ));
    };
    if !status
        .audiences
        .as_ref()
        .is_some_and(|audiences| audiences.iter().any(|a| a == audience))
    {
        return Err((
            "unauthenticated",
            format!("the token is not for audience {audience:?}"),
        ));
    }
    let user = status.user.clone().unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let Some((namespace, service_account)) = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    else {
        return Err((
            "not_a_pod",
            format!(
                "{username:?} is not a service account; sidecars authenticate with their pod's token"
            ),
        ));
    };
    let extra = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|extra| extra.get(key))
            .and_then(|values| values.first())
            .cloned()
    };
    let (Some(pod), Some(pod_uid)) = (
        extra("authentication.kubernetes.io/pod-name"),
        extra("authentication.kubernetes.io/pod-uid"),
    ) else {
        return Err((
            "not_a_pod",
            format!(
                "the token of service account {namespace}/{service_account} is not bound to a pod; mount a projected service account token"
            ),
        ));
    };
    Ok(Identity {
        namespace: namespace.to_string(),
        pod,
        pod_uid,
        service_account: service_account.to_string(),
        expires_at: None,
    })
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Option<serde_json::Value> {
    let payload = keys::decode(token.split('.').nth(1)?)?;
    serde_json::from_slice(&payload).ok()
}

/// Whether the token, by its own unverified claims, could be a live token for `audience`;
/// its expiry (`exp`) and issuer (`iss`) when it could. Only its signature and the API
/// server's answer make it valid. The API server allows a minute of clock skew past `exp`; a
/// stream never starts on a token that has expired by its own claim.
fn plausible(token: &str, audience: &str) -> Result<(SystemTime, Option<String>), String> {
    let claims = claims(token).ok_or("the bearer token is not a JWT")?;
    let audiences = match &claims["aud"] {
        serde_json::Value::String(one) => vec![one.as_str()],
        serde_json::Value::Array(many) => many.iter().filter_map(|a| a.as_str()).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&audience) {
        return Err(format!("the token is not for audience {audience:?}"));
    }
    let expires = claims["exp"]
        .as_u64()
        .map(|exp| UNIX_EPOCH + Duration::from_secs(exp))
        .filter(|expires| *expires > SystemTime::now())
        .ok_or("the token has expired; send the current one")?;
    let issuer = claims["iss"].as_str().map(String::from);
    Ok((expires, issuer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    fn reviewed(username: &str, pod: Option<&str>, audiences: &[&str]) -> TokenReview {
        let mut extra = std::collections::BTreeMap::new();
        if let Some(pod) = pod {
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_string(),
                vec![pod.to_string()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_string(),
                vec!["uid-1".to_string()],
            );
        }
        TokenReview {
            status: Some(TokenReviewStatus {
                authenticated: Some(true),
                audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
                user: Some(UserInfo {
                    username: Some(username.to_string()),
                    extra: Some(extra),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_bound_token_names_its_pod_and_node_id() {
        let review = reviewed(
            "system:serviceaccount:apps:client",
            Some("client-7d9"),
            &["lattice-xds"],
        );
        let identity = identity(&review, "lattice-xds").unwrap();
        assert_eq!(identity.node_id(), "client-7d9.apps");
        assert_eq!(identity.service_account, "client");
        assert_eq!(
            identity.describe(),
            "pod apps/client-7d9 (service account client)"
        );
    }

    #[test]
    fn tokens_that_prove_no_pod_are_refused() {
        let unbound = reviewed("system:serviceaccount:apps:client", None, &["lattice-xds"]);
        assert_eq!(
            identity(&unbound, "lattice-xds").unwrap_err().0,
            "not_a_pod"
        );
        let user = reviewed("alice", Some("p"), &["lattice-xds"]);
        assert_eq!(identity(&user, "lattice-xds").unwrap_err().0, "not_a_pod");
        let other = reviewed("system:serviceaccount:a:b", Some("p"), &["vault"]);
        assert_eq!(
            identity(&other, "lattice-xds").unwrap_err().0,
            "unauthenticated"
        );
        let refused = TokenReview::default();
        assert_eq!(
            identity(&refused, "lattice-xds").unwrap_err().0,
            "unauthenticated"
        );
    }

    #[test]
    fn implausible_tokens_are_refused_without_asking() {
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let later = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let token = |claims: String| format!("{}.{}.sig", encode("{}"), encode(&claims));
        let ours = token(format!(
            r#"{{"aud":["lattice-xds"],"exp":{later},"iss":"https://kubernetes.default.svc"}}"#
        ));
        assert_eq!(
            plausible(&ours, "lattice-xds"),
            Ok((
                UNIX_EPOCH + Duration::from_secs(later),
                Some("https://kubernetes.default.svc".to_string())
            ))
        );
        let single = token(format!(r#"{{"aud":"lattice-xds","exp":{later}}}"#));
        assert!(plausible(&single, "lattice-xds").is_ok());
        let vault = token(format!(r#"{{"aud":["vault"],"exp":{later}}}"#));
        assert!(
            plausible(&vault, "lattice-xds")
                .unwrap_err()
                .contains("audience")
        );
        let old = token(r#"{"aud":["lattice-xds"],"exp":1}"#.to_string());
        assert!(
            plausible(&old, "lattice-xds")
                .unwrap_err()
                .contains("expired")
        );
        assert!(plausible("garbage", "lattice-xds").is_err());
    }

    #[test]
    fn only_bearer_tokens_are_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            bearer_token(&headers).unwrap_err().reason,
            "unauthenticated"
        );
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert!(bearer_token(&headers).is_err());
        headers.insert("authorization", "Bearer abc.def".parse().unwrap());
        assert_eq!(bearer_token(&headers).unwrap(), "abc.def");
    }
}
