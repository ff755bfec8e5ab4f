//! `lattice-xds controller`: its flags and how they become the controller's configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::certificates::CertificateSource;
use crate::connections::ConnectionLimits;
use crate::controller::{ControllerConfig, Source, WebhookConfig, XdsAuth};
use crate::inject::{EnvoyLogLevel, EnvoyProcess, InjectConfig, SidecarResources, SignerSockets};
use crate::logging::LogFormat;
use crate::model::defaults;
use crate::model::{
    Calls, ClusterLimits, DEFAULT_GATEWAY_CLASS, DEFAULT_SYSTEM_CA_FILE, Egress, PRIVATE_CA_BUNDLE,
    Settings, SignerAddress, Signing, SigningAlgorithm, SigningMode, Tracing, TrustBundle,
    UnknownHosts,
};
use crate::provider::kubernetes::token_review::DEFAULT_AUDIENCE;
use crate::provider::kubernetes::{KubernetesConfig, LeaseConfig};
use crate::signer::one_of;
use crate::trust::fetch::{CaArn, TrustSettings};
use crate::xds::limits::Limits;

/// How ADS streams authenticate (`--xds-auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdsAuthMode {
    /// A projected service account token per stream, checked with a TokenReview.
    Kubernetes,
    /// No authentication.
    None,
}

/// What the sidecar does with a host no route names (`--unknown-hosts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownHostsMode {
    /// Sign it and send it over HTTPS on 443, its certificate checked against the host.
    Forward,
    /// Answer the sidecar's own 404.
    Deny,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["manifests", "kubernetes"]))]
#[command(after_help = "Examples:
  # The embedded default: routes from a directory, sidecars on this machine.
  lattice-xds controller --manifests examples/cluster1 --domain example.com --region us-west-2
  # In a cluster (what the chart runs; every flag is also a LATTICE_XDS_* variable):
  lattice-xds controller --kubernetes --region ap-northeast-2 --vpc-id vpc-0a1b2c3d \\
    --ca-arn arn:aws:acm-pca:ap-northeast-2:111122223333:certificate-authority/ID \\
    --xds-auth kubernetes --xds-tls-host lattice-xds.lattice-xds.svc \\
    --webhook-listen 0.0.0.0:9443 --webhook-host lattice-xds.lattice-xds.svc
  # Check a directory before serving it:
  lattice-xds validate examples/cluster1")]
pub struct ControllerArgs {
    /// Directory of Gateway API manifests (*.yaml, *.yml), watched for changes.
    #[arg(
        help_heading = "Where routes come from",
        long,
        env = "LATTICE_XDS_MANIFESTS"
    )]
    pub manifests: Option<PathBuf>,
    /// Watch the Kubernetes API instead of a directory: in-cluster credentials, or
    /// --kubeconfig / KUBECONFIG.
    #[arg(
        help_heading = "Where routes come from",
        long,
        env = "LATTICE_XDS_KUBERNETES"
    )]
    pub kubernetes: bool,
    /// Kubeconfig file for --kubernetes; by default KUBECONFIG, then the in-cluster service
    /// account, then ~/.kube/config.
    #[arg(
        help_heading = "Where routes come from",
        long,
        env = "LATTICE_XDS_KUBECONFIG"
    )]
    pub kubeconfig: Option<PathBuf>,
    /// GatewayClass whose Gateways are VPC Lattice service networks (classes run by the AWS
    /// Gateway API Controller always count).
    #[arg(help_heading = "Where routes come from", long, env = "LATTICE_XDS_GATEWAY_CLASS", default_value = DEFAULT_GATEWAY_CLASS)]
    pub gateway_class: String,
    /// This replica's name in leader election and Events; by default POD_NAME, then the host
    /// name.
    #[arg(help_heading = "In a cluster", long, env = "LATTICE_XDS_INSTANCE")]
    pub instance: Option<String>,
    /// Namespace of the leader-election Lease; by default the service account's namespace
    /// in a cluster, otherwise `default`.
    #[arg(
        help_heading = "In a cluster",
        long,
        env = "LATTICE_XDS_LEASE_NAMESPACE"
    )]
    pub lease_namespace: Option<String>,
    /// Name of the leader-election Lease. Only the leader writes Events and ConfigMaps; every
    /// replica serves xDS.
    #[arg(
        help_heading = "In a cluster",
        long,
        env = "LATTICE_XDS_LEASE_NAME",
        default_value = "lattice-xds-controller"
    )]
    pub lease_name: String,
    /// How long a leader's Lease lasts without renewal before another replica takes over.
    #[arg(help_heading = "In a cluster", long, env = "LATTICE_XDS_LEASE_DURATION", default_value = "15s", value_parser = super::duration)]
    pub lease_duration: Duration,
    /// Label selector of the namespaces that receive the `lattice-xds-ca-bundle` ConfigMap
    /// (key `ca.crt`: every private CA), for workloads other than Envoy.
    #[arg(
        help_heading = "In a cluster",
        long,
        env = "LATTICE_XDS_CA_BUNDLE_NAMESPACES",
        default_value = "lattice-xds/ca-bundle=true"
    )]
    pub ca_bundle_namespaces: String,
    /// Address of the ADS gRPC server.
    #[arg(help_heading = "xDS server", 
        long,
        env = "LATTICE_XDS_XDS_LISTEN",
        default_value_t = defaults::XDS_LISTEN
    )]
    pub xds_listen: SocketAddr,
    /// How ADS streams authenticate: `kubernetes` (each stream carries its pod's projected
    /// service account token, checked with a TokenReview, and may only use the node id
    /// `<pod>.<namespace>`; needs --kubernetes and xDS over TLS) or `none` (anyone who reaches
    /// the port is served, under any node id).
    #[arg(help_heading = "xDS TLS and authentication", long, env = "LATTICE_XDS_XDS_AUTH", value_enum, ignore_case = true, default_value_t = XdsAuthMode::None)]
    pub xds_auth: XdsAuthMode,
    /// The audience sidecars' xDS tokens are issued for (their projected token's `audience`).
    #[arg(help_heading = "xDS TLS and authentication", long, env = "LATTICE_XDS_XDS_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub xds_audience: String,
    /// Serve ADS over TLS with this certificate chain (PEM, re-read as it changes, for example
    /// from a cert-manager Secret); needs --xds-tls-key.
    #[arg(
        help_heading = "xDS TLS and authentication",
        long,
        env = "LATTICE_XDS_XDS_TLS_CERT",
        requires = "xds_tls_key"
    )]
    pub xds_tls_cert: Option<PathBuf>,
    /// The private key of --xds-tls-cert (PEM).
    #[arg(
        help_heading = "xDS TLS and authentication",
        long,
        env = "LATTICE_XDS_XDS_TLS_KEY",
        requires = "xds_tls_cert"
    )]
    pub xds_tls_key: Option<PathBuf>,
    /// The CA that issued --xds-tls-cert (PEM): injected sidecars verify the controller with
    /// it, as `bootstrap --xds-ca-file` does (`--xds-tls-ca` is its old name).
    #[arg(
        help_heading = "xDS TLS and authentication",
        long,
        alias = "xds-tls-ca",
        env = "LATTICE_XDS_XDS_CA_FILE",
        requires = "xds_tls_cert"
    )]
    pub xds_ca_file: Option<PathBuf>,
    /// Serve ADS over TLS with a certificate the controller makes for this name from its CA
    /// (the Secret --webhook-ca-secret) and renews every --webhook-renew-every; needs
    /// --kubernetes. Repeatable: the Service's names.
    #[arg(
        help_heading = "xDS TLS and authentication",
        long = "xds-tls-host",
        env = "LATTICE_XDS_XDS_TLS_HOST",
        value_delimiter = ',',
        conflicts_with = "xds_tls_cert"
    )]
    pub xds_tls_hosts: Vec<String>,
    /// Keep a ConfigMap of this name in --lease-namespace holding the CA of the ADS certificate
    /// (key ca.crt; no key material), for injectors other than the controller's webhook
    /// (the chart's Kyverno policy) to give sidecars.
    #[arg(
        help_heading = "xDS TLS and authentication",
        long = "xds-ca-configmap",
        env = "LATTICE_XDS_XDS_CA_CONFIGMAP"
    )]
    pub xds_ca_config_map: Option<String>,
    /// Address of the admin server: /healthz, /readyz, /metrics, /debug/* and the status API
    /// (proxy-status). It shows every proxy's configuration: keep it on loopback and reach it
    /// with `kubectl port-forward`.
    #[arg(help_heading = "Admin", 
        long,
        env = "LATTICE_XDS_ADMIN_LISTEN",
        default_value_t = defaults::ADMIN_LISTEN
    )]
    pub admin_listen: SocketAddr,
    /// Another address serving /healthz, /readyz and /metrics only: for the kubelet's probes
    /// and Prometheus.
    #[arg(help_heading = "Admin", long, env = "LATTICE_XDS_PROBE_LISTEN")]
    pub probe_listen: Option<SocketAddr>,
    /// Domain whose hosts that no route names are forwarded by DNS (services of other
    /// clusters). Repeatable.
    #[arg(
        help_heading = "Destinations",
        long = "domain",
        env = "LATTICE_XDS_DOMAIN",
        value_delimiter = ','
    )]
    pub domains: Vec<String>,
    /// Port of the sidecar's egress listener (where iptables redirects Lattice traffic).
    #[arg(help_heading = "The sidecar's egress", long, env = "LATTICE_XDS_EGRESS_PORT", default_value_t = defaults::EGRESS_PORT)]
    pub egress_port: u16,
    /// Addresses the egress listener binds. Repeatable.
    #[arg(help_heading = "The sidecar's egress", long = "egress-address", env = "LATTICE_XDS_EGRESS_ADDRESS", value_delimiter = ',', default_values_t = [IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])])]
    pub egress_addresses: Vec<IpAddr>,
    /// Whether the egress listener reads each connection's first bytes to tell HTTP from the
    /// rest: TLS (Lattice TLS passthrough listeners) and any other protocol then pass through
    /// untouched. `false` takes HTTP alone and resets anything else, for pods that make only
    /// HTTP calls (docs/benchmarks.md gives what the inspection costs).
    #[arg(help_heading = "The sidecar's egress", 
        long,
        env = "LATTICE_XDS_PROTOCOL_INSPECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub protocol_inspection: bool,
    /// Whether sidecars on incremental (Delta) ADS fetch each host's virtual host when their
    /// pod first calls it (VHDS with Envoy's on_demand filter), and hold only those; a request
    /// waits for its host's virtual host, then proceeds. State-of-the-world streams always get
    /// every destination.
    #[arg(help_heading = "The sidecar's egress", 
        long,
        env = "LATTICE_XDS_ON_DEMAND_HOSTS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub on_demand_hosts: bool,
    /// How requests are signed: ext-proc (the signer sidecar over gRPC), lua (the signer's
    /// HTTP endpoint), native (Envoy's aws_request_signing filter) or none.
    #[arg(help_heading = "Signing", 
        long,
        env = "LATTICE_XDS_SIGNING",
        default_value = "ext-proc",
        ignore_case = true,
        value_parser = one_of::<SigningMode>(SigningMode::ALL.map(SigningMode::as_str))
    )]
    pub signing: SigningMode,
    /// SigV4 region; by default the signer's own AWS_REGION.
    #[arg(help_heading = "Signing", long, env = "LATTICE_XDS_REGION")]
    pub region: Option<String>,
    /// Signature algorithm: sigv4, or sigv4a (signs for --region-set instead of one region).
    #[arg(help_heading = "Signing", 
        long,
        env = "LATTICE_XDS_SIGNING_ALGORITHM",
        default_value = "sigv4",
        ignore_case = true,
        value_parser = one_of::<SigningAlgorithm>(SigningAlgorithm::ALL.map(SigningAlgorithm::as_str))
    )]
    pub signing_algorithm: SigningAlgorithm,
    /// SigV4A region set, such as `*` or `us-east-1,us-west-2`.
    #[arg(
        help_heading = "Signing",
        long,
        env = "LATTICE_XDS_REGION_SET",
        default_value = "*"
    )]
    pub region_set: String,
    /// The signer sidecar's ext_proc gRPC address.
    #[arg(help_heading = "Signing", 
        long,
        env = "LATTICE_XDS_SIGNER_GRPC_ADDRESS",
        default_value_t = defaults::SIGNER_GRPC
    )]
    pub signer_grpc_address: SocketAddr,
    /// The signer sidecar's HTTP address (Lua mode).
    #[arg(help_heading = "Signing", 
        long,
        env = "LATTICE_XDS_SIGNER_HTTP_ADDRESS",
        default_value_t = defaults::SIGNER_HTTP
    )]
    pub signer_http_address: SocketAddr,
    /// Envoy reaches the signer's ext_proc on this Unix socket instead (the signer's
    /// --grpc-socket; it serves Envoy's uid only). Injected pods share the socket's directory.
    #[arg(help_heading = "Signing", long, env = "LATTICE_XDS_SIGNER_GRPC_SOCKET")]
    pub signer_grpc_socket: Option<String>,
    /// Envoy reaches the signer's HTTP endpoint (Lua mode) on this Unix socket instead (the
    /// signer's --http-socket).
    #[arg(help_heading = "Signing", long, env = "LATTICE_XDS_SIGNER_HTTP_SOCKET")]
    pub signer_http_socket: Option<String>,
    /// Pin a destination host to an address, like curl's --resolve; TLS still checks the host
    /// name. Repeatable; a host given more than once gets every address, balanced and set aside
    /// one by one as it fails (see --eject-after).
    #[arg(help_heading = "Destinations", long = "resolve", env = "LATTICE_XDS_RESOLVE", value_delimiter = ',', value_parser = parse_resolve)]
    pub resolve: Vec<(String, SocketAddr)>,
    /// PEM file of CA certificates that custom-domain hosts are verified against. Repeatable.
    #[arg(
        help_heading = "Trust",
        long = "ca-file",
        env = "LATTICE_XDS_CA_FILE",
        value_delimiter = ','
    )]
    pub ca_files: Vec<PathBuf>,
    /// The system CA bundle inside the Envoy container, trusted for Lattice-assigned names.
    #[arg(help_heading = "Trust", long, env = "LATTICE_XDS_SYSTEM_CA_FILE", default_value = DEFAULT_SYSTEM_CA_FILE)]
    pub system_ca_file: String,
    /// An ACM PCA certificate authority whose certificate custom-domain hosts are verified
    /// against, fetched by the controller and refreshed (the region is the ARN's). Repeatable.
    #[arg(
        help_heading = "Trust",
        long = "ca-arn",
        env = "LATTICE_XDS_CA_ARN",
        value_delimiter = ','
    )]
    pub ca_arns: Vec<CaArn>,
    /// How often CA certificates are fetched again from ACM PCA (for example 30s, 5m, 1h).
    #[arg(help_heading = "Trust", long, env = "LATTICE_XDS_TRUST_REFRESH", default_value = "5m", value_parser = super::duration)]
    pub trust_refresh: Duration,
    /// AWS endpoint for ACM PCA and the VPC Lattice API (a VPC endpoint, or a local emulator in
    /// tests); by default the SDK's own, which also honours AWS_ENDPOINT_URL.
    #[arg(
        help_heading = "Destinations",
        long,
        env = "LATTICE_XDS_AWS_ENDPOINT_URL"
    )]
    pub aws_endpoint_url: Option<String>,
    /// The service networks whose services become destinations.
    #[command(flatten, next_help_heading = "Destinations")]
    pub service_networks: super::ServiceNetworkArgs,
    /// How often the VPC Lattice API is polled, give or take a tenth (at least 1s). A failed
    /// poll keeps every service discovered before and is retried sooner, backing off.
    #[arg(help_heading = "Destinations", long, env = "LATTICE_XDS_DISCOVERY_INTERVAL", default_value = "30s", value_parser = super::duration)]
    pub discovery_interval: Duration,
    /// A host that no route, discovered service or --domain names: `forward` signs it and sends
    /// it over HTTPS on 443, its certificate checked against the host and trusted if it chains
    /// to a private CA or to the system roots (the private CAs joined with --system-ca-file as
    /// the controller reads it); `deny` answers the sidecar's own 404. Everything the redirect
    /// captures is a VPC Lattice address, so an unknown host is a Lattice service too.
    #[arg(help_heading = "Destinations", long, env = "LATTICE_XDS_UNKNOWN_HOSTS", value_enum, ignore_case = true, default_value_t = UnknownHostsMode::Forward)]
    pub unknown_hosts: UnknownHostsMode,
    /// Also trust the system roots (read from --system-ca-file on the controller) for
    /// custom-domain hosts, for upstreams that mix public and private certificates.
    #[arg(help_heading = "Trust", long, env = "LATTICE_XDS_TRUST_SYSTEM_ROOTS")]
    pub trust_system_roots: bool,
    /// Serve the sidecar injection webhook (HTTPS) on this address; needs --kubernetes.
    #[arg(help_heading = "Injection", long, env = "LATTICE_XDS_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<SocketAddr>,
    /// Directory with the webhook's tls.crt and tls.key, kept up to date by cert-manager
    /// (which also sets the caBundle). Without it the controller makes and rotates the
    /// certificate itself, from a CA in the Secret --webhook-ca-secret.
    #[arg(help_heading = "Injection", long, env = "LATTICE_XDS_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// A DNS name or IP address the webhook is called at (the Service's names). Repeatable.
    #[arg(
        help_heading = "Injection",
        long = "webhook-host",
        env = "LATTICE_XDS_WEBHOOK_HOST",
        value_delimiter = ','
    )]
    pub webhook_hosts: Vec<String>,
    /// Secret (in --lease-namespace) holding the webhook CA the controller made.
    #[arg(
        help_heading = "Injection",
        long,
        env = "LATTICE_XDS_WEBHOOK_CA_SECRET",
        default_value = "lattice-xds-webhook-ca"
    )]
    pub webhook_ca_secret: String,
    /// How often the controller replaces the webhook's serving certificate (each is valid for
    /// seven periods).
    #[arg(help_heading = "Injection", long, env = "LATTICE_XDS_WEBHOOK_RENEW_EVERY", default_value = "24h", value_parser = super::duration)]
    pub webhook_renew_every: Duration,
    /// MutatingWebhookConfiguration whose caBundle the leader keeps equal to that CA.
    #[arg(
        help_heading = "Injection",
        long,
        env = "LATTICE_XDS_WEBHOOK_CONFIGURATION",
        default_value = "lattice-xds"
    )]
    pub webhook_configuration: String,
    /// Image of the injected redirect, bootstrap and signer containers.
    #[arg(help_heading = "Injection", long, env = "LATTICE_XDS_INJECT_IMAGE", default_value = concat!("lattice-xds:", env!("CARGO_PKG_VERSION")))]
    pub inject_image: String,
    /// Image of the injected Envoy.
    #[arg(
        help_heading = "Injection",
        long,
        env = "LATTICE_XDS_INJECT_ENVOY_IMAGE",
        default_value = "envoyproxy/envoy:v1.40.0"
    )]
    pub inject_envoy_image: String,
    /// The controller's ADS address as injected sidecars reach it (its Service).
    #[arg(help_heading = "Injection", 
        long,
        env = "LATTICE_XDS_INJECT_XDS_ADDRESS",
        default_value_t = format!("lattice-xds.lattice-xds.svc:{}", defaults::XDS_PORT)
    )]
    pub inject_xds_address: String,
    /// The uid and gid injected Envoys run as (exempt from the redirect).
    #[arg(help_heading = "Injection", long, env = "LATTICE_XDS_INJECT_PROXY_UID", default_value_t = defaults::PROXY_UID)]
    pub inject_proxy_uid: u32,
    /// The injected containers' resources, as JSON: `{"envoy": R, "signer": R, "init": R}`,
    /// each R a container's `resources` (`requests`, `limits`); `init` is the redirect and
    /// bootstrap init containers.
    #[arg(help_heading = "Injection", long, env = "LATTICE_XDS_INJECT_RESOURCES", default_value_t = SidecarResources::default())]
    pub inject_resources: SidecarResources,
    /// Port of the injected signer's probe listener.
    #[arg(
        help_heading = "Injection",
        long,
        env = "LATTICE_XDS_SIGNER_PROBE_PORT",
        default_value_t = 9003
    )]
    pub signer_probe_port: u16,
    /// Worker threads of each injected Envoy (its `--concurrency`); without a number Envoy
    /// would start one per CPU of the node, each with its own connections and memory.
    #[arg(help_heading = "Injection", long, env = "LATTICE_XDS_INJECT_ENVOY_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub inject_envoy_concurrency: u32,
    /// Log level of each injected Envoy.
    #[arg(
        help_heading = "Injection",
        long,
        env = "LATTICE_XDS_INJECT_ENVOY_LOG_LEVEL",
        value_enum,
        ignore_case = true,
        default_value_t
    )]
    pub inject_envoy_log_level: EnvoyLogLevel,
    /// Log lines of each injected signer and Envoy as `text` or `json` (one object per line,
    /// as `--log-format json` writes the controller's).
    #[arg(
        help_heading = "Injection",
        long,
        env = "LATTICE_XDS_INJECT_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value_t
    )]
    pub inject_log_format: LogFormat,
    /// A DNS server (UDP, IP:PORT) the sidecars ask for destination and fallback hosts instead
    /// of the system's resolver.
    #[arg(help_heading = "Destinations", long, env = "LATTICE_XDS_DNS_RESOLVER")]
    pub dns_resolver: Option<SocketAddr>,
    /// An OpenTelemetry collector's OTLP/gRPC address (HOST:PORT, in clear text): every
    /// sidecar sends it a span per request leaving its pod (the destination, its route, the
    /// signing mode, the VPC Lattice address and any error Lattice gave) and one per attempt,
    /// continuing the application's W3C `traceparent`. Off unless given.
    #[arg(help_heading = "The sidecar's egress", long, env = "LATTICE_XDS_TRACE_COLLECTOR", value_parser = parse_collector)]
    pub trace_collector: Option<String>,
    /// The share of requests, from 0 to 1, that start a trace when they carry none; one whose
    /// `traceparent` says it is sampled is always traced.
    #[arg(help_heading = "The sidecar's egress", long, env = "LATTICE_XDS_TRACE_SAMPLING", default_value_t = 0.01, value_parser = parse_share)]
    pub trace_sampling: f64,
    /// Request stats per destination in every sidecar (`vhost.<host>.route.destination.*`).
    /// They cost each sidecar about 2 KB per destination; `false` drops them on large meshes.
    #[arg(help_heading = "The sidecar's egress", 
        long,
        env = "LATTICE_XDS_DESTINATION_STATS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub destination_stats: bool,
    /// An access log line per request in every sidecar, JSON on Envoy's stdout: time, method,
    /// authority, path, response code, flags and details, duration, upstream host, the destination's
    /// route, the signing mode, and on a 403 Lattice's error type (`AccessDeniedException`,
    /// `InvalidSignatureException`, ...).
    #[arg(help_heading = "The sidecar's egress", 
        long,
        env = "LATTICE_XDS_ACCESS_LOG",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub access_log: bool,
    /// Whether the access log's path keeps the request's query string; `false` leaves it out
    /// (a query may carry tokens or personal data).
    #[arg(help_heading = "The sidecar's egress", 
        long,
        env = "LATTICE_XDS_ACCESS_LOG_QUERY",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub access_log_query: bool,
    /// Serve a route on a Gateway only once the VPC Lattice controller has accepted it there
    /// (the route's status.parents says Accepted=True). On by default with --kubernetes; off by
    /// default with --manifests, where no controller writes status.
    #[arg(help_heading = "Where routes come from", 
        long,
        env = "LATTICE_XDS_ACCEPTED_ROUTES_ONLY",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub accepted_routes_only: Option<bool>,
    /// How long a caller's request through the sidecar may take, retries included, when its
    /// route sets no `timeouts.request` (discovered services, unknown hosts too); `0s`: no limit.
    #[arg(help_heading = "Calls and limits", long, env = "LATTICE_XDS_REQUEST_TIMEOUT", default_value = "15s", value_parser = super::duration)]
    pub request_timeout: Duration,
    /// How long one attempt may take when the route sets no `timeouts.backendRequest`; `0s`:
    /// only the request's limit.
    #[arg(help_heading = "Calls and limits", long, env = "LATTICE_XDS_ATTEMPT_TIMEOUT", default_value = "0s", value_parser = super::duration)]
    pub attempt_timeout: Duration,
    /// How many times the sidecar tries an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE)
    /// again after a connection failure, a reset before any response, or a 503, with a
    /// jittered backoff. The signed headers are sent again, so requests whose limit exceeds
    /// four minutes (or that have none) are not retried: VPC Lattice accepts a signature for five.
    #[arg(
        help_heading = "Calls and limits",
        long,
        env = "LATTICE_XDS_RETRIES",
        default_value_t = 1
    )]
    pub retries: u32,
    /// Connections a sidecar keeps open at once through each of its clusters (a shared cluster
    /// carries every destination of its trust class); past the limit a request is answered
    /// 503 at once (`UO` in the access log).
    #[arg(help_heading = "Calls and limits", long, env = "LATTICE_XDS_MAX_CONNECTIONS", default_value_t = ClusterLimits::default().connections)]
    pub max_connections: u32,
    /// Requests a sidecar lets wait for a connection, per cluster.
    #[arg(help_heading = "Calls and limits", long, env = "LATTICE_XDS_MAX_PENDING_REQUESTS", default_value_t = ClusterLimits::default().pending_requests)]
    pub max_pending_requests: u32,
    /// Requests (and, apart, retries) a sidecar has in flight at once, per cluster.
    #[arg(help_heading = "Calls and limits", long, env = "LATTICE_XDS_MAX_REQUESTS", default_value_t = ClusterLimits::default().requests)]
    pub max_requests: u32,
    /// 5xx answers or failed connections in a row after which a sidecar sets an address of a
    /// cluster aside (at most half of a cluster's addresses at once); 0: never.
    #[arg(help_heading = "Calls and limits", long, env = "LATTICE_XDS_EJECT_AFTER", default_value_t = ClusterLimits::default().eject_after)]
    pub eject_after: u32,
    /// How long an address is first set aside; each time again, that much longer.
    #[arg(help_heading = "Calls and limits", long, env = "LATTICE_XDS_EJECTION_TIME", default_value = "30s", value_parser = super::duration)]
    pub ejection_time: Duration,
    /// Milliseconds that input changes settle before a rebuild.
    #[arg(
        help_heading = "Where routes come from",
        long,
        env = "LATTICE_XDS_DEBOUNCE_MS",
        default_value_t = 100
    )]
    pub debounce_ms: u64,
    /// Resource names one ADS stream may subscribe to, over every type; more ends the stream
    /// with RESOURCE_EXHAUSTED.
    #[arg(
        help_heading = "xDS server",
        long,
        env = "LATTICE_XDS_XDS_MAX_SUBSCRIPTIONS",
        default_value_t = 1024
    )]
    pub xds_max_subscriptions: usize,
    /// Bytes of one resource name an ADS stream subscribes to (or of a name or version a
    /// reconnecting Envoy claims to hold); a longer one ends the stream with RESOURCE_EXHAUSTED.
    #[arg(help_heading = "xDS server", long, env = "LATTICE_XDS_XDS_MAX_NAME_BYTES", default_value_t = Limits::default().max_name_bytes)]
    pub xds_max_name_bytes: usize,
    /// Bytes of every resource name one ADS stream holds, over every type; more ends the stream
    /// with RESOURCE_EXHAUSTED.
    #[arg(help_heading = "xDS server", long, env = "LATTICE_XDS_XDS_MAX_NAMES_BYTES", default_value_t = Limits::default().max_names_bytes)]
    pub xds_max_names_bytes: usize,
    /// ADS connections open at once; more wait in the listen backlog until one closes.
    #[arg(
        help_heading = "xDS server",
        long,
        env = "LATTICE_XDS_XDS_MAX_CONNECTIONS",
        default_value_t = 16384
    )]
    pub xds_max_connections: usize,
    /// Streams one ADS connection may have open at once (Envoy opens one).
    #[arg(
        help_heading = "xDS server",
        long,
        env = "LATTICE_XDS_XDS_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 16
    )]
    pub xds_max_streams_per_connection: u32,
    /// How long a new connection to any of the controller's listeners (ADS, the webhook, admin,
    /// probes) may take to finish its TLS handshake and send its first request bytes; a
    /// connection that takes longer is closed.
    #[arg(help_heading = "xDS server", long, env = "LATTICE_XDS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = super::duration)]
    pub handshake_timeout: Duration,
    /// Bytes of a node id; a longer one ends the stream with RESOURCE_EXHAUSTED.
    #[arg(
        help_heading = "xDS server",
        long,
        env = "LATTICE_XDS_XDS_MAX_NODE_ID_BYTES",
        default_value_t = 512
    )]
    pub xds_max_node_id_bytes: usize,
    /// Bytes of a node's metadata (encoded); more ends the stream with RESOURCE_EXHAUSTED.
    #[arg(
        help_heading = "xDS server",
        long,
        env = "LATTICE_XDS_XDS_MAX_NODE_METADATA_BYTES",
        default_value_t = 16384
    )]
    pub xds_max_node_metadata_bytes: usize,
    /// Bytes of one ADS request; a larger one ends the stream with RESOURCE_EXHAUSTED.
    #[arg(help_heading = "xDS server", long, env = "LATTICE_XDS_XDS_MAX_REQUEST_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub xds_max_request_bytes: usize,
    /// Bytes of a NACK's error detail that are logged and shown in proxy status; the rest is cut.
    #[arg(
        help_heading = "xDS server",
        long,
        env = "LATTICE_XDS_XDS_MAX_ERROR_DETAIL_BYTES",
        default_value_t = 2048
    )]
    pub xds_max_error_detail_bytes: usize,
    /// How long a proxy may leave a response unread before its stream is closed with
    /// UNAVAILABLE (it holds one response at most meanwhile).
    #[arg(help_heading = "xDS server", long, env = "LATTICE_XDS_XDS_WRITE_TIMEOUT", default_value = "30s", value_parser = super::duration)]
    pub xds_write_timeout: Duration,
}

fn parse_collector(value: &str) -> Result<String, String> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("{value:?} is not HOST:PORT"))?;
    port.parse::<u16>()
        .ok()
        .filter(|port| *port > 0 && !host.is_empty())
        .map(|_| value.to_string())
        .ok_or_else(|| format!("{value:?} is not HOST:PORT"))
}

fn parse_share(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|share| (0.0..=1.0).contains(share))
        .ok_or_else(|| format!("{value:?} is not a number from 0 to 1"))
}

fn parse_resolve(value: &str) -> Result<(String, SocketAddr), String> {
    let (host, address) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} is not HOST=IP:PORT"))?;
    let address = address
        .parse()
        .map_err(|_| format!("{address:?} is not IP:PORT (IPv6 in brackets)"))?;
    Ok((host.to_ascii_lowercase(), address))
}

impl ControllerArgs {
    /// The controller's configuration; reads the CA files, naming any that cannot be used.
    pub fn into_config(self) -> anyhow::Result<ControllerConfig> {
        let mut pem = String::new();
        for path in &self.ca_files {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read CA file {}", path.display()))?;
            let certificates = crate::trust::validate::certificates_only(&text)
                .with_context(|| format!("refusing CA file {}", path.display()))?;
            pem.push_str(&certificates);
        }
        let mut sources: Vec<String> = self
            .ca_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if self.trust_system_roots {
            let roots = system_roots(&self.system_ca_file).map_err(|error| {
                anyhow::anyhow!(
                    "--trust-system-roots: {}",
                    crate::logging::causes(error.as_ref())
                )
            })?;
            pem.push_str(&roots);
            sources.push(self.system_ca_file.clone());
        }
        let unknown_hosts = match self.unknown_hosts {
            UnknownHostsMode::Forward => UnknownHosts::Forward,
            UnknownHostsMode::Deny => UnknownHosts::Deny,
        };
        // Unknown hosts trust the private CAs and the system roots; without a private CA, the
        // system roots of the Envoy container alone, so nothing need be read here.
        let private_cas = !self.ca_files.is_empty() || !self.ca_arns.is_empty();
        let system_roots = match (unknown_hosts, private_cas && !self.trust_system_roots) {
            (UnknownHosts::Forward, true) => match system_roots(&self.system_ca_file) {
                Ok(roots) => Some(Arc::from(roots)),
                Err(error) => {
                    tracing::warn!(
                        error = crate::logging::causes(error.as_ref()),
                        "unknown hosts are trusted through the private CAs alone: the system roots cannot be read on the controller"
                    );
                    None
                }
            },
            _ => None,
        };
        let mut bundles = BTreeMap::new();
        if !pem.is_empty() {
            let name = PRIVATE_CA_BUNDLE.to_string();
            bundles.insert(name.clone(), TrustBundle { name, pem, sources });
        }
        anyhow::ensure!(
            self.discovery_interval >= Duration::from_secs(1),
            "--discovery-interval must be at least 1s"
        );
        let discovery = self.service_networks.clone().settings(
            self.discovery_interval,
            self.region.clone(),
            self.aws_endpoint_url.clone(),
        );
        let settings = Settings {
            fallback_domains: self
                .domains
                .iter()
                .map(|d| d.trim_start_matches("*.").to_ascii_lowercase())
                .collect(),
            pinned: self.resolve.into_iter().fold(
                BTreeMap::new(),
                |mut pinned, (host, address)| {
                    pinned.entry(host).or_insert_with(Vec::new).push(address);
                    pinned
                },
            ),
            bundles,
            signing: Signing {
                mode: self.signing,
                region: self.region,
                signer_grpc: match self.signer_grpc_socket {
                    Some(path) => SignerAddress::Unix(path),
                    None => SignerAddress::Tcp(self.signer_grpc_address),
                },
                signer_http: match self.signer_http_socket {
                    Some(path) => SignerAddress::Unix(path),
                    None => SignerAddress::Tcp(self.signer_http_address),
                },
                algorithm: self.signing_algorithm,
                region_set: self.region_set,
                ..Signing::default()
            },
            egress: Egress {
                port: self.egress_port,
                addresses: self.egress_addresses,
                inspect: self.protocol_inspection,
                on_demand: self.on_demand_hosts,
            },
            system_ca_file: self.system_ca_file,
            gateway_class: self.gateway_class,
            dns_resolver: self.dns_resolver,
            tracing: self.trace_collector.map(|collector| Tracing {
                collector,
                // Rounded to the nearest in a million: 0.01 is 10,000.
                sampled_per_million: (self.trace_sampling * 1_000_000.0).round() as u32,
            }),
            destination_stats: self.destination_stats,
            access_log: self.access_log,
            access_log_query: self.access_log_query,
            accepted_routes_only: self.accepted_routes_only.unwrap_or(self.kubernetes),
            unknown_hosts,
            calls: Calls {
                request_timeout: Calls::limit(self.request_timeout),
                attempt_timeout: Calls::limit(self.attempt_timeout),
                retries: self.retries,
                retry: None,
            },
            limits: ClusterLimits {
                connections: self.max_connections,
                pending_requests: self.max_pending_requests,
                requests: self.max_requests,
                eject_after: self.eject_after,
                ejection_time: self.ejection_time,
            },
            system_roots,
        };
        anyhow::ensure!(
            self.kubeconfig.is_none() || self.kubernetes,
            "--kubeconfig needs --kubernetes (the manifest directory needs no credentials)"
        );
        let lease_namespace = self.lease_namespace.unwrap_or_else(default_lease_namespace);
        let connections = ConnectionLimits {
            first_bytes: self.handshake_timeout,
            ..ConnectionLimits::SMALL
        };
        anyhow::ensure!(
            self.xds_tls_cert.is_none()
                || self.xds_ca_file.is_some()
                || self.webhook_listen.is_none(),
            "--webhook-listen with --xds-tls-cert needs --xds-ca-file: injected sidecars verify the controller with that CA"
        );
        let xds_tls = match (self.xds_tls_cert, self.xds_tls_key) {
            (Some(certificate), Some(key)) => Some(CertificateSource::Pair {
                certificate,
                key,
                ca: self.xds_ca_file,
            }),
            _ if !self.xds_tls_hosts.is_empty() => {
                anyhow::ensure!(
                    self.kubernetes,
                    "--xds-tls-host needs --kubernetes: the controller's CA is kept in a Secret (use --xds-tls-cert and --xds-tls-key otherwise)"
                );
                Some(CertificateSource::Managed {
                    namespace: lease_namespace.clone(),
                    secret: self.webhook_ca_secret.clone(),
                    hosts: self.xds_tls_hosts,
                    configuration: None,
                    renew_every: self.webhook_renew_every,
                })
            }
            _ => None,
        };
        let xds_auth = match self.xds_auth {
            XdsAuthMode::None => XdsAuth::None,
            XdsAuthMode::Kubernetes => {
                anyhow::ensure!(
                    self.kubernetes,
                    "--xds-auth kubernetes needs --kubernetes: tokens are checked with the Kubernetes API"
                );
                anyhow::ensure!(
                    xds_tls.is_some(),
                    "--xds-auth kubernetes needs xDS over TLS (--xds-tls-host, or --xds-tls-cert and --xds-tls-key): tokens are never sent in plain text"
                );
                XdsAuth::Kubernetes {
                    audience: self.xds_audience,
                }
            }
        };
        let webhook = match self.webhook_listen {
            None => None,
            Some(listen) => {
                anyhow::ensure!(
                    self.kubernetes,
                    "--webhook-listen needs --kubernetes: injection happens in a cluster"
                );
                let certificate = match self.webhook_cert_dir {
                    Some(dir) => CertificateSource::Files(dir),
                    None => {
                        anyhow::ensure!(
                            !self.webhook_hosts.is_empty(),
                            "--webhook-listen without --webhook-cert-dir needs --webhook-host: the names the API server calls the webhook at (for example lattice-xds.lattice-xds.svc)"
                        );
                        CertificateSource::Managed {
                            namespace: lease_namespace.clone(),
                            secret: self.webhook_ca_secret,
                            hosts: self.webhook_hosts,
                            configuration: Some(self.webhook_configuration),
                            renew_every: self.webhook_renew_every,
                        }
                    }
                };
                Some(WebhookConfig {
                    listen,
                    certificate,
                    connections,
                    inject: InjectConfig {
                        image: self.inject_image,
                        envoy_image: self.inject_envoy_image,
                        xds_address: self.inject_xds_address,
                        egress_port: settings.egress.port,
                        proxy_uid: self.inject_proxy_uid,
                        signing: settings.signing.mode,
                        region: settings.signing.region.clone(),
                        algorithm: settings.signing.algorithm,
                        region_set: settings.signing.region_set.clone(),
                        signer_probe_port: self.signer_probe_port,
                        resources: self.inject_resources,
                        envoy: EnvoyProcess {
                            concurrency: self.inject_envoy_concurrency,
                            log_level: self.inject_envoy_log_level,
                            // The kubelet connects to the pod's address.
                            egress_probe: settings
                                .egress
                                .addresses
                                .iter()
                                .any(IpAddr::is_unspecified),
                        },
                        log_format: self.inject_log_format,
                        controller_namespace: lease_namespace.clone(),
                        signer_sockets: SignerSockets {
                            grpc: unix_path(&settings.signing.signer_grpc),
                            http: unix_path(&settings.signing.signer_http),
                        },
                        xds_token_audience: match &xds_auth {
                            XdsAuth::Kubernetes { audience } => Some(audience.clone()),
                            XdsAuth::None => None,
                        },
                    },
                })
            }
        };
        let source = match self.manifests {
            Some(dir) => Source::Manifests(dir),
            None => Source::Kubernetes(KubernetesConfig {
                kubeconfig: self.kubeconfig,
                instance: self.instance.unwrap_or_else(default_instance),
                lease: LeaseConfig {
                    namespace: lease_namespace,
                    name: self.lease_name,
                    duration: self.lease_duration,
                },
                ca_bundle_namespaces: self.ca_bundle_namespaces,
            }),
        };
        anyhow::ensure!(
            self.xds_ca_config_map.is_none() || (self.kubernetes && xds_tls.is_some()),
            "--xds-ca-configmap needs --kubernetes and xDS over TLS: it publishes the CA of the ADS certificate"
        );
        Ok(ControllerConfig {
            source,
            webhook,
            xds_ca_config_map: self.xds_ca_config_map,
            xds_tls,
            xds_auth,
            xds_listen: self.xds_listen,
            admin_listen: self.admin_listen,
            probe_listen: self.probe_listen,
            settings,
            trust: TrustSettings {
                cas: self.ca_arns,
                refresh: self.trust_refresh,
                endpoint_url: self.aws_endpoint_url,
            },
            discovery,
            debounce: Duration::from_millis(self.debounce_ms),
            xds_connections: ConnectionLimits {
                max_connections: self.xds_max_connections,
                max_streams: self.xds_max_streams_per_connection,
                first_bytes: self.handshake_timeout,
            },
            connections,
            xds_limits: Limits {
                max_subscriptions: self.xds_max_subscriptions,
                max_name_bytes: self.xds_max_name_bytes,
                max_names_bytes: self.xds_max_names_bytes,
                max_node_id_bytes: self.xds_max_node_id_bytes,
                max_node_metadata_bytes: self.xds_max_node_metadata_bytes,
                max_request_bytes: self.xds_max_request_bytes,
                max_error_detail_bytes: self.xds_max_error_detail_bytes,
                write_timeout: self.xds_write_timeout,
            },
        })
    }
}

/// The path of a signer address that is a Unix socket.
fn unix_path(address: &SignerAddress) -> Option<String> {
    match address {
        SignerAddress::Unix(path) => Some(path.clone()),
        SignerAddress::Tcp(_) => None,
    }
}

/// POD_NAME (set from the downward API), else the host name.
/// The certificates of the system CA bundle at `path`, as the controller reads it.
fn system_roots(path: &str) -> anyhow::Result<String> {
    let roots = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the system CA file {path}"))?;
    crate::trust::validate::certificates_only(&roots)
        .with_context(|| format!("refusing the system CA file {path}"))
}

fn default_instance() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("lattice-xds-{}", std::process::id()))
}

/// The namespace of the pod's service account in a cluster, else `default`.
fn default_lease_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|namespace| namespace.trim().to_string())
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| "default".to_string())
}
