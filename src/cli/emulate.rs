//! `lattice-xds emulate-lattice`: the local VPC Lattice data plane's flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_pair;
use crate::emulator::faults::{Faults, FaultsError};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # A local VPC Lattice for the walkthrough's manifests (as make demo runs it):
  lattice-xds emulate-lattice --manifests examples/cluster1 --manifests examples/cluster2 \\
    --identities demo/identities.yaml --tls-cert lattice.crt --tls-key lattice.key \\
    --backend apps/demo-cluster2=http://127.0.0.1:8081
  # The services moto's VPC Lattice API lists for a VPC:
  lattice-xds emulate-lattice --vpc-id vpc-0a1b2c3d --aws-endpoint-url http://127.0.0.1:5000 \\
    --identities demo/identities.yaml --tls-cert lattice.crt --tls-key lattice.key")]
pub struct EmulateArgs {
    /// Directory of manifests (HTTPRoutes, Gateways, IAMAuthPolicies). Repeatable: one per
    /// emulated cluster. Needed unless the services are read from the VPC Lattice API.
    #[arg(long = "manifests", env = "LATTICE_XDS_MANIFESTS", required_unless_present_any = ["vpc_id", "service_networks"])]
    pub manifests: Vec<PathBuf>,
    /// Serve the services of these service networks as the VPC Lattice API lists them (names,
    /// listeners, auth types and auth policies), followed as they change. A name the API lists
    /// wins over a route's.
    #[command(flatten)]
    pub service_networks: super::ServiceNetworkArgs,
    /// The VPC Lattice API's endpoint (moto in the demo and the tests); by default the SDK's.
    #[arg(long, env = "LATTICE_XDS_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// How often the VPC Lattice API is read again.
    #[arg(long, env = "LATTICE_XDS_DISCOVERY_INTERVAL", default_value = "2s", value_parser = super::duration)]
    pub discovery_interval: Duration,
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
    /// Where a route backend (NAME or NAMESPACE/NAME) or a VPC Lattice service (its name)
    /// answers: NAME=URL. A TLS passthrough service's URL names the address its TLS is relayed
    /// to; a gRPC call (content type application/grpc) goes over HTTP/2 in clear text.
    /// Repeatable.
    #[arg(long = "backend", env = "LATTICE_XDS_BACKEND", value_parser = parse_pair)]
    pub backends: Vec<(String, String)>,
    /// The region signatures must be scoped to, and of the service ARNs.
    #[arg(long, env = "LATTICE_XDS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// The account of the routes' service ARNs (the API's services carry their own).
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
    #[arg(long, env = "LATTICE_XDS_CLOCK_SKEW", default_value = "5m", value_parser = super::duration)]
    pub clock_skew: Duration,
    /// Make a service fail as a rollout or a failing target would: HOST=KIND=VALUE,... with
    /// `unavailable=SHARE` (answered 503), `reset=SHARE` (reset before any response),
    /// `latency=DURATION` (added to every answer), `rolling=TARGETSxDURATION` (the targets take
    /// requests in turn and each refuses for DURATION in turn, such as 4x2s). Repeatable.
    #[arg(long = "fault", env = "LATTICE_XDS_FAULT", value_parser = parse_fault)]
    pub faults: Vec<(String, Faults)>,
}

fn parse_fault(value: &str) -> Result<(String, Faults), String> {
    let (host, faults) = parse_pair(value)?;
    let faults = faults
        .parse()
        .map_err(|error: FaultsError| error.to_string())?;
    Ok((host, faults))
}

impl From<EmulateArgs> for crate::emulator::EmulatorConfig {
    fn from(args: EmulateArgs) -> Self {
        let api = args.service_networks.settings(
            args.discovery_interval,
            Some(args.region.clone()),
            args.aws_endpoint_url,
        );
        let api = api.enabled().then_some(api);
        Self {
            manifests: args.manifests,
            api,
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
            faults: args.faults.into_iter().collect(),
        }
    }
}
