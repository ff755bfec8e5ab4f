//! `lattice-xds grpc-health`: a gRPC health check through the sidecar, and a server for it.

use std::net::SocketAddr;

use clap::{Args, Subcommand};

use crate::model::defaults;

#[derive(Debug, Subcommand)]
pub enum GrpcHealthCommand {
    /// Call grpc.health.v1.Health/Check as an application would: HTTP/2 in clear text to the
    /// sidecar's egress listener, the destination as :authority. Prints the status; exits
    /// non-zero unless SERVING.
    Check(GrpcCheckArgs),
    /// Answer grpc.health.v1.Health/Check (a stand-in gRPC backend): the server and each
    /// --service are SERVING.
    Serve(GrpcServeArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Through the sidecar's egress port, as an application would:
  lattice-xds grpc-health check greeter.example.com --target 127.0.0.1:8080 --service greeter")]
pub struct GrpcCheckArgs {
    /// The destination, as a GRPCRoute's host name.
    pub authority: String,
    /// Where to connect: the sidecar's egress listener (HOST:PORT).
    #[arg(
        long,
        env = "LATTICE_XDS_TARGET",
        default_value_t = format!("127.0.0.1:{}", defaults::EGRESS_PORT)
    )]
    pub target: String,
    /// The service to ask about; empty for the server as a whole.
    #[arg(long, env = "LATTICE_XDS_SERVICE", default_value = "")]
    pub service: String,
}

#[derive(Debug, Args)]
pub struct GrpcServeArgs {
    /// Address to listen on (HTTP/2 in clear text).
    #[arg(long, env = "LATTICE_XDS_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// A service name to report as SERVING (repeat for more).
    #[arg(long = "service", env = "LATTICE_XDS_SERVICE", value_delimiter = ',')]
    pub services: Vec<String>,
}
