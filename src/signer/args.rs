//! The signer's flags, shared by `lattice-xds signer` and the `lattice-xds-signer` binary. Every
//! flag can also be set through `LATTICE_XDS_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};

use super::{Algorithm, Defaults, SignerConfig};
use crate::model::defaults;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # For a sidecar Envoy on this machine, with the credentials of the environment:
  AWS_REGION=us-west-2 lattice-xds-signer --grpc-listen 127.0.0.1:9001 --http-listen 127.0.0.1:9002
  # As injected: on Unix sockets served to Envoy's uid only, probes on their own port:
  lattice-xds-signer --grpc-socket /var/run/lattice-xds-signer/ext-proc.sock \\
    --http-socket /var/run/lattice-xds-signer/sign.sock --socket-peer-uid 101 \\
    --admin-listen 0.0.0.0:9003")]
pub struct SignerArgs {
    /// Address of the ext_proc gRPC server. Loopback only, unless --allow-remote.
    #[arg(
        long,
        env = "LATTICE_XDS_GRPC_LISTEN",
        default_value_t = defaults::SIGNER_GRPC
    )]
    pub grpc_listen: SocketAddr,
    /// Address of the HTTP server: POST /v1/sign (Lua mode), /healthz, /readyz, /metrics.
    /// Loopback only, unless --allow-remote.
    #[arg(
        long,
        env = "LATTICE_XDS_HTTP_LISTEN",
        default_value_t = defaults::SIGNER_HTTP
    )]
    pub http_listen: SocketAddr,
    /// Another address for /healthz, /readyz and /metrics only (probes, Prometheus); it never
    /// signs, so it may be any address.
    #[arg(long, env = "LATTICE_XDS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// SigV4 region when the controller sends none; by default AWS_REGION, then
    /// AWS_DEFAULT_REGION.
    #[arg(long, env = "LATTICE_XDS_REGION")]
    pub region: Option<String>,
    /// SigV4 service name when the controller sends none.
    #[arg(long, env = "LATTICE_XDS_SERVICE", default_value = "vpc-lattice-svcs")]
    pub service: String,
    /// Signature algorithm: sigv4, or sigv4a (signs for --region-set instead of one region). The
    /// controller's flag of the same name; `--algorithm` is its old name.
    #[arg(
        long,
        alias = "algorithm",
        env = "LATTICE_XDS_SIGNING_ALGORITHM",
        default_value = "sigv4",
        ignore_case = true,
        value_parser = one_of::<Algorithm>(Algorithm::ALL.map(Algorithm::as_str))
    )]
    pub signing_algorithm: Algorithm,
    /// SigV4A region set, such as `*` or `us-east-1,us-west-2`.
    #[arg(long, env = "LATTICE_XDS_REGION_SET", default_value = "*")]
    pub region_set: String,
    /// The only service requests are signed for; anything else is refused with 403.
    /// Repeatable; by default --service.
    #[arg(
        long = "allow-service",
        env = "LATTICE_XDS_ALLOW_SERVICE",
        value_delimiter = ','
    )]
    pub allow_services: Vec<String>,
    /// The only region requests are signed for (and SigV4A region sets are made of); anything
    /// else is refused with 403. Repeatable; by default the signer's own region (--region,
    /// AWS_REGION, AWS_DEFAULT_REGION).
    #[arg(
        long = "allow-region",
        env = "LATTICE_XDS_ALLOW_REGION",
        value_delimiter = ','
    )]
    pub allow_regions: Vec<String>,
    /// Allow the signing listeners on non-loopback addresses. Anything that reaches them can
    /// sign requests as this pod.
    #[arg(long, env = "LATTICE_XDS_ALLOW_REMOTE")]
    pub allow_remote: bool,
    /// Serve ext_proc on this Unix socket instead of --grpc-listen, to connections from
    /// --socket-peer-uid only (other processes of the pod cannot get signatures).
    #[arg(long, env = "LATTICE_XDS_GRPC_SOCKET")]
    pub grpc_socket: Option<PathBuf>,
    /// Serve POST /v1/sign (the Lua mode) on this Unix socket instead of --http-listen, to
    /// --socket-peer-uid only; health and metrics are then on --admin-listen.
    #[arg(long, env = "LATTICE_XDS_HTTP_SOCKET")]
    pub http_socket: Option<PathBuf>,
    /// The uid (Envoy's) whose connections the sockets serve; others are closed and counted.
    #[arg(long, env = "LATTICE_XDS_SOCKET_PEER_UID", default_value_t = defaults::PROXY_UID)]
    pub socket_peer_uid: u32,
}

impl From<SignerArgs> for SignerConfig {
    fn from(args: SignerArgs) -> Self {
        let region = args.region.or_else(|| {
            ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .into_iter()
                .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        });
        Self {
            grpc_listen: args.grpc_listen,
            http_listen: args.http_listen,
            admin_listen: args.admin_listen,
            defaults: Defaults {
                allowed_services: if args.allow_services.is_empty() {
                    vec![args.service.clone()]
                } else {
                    args.allow_services
                },
                allowed_regions: if args.allow_regions.is_empty() {
                    region.iter().cloned().collect()
                } else {
                    args.allow_regions
                },
                region,
                service: args.service,
                algorithm: args.signing_algorithm,
                region_set: args.region_set,
            },
            allow_remote: args.allow_remote,
            grpc_socket: args.grpc_socket,
            http_socket: args.http_socket,
            socket_peer_uid: args.socket_peer_uid,
        }
    }
}

/// The parser of a flag that takes one of a model enum's names: the names are listed in
/// `--help` and in the error, and with the flag's `ignore_case` they match in any case, as the
/// values of every enum flag of both binaries do.
pub fn one_of<T>(names: impl IntoIterator<Item = &'static str>) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).try_map(|name| name.parse::<T>())
}
