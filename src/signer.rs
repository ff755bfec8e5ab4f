//! The signer sidecar: signs each outgoing request with the pod's own AWS credentials, so that
//! VPC Lattice can check them (and their principal tags) against its auth policies.
//!
//! Envoy reaches it over ext_proc (gRPC) or, in the Lua mode, over a small HTTP endpoint; both
//! use [`Signer::sign`]. It fails closed: without valid credentials a request is refused with
//! a 503 that says why, never sent unsigned. It signs only for the services and regions it was
//! configured with: anything in the pod's network namespace can reach it, and must not get
//! signatures for, say, `s3`; anything else is refused with a 403 that says why.

mod args;
mod batched;
pub mod canonical;
pub mod credentials;
mod ext_proc;
mod http;
mod key_cache;
pub mod metrics;
pub mod module;
mod server;
pub mod sigv4;
pub mod sigv4a;
mod socket;
pub mod time;

pub use args::{SignerArgs, one_of};
pub use server::{SignerConfig, default_chain, run};

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use canonical::{Request, owned_by_signer};
use credentials::{CredentialStore, Unavailable};
use metrics::{Metrics, ViaLabel};
use sigv4::{Options, Scope, SigV4};
use sigv4a::SigV4a;

pub use crate::model::{AlgorithmParseError, SigningAlgorithm as Algorithm};

/// What a request is signed for when nothing overrides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// SigV4 region; the only source when the controller sends none.
    pub region: Option<String>,
    pub service: String,
    pub algorithm: Algorithm,
    /// SigV4A region set, such as `*`.
    pub region_set: String,
    /// The only services requests are signed for (`--allow-service`).
    pub allowed_services: Vec<String>,
    /// The only regions requests are signed for (`--allow-region`), and of which a SigV4A
    /// region set may be made (besides the signer's own `region_set` when it was started for
    /// SigV4A).
    pub allowed_regions: Vec<String>,
}

/// Settings one request or stream may carry (set by the controller's generated filter config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub region: Option<String>,
    pub service: Option<String>,
    pub algorithm: Option<Algorithm>,
    /// SigV4A region set.
    pub region_set: Option<String>,
}

/// The header names that carry [`Overrides`], as gRPC metadata (ext_proc) or HTTP headers (Lua).
pub mod override_headers {
    pub const REGION: &str = "x-lattice-xds-region";
    pub const SERVICE: &str = "x-lattice-xds-service";
    pub const ALGORITHM: &str = "x-lattice-xds-algorithm";
    pub const REGION_SET: &str = "x-lattice-xds-region-set";
}

impl Overrides {
    /// Reads the override headers through `get`; an unknown algorithm is an error.
    pub fn from_headers<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, AlgorithmParseError> {
        let text = |name| {
            get(name)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        Ok(Self {
            region: text(override_headers::REGION),
            service: text(override_headers::SERVICE),
            algorithm: get(override_headers::ALGORITHM)
                .filter(|value| !value.is_empty())
                .map(str::parse)
                .transpose()?,
            region_set: text(override_headers::REGION_SET),
        })
    }
}

/// The header changes that sign a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Mutation {
    /// Headers to set, replacing any of the same name. Their values hold the signature and
    /// the session token: never log them.
    pub set: sigv4::Signed,
    /// Headers the application sent that the signer owns (`authorization`, `x-amz-*`).
    pub remove: Vec<String>,
}

/// Why a request was refused instead of signed. Each becomes an immediate error response.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Credentials(#[from] Unavailable),
    /// Neither the controller nor the signer's own flags name a region.
    #[error("no region to sign for: set --region on the signer or the controller")]
    NoRegion,
    /// The request cannot be described to the signer (for example a header that is not UTF-8).
    #[error("cannot sign this request: {0}")]
    BadRequest(String),
    /// A service or region this signer was not configured to sign for.
    #[error("{what} is not one this signer signs for ({flag}: {allowed})")]
    NotAllowed {
        what: String,
        flag: &'static str,
        allowed: String,
        reason: &'static str,
    },
}

impl Refusal {
    /// The HTTP status Envoy answers the application with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Credentials(_) => 503,
            Self::NoRegion => 500,
            Self::BadRequest(_) => 400,
            Self::NotAllowed { .. } => 403,
        }
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Credentials(unavailable) => unavailable.reason(),
            Self::NoRegion => "no_region",
            Self::BadRequest(_) => "bad_request",
            Self::NotAllowed { reason, .. } => reason,
        }
    }

    /// The response body the application sees.
    pub fn body(&self) -> String {
        format!("lattice-xds signer: {self}\n")
    }
}

/// The request as Envoy holds it, from its headers (pseudo-headers included), to be signed.
pub fn envoy_request<'a>(headers: &'a [(&'a str, &'a str)]) -> Result<Request<'a>, Refusal> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
            .ok_or_else(|| Refusal::BadRequest(format!("Envoy sent no {name} header")))
    };
    Ok(Request {
        method: find(":method")?,
        path: find(":path")?,
        authority: find(":authority")?,
        headers,
    })
}

/// Signs requests with the current credentials.
#[derive(Debug)]
pub struct Signer {
    defaults: Defaults,
    credentials: CredentialStore,
    sigv4: SigV4,
    sigv4a: SigV4a,
    metrics: Arc<Metrics>,
}

impl Signer {
    pub fn new(defaults: Defaults, credentials: CredentialStore, metrics: Arc<Metrics>) -> Self {
        Self {
            defaults,
            credentials,
            sigv4: SigV4::default(),
            sigv4a: SigV4a::default(),
            metrics,
        }
    }

    /// Signs `request` now, or says why not. `via` labels the metrics.
    pub fn sign(
        &self,
        request: &Request<'_>,
        overrides: &Overrides,
        via: &'static str,
    ) -> Result<Mutation, Refusal> {
        let started = Instant::now();
        let result = self.try_sign(request, overrides);
        match &result {
            Ok(_) => {
                self.metrics.signed.get_or_create(&ViaLabel { via }).inc();
                self.metrics
                    .latency
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(refusal) => {
                self.metrics.refuse(refusal.reason());
                tracing::warn!(%refusal, authority = request.authority, "refused to sign a request");
            }
        }
        result
    }

    fn try_sign(&self, request: &Request<'_>, overrides: &Overrides) -> Result<Mutation, Refusal> {
        let credentials = self.credentials.get()?;
        let service = overrides
            .service
            .as_deref()
            .unwrap_or(&self.defaults.service);
        if !self.defaults.allowed_services.iter().any(|s| s == service) {
            return Err(self.not_allowed(
                format!("service {service:?}"),
                "--allow-service",
                &self.defaults.allowed_services,
                "service_not_allowed",
            ));
        }
        let algorithm = overrides.algorithm.unwrap_or(self.defaults.algorithm);
        let now = SystemTime::now();
        let set = match algorithm {
            Algorithm::SigV4 => {
                let region = overrides
                    .region
                    .as_deref()
                    .or(self.defaults.region.as_deref())
                    .ok_or(Refusal::NoRegion)?;
                if !self.defaults.allowed_regions.iter().any(|r| r == region) {
                    return Err(self.not_allowed(
                        format!("region {region:?}"),
                        "--allow-region",
                        &self.defaults.allowed_regions,
                        "region_not_allowed",
                    ));
                }
                let scope = Scope { region, service };
                self.sigv4
                    .sign(request, &credentials, scope, now, &Options::default())
            }
            Algorithm::SigV4a => {
                let region_set = overrides
                    .region_set
                    .as_deref()
                    .unwrap_or(&self.defaults.region_set);
                // The signer's own region set counts only when it was started for SigV4A; any
                // other set (`*` included) must be made of allowed regions.
                let own = self.defaults.algorithm == Algorithm::SigV4a
                    && region_set == self.defaults.region_set;
                let allowed = own
                    || region_set
                        .split(',')
                        .map(str::trim)
                        .all(|region| self.defaults.allowed_regions.iter().any(|r| r == region));
                if !allowed {
                    return Err(self.not_allowed(
                        format!("region set {region_set:?}"),
                        "--allow-region",
                        &self.defaults.allowed_regions,
                        "region_not_allowed",
                    ));
                }
                let scope = Scope {
                    region: region_set,
                    service,
                };
                self.sigv4a
                    .sign(request, &credentials, scope, now, &Options::default())
                    .map_err(|error| Refusal::BadRequest(error.to_string()))?
            }
        };
        let remove = request
            .headers
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| owned_by_signer(name))
            .filter(|name| {
                !set.headers
                    .iter()
                    .any(|(set, _)| set.eq_ignore_ascii_case(name))
            })
            .map(str::to_string)
            .collect();
        Ok(Mutation { set, remove })
    }

    fn not_allowed(
        &self,
        what: String,
        flag: &'static str,
        allowed: &[String],
        reason: &'static str,
    ) -> Refusal {
        let allowed = if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        };
        Refusal::NotAllowed {
            what,
            flag,
            allowed,
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
