//! The EKS Pod Identity agent's endpoint, for the emulated pods' signers: `GET /v1/credentials`
//! with the pod's token in `Authorization` answers that identity's credentials, as the agent
//! does (aws/eks-pod-identity-agent): 400 without a token, 403 for an unknown one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::identities::Identity;

/// How long the credentials handed out are valid; the signer refreshes before that.
const LIFETIME: Duration = Duration::from_secs(3600);

pub fn router(identities: Arc<Vec<Identity>>) -> Router {
    Router::new()
        .route("/v1/credentials", get(credentials))
        .with_state(identities)
}

async fn credentials(State(identities): State<Arc<Vec<Identity>>>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .filter(|token| !token.is_empty())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "Service account token cannot be empty",
        )
            .into_response();
    };
    let Some(identity) = identities
        .iter()
        .find(|identity| identity.agent_token.as_deref() == Some(token))
    else {
        return (StatusCode::FORBIDDEN, "Service account token is not valid").into_response();
    };
    let expiration = crate::signer::time::AmzDate::new(SystemTime::now() + LIFETIME);
    let expiration = expiration.as_str();
    // RFC 3339 from the YYYYMMDDTHHMMSSZ form.
    let expiration = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &expiration[..4],
        &expiration[4..6],
        &expiration[6..8],
        &expiration[9..11],
        &expiration[11..13],
        &expiration[13..15]
    );
    let account = identity.arn.split(':').nth(4).unwrap_or_default();
    axum::Json(serde_json::json!({
        "AccessKeyId": identity.access_key_id,
        "SecretAccessKey": identity.secret_access_key,
        "Token": identity.session_token.clone().unwrap_or_default(),
        "AccountId": account,
        "Expiration": expiration,
    }))
    .into_response()
}
