//! Command-line interface. Every flag can also be set through `LATTICE_XDS_<FLAG>`; the flags
//! (here, in `cli/controller.rs` for the controller, and in `signer/args.rs` for the signer,
//! which `lattice-xds-signer` shares) are the only code that reads the environment, and they
//! hand typed configuration down. Their defaults come from `model::defaults`.

mod controller;

pub use controller::{ControllerArgs, XdsAuthMode};

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::bootstrap::{BootstrapConfig, XdsAddress, XdsProtocol};
use crate::model::defaults;
use crate::redirect::{Cidr, RedirectConfig};
use crate::signer::SignerArgs;

/// An xDS control plane for Envoy sidecars that call services through Amazon VPC Lattice.
#[derive(Debug, Parser)]
#[command(name = "lattice-xds", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, as in RUST_LOG (for example `info` or `lattice_xds=debug`).
    #[arg(long, global = true, env = "LATTICE_XDS_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch HTTPRoutes and serve Envoy configuration over ADS.
    Controller(Box<ControllerArgs>),
    /// Print the Envoy bootstrap (YAML) of a sidecar that follows the controller.
    Bootstrap(BootstrapArgs),
    /// Show what every connected Envoy was sent, accepted and rejected.
    ProxyStatus(ProxyStatusArgs),
    /// Sign the pod's outgoing requests with its AWS credentials (the sidecar Envoy calls it
    /// over ext_proc, or over HTTP in the Lua mode).
    Signer(SignerArgs),
    /// A local VPC Lattice data plane for development and tests (not a production component):
    /// TLS, SigV4 verification, auth policies, forwarding; optionally DNS and the Pod Identity
    /// agent.
    EmulateLattice(EmulateArgs),
    /// Evaluate IAM auth policies as VPC Lattice does (for testing a policy before applying it).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check that a controller is ready and serves xDS (what `helm test` runs).
    Check(CheckArgs),
    /// Load generators for the benchmarks.
    #[command(subcommand)]
    Loadtest(LoadtestCommand),
    /// Redirect the pod's connections to VPC Lattice to the sidecar's egress listener
    /// (iptables; run once by the injected init container, with NET_ADMIN).
    Redirect(RedirectArgs),
}

#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Directory of manifests (HTTPRoutes, Gateways, IAMAuthPolicies). Repeatable: one per
    /// emulated cluster.
    #[arg(long = "manifests", env = "LATTICE_XDS_MANIFESTS", required = true)]
    pub manifests: Vec<PathBuf>,
    /// YAML list of the callers the emulator knows (access key, secret, role session ARN,
    /// session tags, Pod Identity token).
    #[arg(long, env = "LATTICE_XDS_IDENTITIES")]
    pub identities: PathBuf,
    /// PEM certificate chain for the custom domains (issued by the private CA).
    #[arg(long, env = "LATTICE_XDS_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key of that certificate.
    #[arg(long, env = "LATTICE_XDS_TLS_KEY")]
    pub tls_key: PathBuf,
    /// HTTPS address of every service, as Lattice answers on one address per VPC.
    #[arg(long, env = "LATTICE_XDS_LISTEN", default_value = "127.0.0.1:443")]
    pub listen: SocketAddr,
    /// Where a route backend answers, NAME=URL or NAMESPACE/NAME=URL. Repeatable.
    #[arg(long = "backend", env = "LATTICE_XDS_BACKEND", value_parser = parse_pair)]
    pub backends: Vec<(String, String)>,
    /// The region signatures must be scoped to, and of the service ARNs.
    #[arg(long, env = "LATTICE_XDS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// The account of the service ARNs.
    #[arg(long, env = "LATTICE_XDS_ACCOUNT", default_value = "111122223333")]
    pub account: String,
    /// Answer DNS (UDP) for the served names on this address.
    #[arg(long, env = "LATTICE_XDS_DNS_LISTEN")]
    pub dns_listen: Option<SocketAddr>,
    /// The address DNS answers with.
    #[arg(long, env = "LATTICE_XDS_DNS_ANSWER", default_value = "127.0.0.1")]
    pub dns_answer: IpAddr,
    /// Serve the EKS Pod Identity agent's /v1/credentials for the known callers on this address.
    #[arg(long, env = "LATTICE_XDS_POD_IDENTITY_LISTEN")]
    pub pod_identity_listen: Option<SocketAddr>,
    /// How far x-amz-date may be from now.
    #[arg(long, env = "LATTICE_XDS_CLOCK_SKEW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub clock_skew: Duration,
}

impl From<EmulateArgs> for crate::emulator::EmulatorConfig {
    fn from(args: EmulateArgs) -> Self {
        Self {
            manifests: args.manifests,
            identities: args.identities,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            listen: args.listen,
            backends: args.backends.into_iter().collect(),
            region: args.region,
            account: args.account,
            dns_listen: args.dns_listen,
            dns_answer: args.dns_answer,
            pod_identity_listen: args.pod_identity_listen,
            clock_skew: args.clock_skew,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print `Allow` or `Deny` and the statement that decided; exit 0 for Allow, 1 for Deny,
    /// 2 for bad input.
    Check(PolicyCheckArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The service's policy: JSON, or an IAMAuthPolicy manifest.
    #[arg(long, env = "LATTICE_XDS_POLICY")]
    pub policy: PathBuf,
    /// The service network's policy (on the Gateway); both must allow.
    #[arg(long, env = "LATTICE_XDS_NETWORK_POLICY")]
    pub network_policy: Option<PathBuf>,
    /// The caller's ARN (for a pod, its role session: arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION),
    /// or `anonymous` for an unsigned request.
    #[arg(long, env = "LATTICE_XDS_PRINCIPAL")]
    pub principal: String,
    /// A session tag of the caller, KEY=VALUE (eks-cluster-name, kubernetes-namespace, …). Repeatable.
    #[arg(long = "tag", env = "LATTICE_XDS_TAG", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// The request's method.
    #[arg(long, env = "LATTICE_XDS_METHOD", default_value = "GET")]
    pub method: String,
    /// A request header, NAME=VALUE. Repeatable.
    #[arg(long = "header", env = "LATTICE_XDS_HEADER", value_parser = parse_pair)]
    pub headers: Vec<(String, String)>,
    /// A query parameter, NAME=VALUE. Repeatable.
    #[arg(long = "query", env = "LATTICE_XDS_QUERY", value_parser = parse_pair)]
    pub query: Vec<(String, String)>,
    /// The resource the call is for.
    #[arg(
        long,
        env = "LATTICE_XDS_RESOURCE",
        default_value = "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0/"
    )]
    pub resource: String,
}

impl From<PolicyCheckArgs> for crate::policy::check::CheckRequest {
    fn from(args: PolicyCheckArgs) -> Self {
        Self {
            policy: args.policy,
            network_policy: args.network_policy,
            principal: Some(args.principal).filter(|p| !p.eq_ignore_ascii_case("anonymous")),
            tags: args.tags.into_iter().collect(),
            method: args.method,
            headers: args.headers,
            query: args.query,
            resource: args.resource,
        }
    }
}

fn parse_pair(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{value:?} is not KEY=VALUE"))
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The controller's admin URL.
    #[arg(
        long,
        env = "LATTICE_XDS_ADMIN",
        default_value = "http://127.0.0.1:19000"
    )]
    pub admin: String,
    /// The controller's ADS address, HOST:PORT.
    #[arg(
        long,
        env = "LATTICE_XDS_XDS_ADDRESS",
        default_value = "127.0.0.1:18000"
    )]
    pub xds_address: String,
    /// How long each step may take.
    #[arg(long, env = "LATTICE_XDS_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Reach ADS over TLS, verifying the controller's certificate with this CA (PEM file).
    #[arg(
        long,
        env = "LATTICE_XDS_XDS_CA_FILE",
        conflicts_with = "xds_tls_unverified"
    )]
    pub xds_ca_file: Option<PathBuf>,
    /// Reach ADS over TLS without verifying the controller's certificate (the chart's
    /// `helm test`, which learns whether ADS answers and accepts its pod's token).
    #[arg(long, env = "LATTICE_XDS_XDS_TLS_UNVERIFIED")]
    pub xds_tls_unverified: bool,
    /// Authenticate the stream with this pod token file (a projected service account token for
    /// the controller's audience); the stream must then be served. Needs --node-id.
    #[arg(long, env = "LATTICE_XDS_XDS_TOKEN_FILE", requires = "node_id")]
    pub xds_token_file: Option<PathBuf>,
    /// The node id to ask as: with a token, the token's pod as `<pod>.<namespace>`.
    #[arg(long, env = "LATTICE_XDS_NODE_ID")]
    pub node_id: Option<String>,
}

impl CheckArgs {
    /// The check's configuration; reads the CA file, naming it when it cannot be read.
    pub fn into_config(self) -> anyhow::Result<crate::check::CheckConfig> {
        use crate::check::XdsTls;
        let xds_tls = match (&self.xds_ca_file, self.xds_tls_unverified) {
            (Some(path), _) => XdsTls::Verify(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the xDS CA file {}", path.display()))?,
            ),
            (None, true) => XdsTls::Unverified,
            (None, false) => XdsTls::Off,
        };
        let identity = match (&self.xds_token_file, self.node_id) {
            (Some(path), Some(node_id)) => {
                let token = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?;
                Some((token, node_id))
            }
            _ => None,
        };
        Ok(crate::check::CheckConfig {
            admin: self.admin.trim_end_matches('/').to_string(),
            xds_address: self.xds_address,
            xds_tls,
            identity,
            timeout: self.timeout,
        })
    }
}

#[derive(Debug, Args)]
pub struct RedirectArgs {
    /// The sidecar's egress listener port.
    #[arg(long, env = "LATTICE_XDS_EGRESS_PORT", default_value_t = defaults::EGRESS_PORT)]
    pub egress_port: u16,
    /// The uid Envoy runs as; its own connections to Lattice are not redirected.
    #[arg(long, env = "LATTICE_XDS_PROXY_UID", default_value_t = defaults::PROXY_UID)]
    pub proxy_uid: u32,
    /// The gid Envoy runs as; also exempt.
    #[arg(long, env = "LATTICE_XDS_PROXY_GID", default_value_t = defaults::PROXY_UID)]
    pub proxy_gid: u32,
    /// Address ranges to capture, IPv4 or IPv6. Repeatable.
    #[arg(long = "range", env = "LATTICE_XDS_RANGE", value_delimiter = ',', default_values = [crate::redirect::LATTICE_IPV4, crate::redirect::LATTICE_IPV6])]
    pub ranges: Vec<Cidr>,
    /// Print the rules (iptables-restore format, IPv4 then IPv6) instead of installing them.
    #[arg(long, env = "LATTICE_XDS_PRINT")]
    pub print: bool,
}

impl From<RedirectArgs> for RedirectConfig {
    fn from(args: RedirectArgs) -> Self {
        Self {
            egress_port: args.egress_port,
            proxy_uid: args.proxy_uid,
            proxy_gid: args.proxy_gid,
            ranges: args.ranges,
        }
    }
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The sidecar's node id (unique per pod, e.g. the pod name).
    #[arg(long, env = "LATTICE_XDS_NODE_ID")]
    pub node_id: String,
    /// The sidecar's service cluster (e.g. the workload name).
    #[arg(long, env = "LATTICE_XDS_CLUSTER")]
    pub cluster: String,
    /// The controller's ADS address, HOST:PORT.
    #[arg(long, env = "LATTICE_XDS_XDS_ADDRESS")]
    pub xds_address: XdsAddress,
    /// The pod's namespace, sent as node metadata.
    #[arg(long, env = "LATTICE_XDS_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Port of Envoy's admin interface (always on 127.0.0.1).
    #[arg(long, env = "LATTICE_XDS_ADMIN_PORT", default_value_t = 9901)]
    pub admin_port: u16,
    /// ADS flavour.
    #[arg(long, env = "LATTICE_XDS_XDS_PROTOCOL", value_enum, default_value_t = XdsProtocol::Delta)]
    pub xds_protocol: XdsProtocol,
    /// Write the bootstrap to this file instead of standard output.
    #[arg(long, env = "LATTICE_XDS_OUTPUT")]
    pub output: Option<PathBuf>,
    /// Reach the controller over TLS, verifying its certificate with this CA (PEM text; the
    /// injected bootstrap container gets it in LATTICE_XDS_XDS_CA).
    #[arg(long, env = "LATTICE_XDS_XDS_CA", conflicts_with = "xds_ca_file")]
    pub xds_ca: Option<String>,
    /// The same CA, from a PEM file.
    #[arg(long, env = "LATTICE_XDS_XDS_CA_FILE")]
    pub xds_ca_file: Option<PathBuf>,
    /// Send this file's token as `authorization: Bearer <token>` on every ADS stream (Envoy
    /// reads it again for each new stream, so the kubelet's renewals are used); needs TLS.
    #[arg(long, env = "LATTICE_XDS_XDS_TOKEN_FILE")]
    pub xds_token_file: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LoadtestCommand {
    /// Drive a signer's ext_proc service as Envoy does (one stream per request, headers only,
    /// N requests in flight); print progress each second and a final table of requests/s,
    /// latency percentiles and answers. Exits non-zero if any request was let through unsigned.
    ExtProc(ExtProcLoadArgs),
}

#[derive(Debug, Args)]
pub struct ExtProcLoadArgs {
    /// The signer's ext_proc address.
    #[arg(long, env = "LATTICE_XDS_TARGET", default_value_t = defaults::SIGNER_GRPC)]
    pub target: SocketAddr,
    /// Requests in flight at once.
    #[arg(long, env = "LATTICE_XDS_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// How long to run (`10s`, `2m`).
    #[arg(long, env = "LATTICE_XDS_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after this many requests, if that comes before --duration.
    #[arg(long, env = "LATTICE_XDS_REQUESTS")]
    pub requests: Option<u64>,
    /// The `:authority` of every request.
    #[arg(
        long,
        env = "LATTICE_XDS_AUTHORITY",
        default_value = "demo-cluster2.example.com"
    )]
    pub authority: String,
    /// The signer's PID: report its CPU per request and its RSS.
    #[arg(long, env = "LATTICE_XDS_PID")]
    pub pid: Option<u32>,
}

impl From<ExtProcLoadArgs> for crate::loadtest::ExtProcLoad {
    fn from(args: ExtProcLoadArgs) -> Self {
        Self {
            target: args.target,
            concurrency: args.concurrency,
            duration: args.duration,
            requests: args.requests,
            authority: args.authority,
            pid: args.pid,
        }
    }
}

#[derive(Debug, Args)]
pub struct ProxyStatusArgs {
    /// The controller's admin URL.
    #[arg(
        long,
        env = "LATTICE_XDS_ADMIN",
        default_value = "http://127.0.0.1:19000"
    )]
    pub admin: String,
}

impl BootstrapArgs {
    /// The bootstrap's configuration; reads the CA file, naming it when it cannot be used.
    pub fn into_config(self) -> anyhow::Result<BootstrapConfig> {
        let xds_ca = match (self.xds_ca, &self.xds_ca_file) {
            (Some(pem), _) => Some(pem),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the xDS CA file {}", path.display()))?,
            ),
            (None, None) => None,
        };
        if let Some(pem) = &xds_ca {
            crate::trust::validate::certificates_only(pem)
                .context("--xds-ca must be the PEM certificate of the controller's CA")?;
        }
        anyhow::ensure!(
            xds_ca.is_some() || self.xds_token_file.is_none(),
            "--xds-token-file needs --xds-ca or --xds-ca-file: the token is only sent over TLS"
        );
        Ok(BootstrapConfig {
            node_id: self.node_id,
            cluster: self.cluster,
            namespace: self.namespace,
            xds_address: self.xds_address,
            admin_port: self.admin_port,
            protocol: self.xds_protocol,
            xds_ca,
            xds_token_file: self.xds_token_file,
        })
    }
}

#[cfg(test)]
mod tests;
