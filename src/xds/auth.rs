//! Who is at the other end of an ADS stream: the serving layer asks an [`Authenticate`] when a
//! stream opens, before any request is read, and serves the stream as the [`Identity`] it
//! answers (its node id must then be that pod's) or ends it with the [`Refusal`]'s status.
//! The controller plugs in Kubernetes ServiceAccount tokens
//! (`provider::kubernetes::token_review`), or [`Open`] to serve every stream.

use std::net::IpAddr;
use std::time::SystemTime;

use tonic::Status;
use tonic::codegen::http::HeaderMap;

/// The pod a stream authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub service_account: String,
    /// When the credentials expire; the stream ends then, and the proxy opens the next one
    /// with its current credentials.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// The only node id this identity may use.
    pub fn node_id(&self) -> String {
        format!("{}.{}", self.pod, self.namespace)
    }

    /// How proxy status shows it: `pod NS/NAME (sa SA)`.
    pub fn describe(&self) -> String {
        format!(
            "pod {}/{} (service account {})",
            self.namespace, self.pod, self.service_account
        )
    }
}

/// Why a stream was refused before it started: a status for the proxy and a metric reason.
#[derive(Debug)]
pub struct Refusal {
    pub reason: &'static str,
    pub status: Status,
}

impl Refusal {
    /// No credentials, or ones that prove nothing: `UNAUTHENTICATED`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            reason: "unauthenticated",
            status: Status::unauthenticated(message.into()),
        }
    }

    /// Credentials that prove an identity that may not have a stream: `PERMISSION_DENIED`.
    pub fn permission_denied(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            status: Status::permission_denied(message.into()),
        }
    }

    /// The credentials cannot be checked now; the proxy retries: `UNAVAILABLE`.
    pub fn unavailable(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            status: Status::unavailable(message.into()),
        }
    }
}

/// How streams authenticate.
#[tonic::async_trait]
pub trait Authenticate: std::fmt::Debug + Send + Sync {
    /// The identity the request's credentials prove; `None` when streams are not
    /// authenticated. `peer` is the client's address, when known.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<Identity>, Refusal>;
}

/// Every stream is served, under any node id (`--xds-auth none`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Open;

#[tonic::async_trait]
impl Authenticate for Open {
    async fn authenticate(
        &self,
        _headers: &HeaderMap,
        _peer: Option<IpAddr>,
    ) -> Result<Option<Identity>, Refusal> {
        Ok(None)
    }
}
