//! Signing settings: which Envoy filter signs requests and with what SigV4 scope.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// How the sidecar signs requests for VPC Lattice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signing {
    pub mode: SigningMode,
    /// SigV4 region; `None` lets the signer use its own environment.
    pub region: Option<String>,
    /// SigV4 service name.
    pub service: String,
    /// The signer sidecar's ext_proc gRPC address.
    pub signer_grpc: SignerAddress,
    /// The signer sidecar's HTTP address, used by the Lua mode.
    pub signer_http: SignerAddress,
    pub algorithm: SigningAlgorithm,
    /// The SigV4A region set, such as `*`.
    pub region_set: String,
}

impl Default for Signing {
    fn default() -> Self {
        Self {
            mode: SigningMode::ExtProc,
            region: None,
            service: "vpc-lattice-svcs".to_string(),
            signer_grpc: SignerAddress::Tcp(super::defaults::SIGNER_GRPC),
            signer_http: SignerAddress::Tcp(super::defaults::SIGNER_HTTP),
            algorithm: SigningAlgorithm::SigV4,
            region_set: "*".to_string(),
        }
    }
}

/// Where Envoy reaches the signer sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerAddress {
    /// A loopback port: any process of the pod can reach it.
    Tcp(SocketAddr),
    /// A Unix socket the signer serves to Envoy's uid only.
    Unix(String),
}

/// The Envoy filter that signs requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningMode {
    /// `envoy.filters.http.ext_proc` calling the signer over gRPC.
    ExtProc,
    /// `envoy.filters.http.lua` calling the signer's HTTP endpoint.
    Lua,
    /// Envoy's own `envoy.filters.http.aws_request_signing`.
    Native,
    /// The project's signer inside Envoy, as a dynamic module (`liblattice_xds_signer.so`).
    Module,
    /// No signing at all (a service network without an auth policy).
    None,
}

impl SigningMode {
    pub const ALL: [SigningMode; 5] = [
        Self::ExtProc,
        Self::Lua,
        Self::Native,
        Self::Module,
        Self::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExtProc => "ext-proc",
            Self::Lua => "lua",
            Self::Native => "native",
            Self::Module => "module",
            Self::None => "none",
        }
    }
}

impl fmt::Display for SigningMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signing mode name that is not one of `ext-proc`, `lua`, `native`, `module`, `none`.
#[derive(Debug, thiserror::Error)]
#[error("unknown signing mode {0:?}: expected ext-proc, lua, native, module or none")]
pub struct SigningModeParseError(String);

impl FromStr for SigningMode {
    type Err = SigningModeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| SigningModeParseError(s.to_string()))
    }
}

/// The signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// `AWS4-HMAC-SHA256`, scoped to one region.
    SigV4,
    /// `AWS4-ECDSA-P256-SHA256`, scoped to a region set.
    SigV4a,
}

impl SigningAlgorithm {
    pub const ALL: [SigningAlgorithm; 2] = [Self::SigV4, Self::SigV4a];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SigV4 => "sigv4",
            Self::SigV4a => "sigv4a",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that is neither `sigv4` nor `sigv4a`.
#[derive(Debug, thiserror::Error)]
#[error("unknown signing algorithm {0:?}: expected sigv4 or sigv4a")]
pub struct AlgorithmParseError(String);

impl FromStr for SigningAlgorithm {
    type Err = AlgorithmParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| AlgorithmParseError(s.to_string()))
    }
}
