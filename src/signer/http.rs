//! The signer's HTTP listener: `POST /v1/sign` for the Lua mode (the contract is written at the
//! top of `envoy/sign.lua`), and `/healthz`, `/readyz`, `/metrics`.
//!
//! The request body describes the request to sign, one item per line: the method, the path
//! with its query, then `name: value` per header (the authority as `host`). The answer is 200
//! with `name: value` per header to set and `-name` per header to remove, or the refusal's
//! status with a plain-text reason that Envoy hands to the application.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::canonical;
use super::credentials::CredentialStore;
use super::metrics::Metrics;
use super::{Overrides, Refusal, Signer};

const VIA: &str = "http";

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    pub signer: Arc<Signer>,
    pub metrics: Arc<Metrics>,
    /// Ready while it holds credentials that can sign.
    pub credentials: CredentialStore,
    /// Why the signer stopped being whole (one of its tasks stopped), once it has.
    pub unready: Arc<std::sync::OnceLock<String>>,
}

/// Serves the endpoints on `listener` until `shutdown`; `signing` adds `POST /v1/sign`.
pub async fn serve(
    listener: TcpListener,
    state: State,
    signing: bool,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        // One small request and answer per signature: Nagle's algorithm would only add latency.
        let _ = stream.set_nodelay(true);
    });
    serve_on(listener, state, signing, shutdown).await
}

/// The same on any listener (a Unix socket).
pub async fn serve_on<L>(
    listener: L,
    state: State,
    signing: bool,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let mut app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if signing {
        app = app.route("/v1/sign", post(sign));
    }
    axum::serve(listener, app.with_state(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

type Shared = axum::extract::State<State>;

/// Ready while the signer holds credentials it can sign with: before the first load and after
/// they expire without replacement, the pod cannot reach VPC Lattice.
async fn readyz(axum::extract::State(state): Shared) -> Response {
    if let Some(failure) = state.unready.get() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {failure}\n"),
        )
            .into_response();
    }
    match state.credentials.get() {
        Ok(_) => "ready: AWS credentials loaded\n".into_response(),
        Err(unavailable) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {unavailable}\n"),
        )
            .into_response(),
    }
}

async fn metrics(axum::extract::State(state): Shared) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn sign(axum::extract::State(state): Shared, headers: HeaderMap, body: String) -> Response {
    match sign_description(&state.signer, &headers, &body) {
        Ok(answer) => answer.into_response(),
        Err(refusal) => {
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            (
                status,
                [(header::CONTENT_TYPE, "text/plain")],
                refusal.body(),
            )
                .into_response()
        }
    }
}

fn sign_description(signer: &Signer, headers: &HeaderMap, body: &str) -> Result<String, Refusal> {
    let overrides = Overrides::from_headers(|name| headers.get(name)?.to_str().ok())
        .map_err(|error| Refusal::BadRequest(error.to_string()))?;
    let mut lines = body.lines();
    let missing = |what: &str| Refusal::BadRequest(format!("the description has no {what} line"));
    let method = lines.next().ok_or_else(|| missing("method"))?;
    let path = lines.next().ok_or_else(|| missing("path"))?;
    let mut pairs = Vec::new();
    for (index, line) in lines.enumerate().filter(|(_, line)| !line.is_empty()) {
        // The line itself is not echoed: it may hold one of the application's secrets.
        let (name, value) = line.split_once(':').ok_or_else(|| {
            Refusal::BadRequest(format!(
                "line {} is not a \"name: value\" header line",
                index + 3
            ))
        })?;
        pairs.push((name.trim(), value.trim_start()));
    }
    let authority = pairs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| *value)
        .ok_or_else(|| missing("host"))?;
    let request = canonical::Request {
        method,
        path,
        authority,
        headers: &pairs,
    };
    let mutation = signer.sign(&request, &overrides, VIA)?;
    let mut answer = String::with_capacity(512);
    for (name, value) in &mutation.set.headers {
        answer.push_str(name);
        answer.push_str(": ");
        answer.push_str(value);
        answer.push('\n');
    }
    for name in &mutation.remove {
        answer.push('-');
        answer.push_str(name);
        answer.push('\n');
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::sign_description;

    proptest! {
        // `PROPTEST_CASES` sets the number of cases for the longer run (`docs/properties.md`).
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
        ))]

        /// Whatever description the Lua filter posts, and whatever override headers come with
        /// it, the answer sets an AWS authorization or is an error status: never headers to
        /// forward without a signature.
        #[test]
        fn every_description_is_signed_or_refused(
            lines in prop::collection::vec("\\PC{0,60}", 0..8),
            host in prop::option::of("\\PC{0,30}"),
            overrides in prop::collection::vec(
                (prop::sample::select(vec![
                    "x-lattice-xds-region", "x-lattice-xds-service",
                    "x-lattice-xds-algorithm", "x-lattice-xds-region-set",
                ]), prop::collection::vec(any::<u8>(), 0..20)),
                0..4,
            ),
        ) {
            let signer = super::super::tests::signer(Some("eu-west-1"));
            let mut body = lines.join("\n");
            if let Some(host) = host {
                body.push_str("\nhost: ");
                body.push_str(&host);
            }
            let mut headers = HeaderMap::new();
            for (name, value) in overrides {
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    headers.append(HeaderName::from_static(name), value);
                }
            }
            match sign_description(&signer, &headers, &body) {
                Ok(answer) => prop_assert!(
                    answer.lines().any(|line| line.starts_with("authorization: AWS4-")),
                    "answered without a signature: {answer:?}"
                ),
                Err(refusal) => prop_assert!(refusal.status() >= 400, "refused with {}", refusal.status()),
            }
        }
    }
}
