//! The controller's own description of what a sidecar needs: destinations, trust bundles, the
//! fallback domains and the signing settings. Plain Rust types only: no Kubernetes objects and
//! no Envoy protobufs cross this module, so providers and translation can change independently.

pub mod defaults;
mod signing;

pub use signing::{
    AlgorithmParseError, SignerAddress, Signing, SigningAlgorithm, SigningMode,
    SigningModeParseError,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Everything the translation needs to produce one sidecar configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mesh {
    /// Destinations by host name (lower case); one per name that a route claims.
    pub destinations: BTreeMap<Arc<str>, Arc<Destination>>,
    /// Trust bundles by name, referred to by [`Trust::Bundle`].
    pub bundles: BTreeMap<String, TrustBundle>,
    /// Domains whose unnamed hosts fall through to the dynamic forward proxy.
    pub fallback_domains: Vec<String>,
    /// How requests leaving the sidecar are signed.
    pub signing: Signing,
    /// Where the sidecar listens for the traffic redirected to it.
    pub egress: Egress,
    /// The CA bundle file of the operating system, inside the Envoy container.
    pub system_ca_file: String,
    /// A DNS server Envoy asks instead of the system's resolver (`--dns-resolver`).
    pub dns_resolver: Option<SocketAddr>,
    /// Whether each destination gets request stats of its own in the sidecar.
    pub destination_stats: bool,
    /// Whether the sidecar writes an access log line per request (JSON, on stdout).
    pub access_log: bool,
    /// Whether an access log line's path keeps the request's query string.
    pub access_log_query: bool,
    /// What the sidecar does with a host no route or discovered service names.
    pub unknown_hosts: UnknownHosts,
    /// How long calls of hosts without a destination may take, and their retries.
    pub calls: Calls,
    /// How much a sidecar sends at once through each cluster.
    pub limits: ClusterLimits,
    /// Where the sidecars send their spans, when they do.
    pub tracing: Option<Tracing>,
}

/// The sidecars' spans: an OpenTelemetry span per request leaving the pod and one per attempt,
/// exported over OTLP/gRPC to a collector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tracing {
    /// The collector's OTLP/gRPC address: `HOST:PORT`.
    pub collector: String,
    /// Of the requests that carry no sampling decision, how many in a million start a trace;
    /// a request whose `traceparent` says it is sampled is always traced.
    pub sampled_per_million: u32,
}

impl Tracing {
    /// The share of requests sampled, as a percentage.
    pub fn sampled_percent(&self) -> f64 {
        f64::from(self.sampled_per_million) / 10_000.0
    }
}

/// How much one sidecar sends at once through one cluster (Envoy's circuit breakers): past a
/// limit a request is answered 503 at once, marked `UO` in the access log, instead of queueing
/// behind a service that has stopped answering. A shared cluster carries every destination of
/// its class, so the defaults are four times Envoy's own 1,024.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterLimits {
    /// Connections open at once (HTTP/1.1 needs one per request in flight).
    pub connections: u32,
    /// Requests waiting for a connection.
    pub pending_requests: u32,
    /// Requests in flight; retries in flight are held to the same number.
    pub requests: u32,
    /// 5xx answers or failed connections in a row after which an address of a cluster is set
    /// aside (Envoy's outlier detection); 0: never.
    pub eject_after: u32,
    /// How long an address is first set aside; each time again, that much longer.
    pub ejection_time: Duration,
}

impl Default for ClusterLimits {
    fn default() -> Self {
        Self {
            connections: 4096,
            pending_requests: 4096,
            requests: 4096,
            eject_after: 5,
            ejection_time: Duration::from_secs(30),
        }
    }
}

/// How long a caller's request may take and whether it is tried again: a route's `timeouts`
/// and `retry`, else the cluster-wide defaults (`--request-timeout`, `--attempt-timeout`,
/// `--retries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Calls {
    /// The whole request, every attempt and the waits between them included; `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// One attempt (a route's `backendRequest`); `None`: only the request's limit.
    pub attempt_timeout: Option<Duration>,
    /// How many times a request is tried again after a connection failure, a reset before any
    /// response, or a retried status.
    pub retries: u32,
    /// A route's own `retry`; `None`: the defaults, which retry only idempotent requests (GET,
    /// HEAD, OPTIONS, PUT, DELETE) and only on a 503.
    pub retry: Option<RouteRetry>,
}

/// What a route's `retry` asks (Gateway API's HTTPRoute rule `retry`): every method retried,
/// on these statuses, with this wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RouteRetry {
    pub codes: StatusCodes,
    /// The least wait before a retry; `None`: Envoy's own (25 ms).
    pub backoff: Option<Duration>,
}

/// A set of HTTP statuses from 400 to 599, the ones a route may retry on.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StatusCodes([u64; 4]);

impl StatusCodes {
    pub const FIRST: u16 = 400;
    pub const LAST: u16 = 599;

    /// Adds `code`; `false` when it is not from 400 to 599.
    pub fn insert(&mut self, code: u16) -> bool {
        if !(Self::FIRST..=Self::LAST).contains(&code) {
            return false;
        }
        let bit = usize::from(code - Self::FIRST);
        self.0[bit / 64] |= 1 << (bit % 64);
        true
    }

    pub fn union(self, other: StatusCodes) -> StatusCodes {
        StatusCodes(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|word| *word == 0)
    }

    /// The codes, in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (Self::FIRST..=Self::LAST).filter(|code| {
            let bit = usize::from(code - Self::FIRST);
            self.0[bit / 64] & (1 << (bit % 64)) != 0
        })
    }
}

impl std::fmt::Debug for StatusCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Calls {
    /// A limit as flags and routes write it: `0s` is none.
    pub fn limit(duration: Duration) -> Option<Duration> {
        (!duration.is_zero()).then_some(duration)
    }

    /// The longest request a retry may belong to. A retry sends the request's signed headers
    /// again, and VPC Lattice accepts a signature for five minutes after it was made.
    pub const RETRY_WINDOW: Duration = Duration::from_secs(4 * 60);

    /// The retries this request limit allows: none beyond [`Calls::RETRY_WINDOW`], or with
    /// no limit at all.
    pub fn allowed_retries(&self) -> u32 {
        match self.request_timeout {
            Some(limit) if limit <= Self::RETRY_WINDOW => self.retries,
            _ => 0,
        }
    }
}

impl Default for Calls {
    /// Fifteen seconds a request, as AWS App Mesh's sidecars had; one retry.
    fn default() -> Self {
        Self {
            request_timeout: Some(Duration::from_secs(15)),
            attempt_timeout: None,
            retries: 1,
            retry: None,
        }
    }
}

/// What the sidecar does with a host that no route, discovered service or fallback domain
/// names. Everything the redirect captures is in VPC Lattice's address ranges, so such a host
/// is still a Lattice service: one of another cluster or account that discovery has not listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownHosts {
    /// Signed and forwarded over HTTPS on 443, SNI and certificate checked against the host,
    /// the certificate trusted if it chains to a private CA or to the system roots.
    #[default]
    Forward,
    /// Answered by the sidecar itself with a 404 that says why, never signed.
    Deny,
}

/// The bundle unknown hosts are verified against when private CAs are configured: every
/// private CA and the system roots.
pub const UNKNOWN_HOSTS_BUNDLE: &str = "private-ca-and-system-roots";

/// The trust for hosts no route names, given the configured bundles: the private CAs and the
/// system roots when both are known, the private CAs when the system roots are not, otherwise
/// the system roots.
pub fn unknown_host_trust(bundles: &BTreeMap<String, TrustBundle>) -> Trust {
    if bundles.contains_key(UNKNOWN_HOSTS_BUNDLE) {
        Trust::Bundle(UNKNOWN_HOSTS_BUNDLE.to_string())
    } else {
        custom_domain_trust(bundles)
    }
}

/// One host that the sidecar routes to a VPC Lattice service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Lower-case DNS name; also the TLS SNI and the name the certificate must carry.
    pub host: String,
    /// Port on the Lattice service: the listener port of the gateway it is attached to.
    pub port: u16,
    /// `None` for plain HTTP; otherwise how the server certificate is verified.
    pub tls: Option<Trust>,
    /// Pinned addresses instead of DNS (`--resolve`), empty for none; SNI and SAN checks
    /// still use `host`.
    pub pinned: Vec<SocketAddr>,
    /// What the service's listener speaks.
    pub protocol: Protocol,
    /// The local route that names this host, when one does.
    pub route: Option<RouteOrigin>,
    /// The VPC Lattice service the VPC Lattice API lists under this name, when discovery found
    /// it. A destination has a route, a service, or both.
    pub service: Option<Arc<ServiceOrigin>>,
    /// How long its calls may take, and their retries.
    pub calls: Calls,
}

/// What a destination's listener speaks, which decides how the sidecar talks to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// HTTP: HTTP/1.1 in clear text; over TLS, the version ALPN negotiates (`h2`, `http/1.1`).
    #[default]
    Http,
    /// gRPC (a GRPCRoute's service): HTTP/2 over TLS.
    Grpc,
    /// TLS that the service terminates itself (a TLS passthrough listener): forwarded by SNI,
    /// unsigned and untouched.
    TlsPassthrough,
}

/// The local route a destination came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteOrigin {
    /// `namespace/name`.
    pub route: ObjectRef,
    pub kind: RouteKind,
    /// The IAM auth policies VPC Lattice evaluates before a request reaches this destination:
    /// the service network's (on the gateway) and the service's (on the route). Diagnostics
    /// only; the sidecar does not enforce them.
    pub auth_policies: Vec<AuthPolicyRef>,
}

/// A VPC Lattice service as the VPC Lattice API describes it, for provenance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceOrigin {
    pub name: String,
    pub arn: String,
    /// The account that owns the service (from its ARN); another account's when shared.
    pub account: String,
    /// `NONE` or `AWS_IAM`, and whether an auth policy is attached.
    pub auth: AuthSetting,
    /// The service networks through which the VPC reaches the service.
    pub networks: Vec<NetworkOrigin>,
    /// Whether the service's listeners were read; when not, HTTPS on 443 is assumed.
    pub listeners_read: bool,
}

/// A service network a discovered service is reached through.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetworkOrigin {
    pub name: String,
    pub arn: String,
    pub auth: AuthSetting,
}

/// A VPC Lattice resource's auth type and whether it carries an auth policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuthSetting {
    /// `NONE` or `AWS_IAM`; empty when it could not be read.
    pub auth_type: String,
    pub policy: bool,
}

impl fmt::Display for AuthSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth_type = match self.auth_type.as_str() {
            "" => "unknown",
            other => other,
        };
        match self.policy {
            true => write!(f, "{auth_type} with an auth policy"),
            false => f.write_str(auth_type),
        }
    }
}

/// The Gateway API route kinds a destination can come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// An HTTPRoute: the upstream protocol follows the application's (HTTP/1.1 by default).
    #[default]
    Http,
    /// A GRPCRoute: VPC Lattice serves it over HTTP/2 with TLS (ALPN `h2`).
    Grpc,
}

impl RouteKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTPRoute",
            Self::Grpc => "GRPCRoute",
        }
    }
}

impl fmt::Display for RouteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IAMAuthPolicy that guards a destination, and at which level it applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuthPolicyRef {
    pub level: PolicyLevel,
    pub policy: ObjectRef,
}

/// Where VPC Lattice attaches an auth policy: both levels must allow a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyLevel {
    /// Attached to a Gateway: the service network's policy.
    ServiceNetwork,
    /// Attached to an HTTPRoute: the service's own policy.
    Service,
}

impl fmt::Display for AuthPolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            PolicyLevel::ServiceNetwork => "service network",
            PolicyLevel::Service => "service",
        };
        write!(f, "{} ({level})", self.policy)
    }
}

/// Where the certificates a destination presents must chain to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trust {
    /// The operating system's roots: Lattice-assigned `*.on.aws` names use public certificates.
    SystemRoots,
    /// A private CA bundle served to Envoy over SDS, by bundle name.
    Bundle(String),
}

/// CA certificates that custom-domain destinations are verified against.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustBundle {
    pub name: String,
    /// One or more PEM certificates, concatenated.
    pub pem: String,
    /// Where the certificates came from, for status and logs (a file path, a CA ARN).
    pub sources: Vec<String>,
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("name", &self.name)
            .field("pem_bytes", &self.pem.len())
            .field("sources", &self.sources)
            .finish()
    }
}

/// The sidecar's egress listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Egress {
    pub port: u16,
    /// IP addresses to bind; by default every IPv4 and IPv6 address.
    pub addresses: Vec<std::net::IpAddr>,
    /// Whether each connection's first bytes are read, so that what is not HTTP passes
    /// through; without, the listener takes HTTP alone.
    pub inspect: bool,
    /// Whether a sidecar on an incremental stream fetches each host's virtual host when its
    /// pod first calls it (VHDS), holding only those, instead of every destination's.
    pub on_demand: bool,
}

impl Default for Egress {
    fn default() -> Self {
        Self {
            port: defaults::EGRESS_PORT,
            addresses: vec![
                std::net::Ipv4Addr::UNSPECIFIED.into(),
                std::net::Ipv6Addr::UNSPECIFIED.into(),
            ],
            inspect: true,
            on_demand: false,
        }
    }
}

/// A namespaced object reference, written `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The name of the bundle that custom-domain destinations trust: every private CA configured.
pub const PRIVATE_CA_BUNDLE: &str = "private-ca";

/// The trust for custom-domain hosts given the configured bundles: the private CAs when any are
/// configured, otherwise the system roots (a custom domain may carry a public certificate).
pub fn custom_domain_trust(bundles: &BTreeMap<String, TrustBundle>) -> Trust {
    if bundles.contains_key(PRIVATE_CA_BUNDLE) {
        Trust::Bundle(PRIVATE_CA_BUNDLE.to_string())
    } else {
        Trust::SystemRoots
    }
}

/// The parts of a [`Mesh`] that come from the controller's configuration, not from routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub fallback_domains: Vec<String>,
    /// Hosts pinned to addresses (`--resolve host=ip:port`, repeated for more than one), by
    /// lower-case host.
    pub pinned: BTreeMap<String, Vec<SocketAddr>>,
    pub bundles: BTreeMap<String, TrustBundle>,
    pub signing: Signing,
    pub egress: Egress,
    pub system_ca_file: String,
    /// GatewayClass whose Gateways are VPC Lattice service networks, besides any class run by
    /// the AWS Gateway API Controller.
    pub gateway_class: String,
    pub dns_resolver: Option<SocketAddr>,
    pub destination_stats: bool,
    pub access_log: bool,
    pub access_log_query: bool,
    /// Serve a route on a Gateway only once the VPC Lattice controller has accepted it there
    /// (`status.parents`, `Accepted=True`).
    pub accepted_routes_only: bool,
    pub unknown_hosts: UnknownHosts,
    /// The calls' defaults, for destinations whose route sets no `timeouts`.
    pub calls: Calls,
    pub limits: ClusterLimits,
    pub tracing: Option<Tracing>,
    /// The system roots as the controller reads them (`--system-ca-file`), joined to the
    /// private CAs for unknown hosts; `None` when they are already among the private CAs
    /// (`--trust-system-roots`) or could not be read.
    pub system_roots: Option<Arc<str>>,
}

/// The GatewayClass name the AWS Gateway API Controller's installation creates.
pub const DEFAULT_GATEWAY_CLASS: &str = "amazon-vpc-lattice";

/// Where Debian, Ubuntu (the stock Envoy image) and Alpine keep the system CA bundle.
pub const DEFAULT_SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Default for Settings {
    fn default() -> Self {
        Self {
            fallback_domains: Vec::new(),
            pinned: BTreeMap::new(),
            bundles: BTreeMap::new(),
            signing: Signing::default(),
            egress: Egress::default(),
            system_ca_file: DEFAULT_SYSTEM_CA_FILE.to_string(),
            gateway_class: DEFAULT_GATEWAY_CLASS.to_string(),
            dns_resolver: None,
            destination_stats: true,
            access_log: true,
            access_log_query: true,
            accepted_routes_only: false,
            unknown_hosts: UnknownHosts::default(),
            calls: Calls::default(),
            limits: ClusterLimits::default(),
            tracing: None,
            system_roots: None,
        }
    }
}

impl Settings {
    /// The trust for a custom-domain host under these settings.
    pub fn custom_domain_trust(&self) -> Trust {
        custom_domain_trust(&self.bundles)
    }

    /// An empty mesh carrying these settings, ready for destinations.
    pub fn mesh(&self) -> Mesh {
        Mesh {
            destinations: BTreeMap::new(),
            bundles: self.bundles.clone(),
            fallback_domains: self.fallback_domains.clone(),
            signing: self.signing.clone(),
            egress: self.egress.clone(),
            system_ca_file: self.system_ca_file.clone(),
            dns_resolver: self.dns_resolver,
            destination_stats: self.destination_stats,
            access_log: self.access_log,
            access_log_query: self.access_log_query,
            unknown_hosts: self.unknown_hosts,
            calls: self.calls,
            limits: self.limits,
            tracing: self.tracing.clone(),
        }
    }
}
