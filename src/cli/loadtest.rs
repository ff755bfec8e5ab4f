//! `lattice-xds loadtest`: load generators for the benchmarks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::model::defaults;

#[derive(Debug, Subcommand)]
pub enum LoadtestCommand {
    /// Drive a signer's ext_proc service as Envoy does (one stream per request, headers only,
    /// N requests in flight); print progress each second and a final table of requests/s,
    /// latency percentiles and answers. Exits non-zero if any request was let through unsigned.
    ExtProc(ExtProcLoadArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lattice-xds loadtest ext-proc --target 127.0.0.1:9001 --concurrency 16 --duration 10s")]
pub struct ExtProcLoadArgs {
    /// The signer's ext_proc address.
    #[arg(long, env = "LATTICE_XDS_TARGET", default_value_t = defaults::SIGNER_GRPC)]
    pub target: SocketAddr,
    /// Requests in flight at once.
    #[arg(long, env = "LATTICE_XDS_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// How long to run (`10s`, `2m`).
    #[arg(long, env = "LATTICE_XDS_DURATION", default_value = "10s", value_parser = super::duration)]
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
