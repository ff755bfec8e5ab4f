//! `lattice-xds emulate-lattice`: the local VPC Lattice data plane's flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_pair;

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
