//! Command-line interface. Every flag can also be set through `LATTICE_XDS_<FLAG>`; the flags
//! (one file per subcommand under `cli/`, and `signer/args.rs` for the signer,
//! which `lattice-xds-signer` shares) are the only code that reads the environment, and they
//! hand typed configuration down. Their defaults come from `model::defaults`.

mod bootstrap;
mod check;
mod controller;
mod emulate;
mod grpc_health;
mod loadtest;
mod policy;
mod proxy_status;
mod redirect;
mod validate;

pub use bootstrap::BootstrapArgs;
pub use check::CheckArgs;
pub use controller::{ControllerArgs, XdsAuthMode};
pub use emulate::EmulateArgs;
pub use grpc_health::{GrpcCheckArgs, GrpcHealthCommand, GrpcServeArgs};
pub use loadtest::{ExtProcLoadArgs, LoadtestCommand};
pub use policy::{PolicyCheckArgs, PolicyCommand};
pub use proxy_status::ProxyStatusArgs;
pub use redirect::RedirectArgs;
pub use validate::ValidateArgs;

use clap::{Parser, Subcommand};

use crate::signer::SignerArgs;

/// An xDS control plane for Envoy sidecars that call services through Amazon VPC Lattice.
#[derive(Debug, Parser)]
#[command(name = "lattice-xds", version, about, long_about = None)]
pub struct Cli {
    /// Log filter, as in RUST_LOG (for example `info` or `lattice_xds=debug`).
    #[arg(long, global = true, env = "LATTICE_XDS_LOG", default_value = "info")]
    pub log: String,
    /// Log lines as `text` (coloured on a terminal only) or `json` (one object per line).
    #[arg(
        long,
        global = true,
        env = "LATTICE_XDS_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value_t
    )]
    pub log_format: crate::logging::LogFormat,
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
    /// Check a manifest directory as the controller would read it: what it would serve, which
    /// objects it would skip and why, which fields it would ignore.
    Validate(ValidateArgs),
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
    /// A gRPC health check through the sidecar (to try a GRPCRoute), and a server for it.
    #[command(subcommand)]
    GrpcHealth(GrpcHealthCommand),
    /// Load generators for the benchmarks.
    #[command(subcommand)]
    Loadtest(LoadtestCommand),
    /// Redirect the pod's connections to VPC Lattice to the sidecar's egress listener
    /// (iptables; run once by the injected init container, with NET_ADMIN).
    Redirect(RedirectArgs),
}

/// Which VPC Lattice service networks are read from the VPC Lattice API, for the controller's
/// discovery and the emulated data plane alike.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceNetworkArgs {
    /// The cluster's VPC: the VPC Lattice service networks associated with it, and every
    /// service they list (shared from other accounts included), are read from the VPC Lattice
    /// API. Needs vpc-lattice:List*/Get* permissions (see the README).
    #[arg(long, env = "LATTICE_XDS_VPC_ID")]
    pub vpc_id: Option<String>,
    /// A VPC Lattice service network (name, id or ARN) read besides the VPC's. Repeatable.
    #[arg(
        long = "service-network",
        env = "LATTICE_XDS_SERVICE_NETWORK",
        value_delimiter = ','
    )]
    pub service_networks: Vec<String>,
}

impl ServiceNetworkArgs {
    /// Where and how often to read, with the rest of the settings given.
    fn settings(
        self,
        interval: std::time::Duration,
        region: Option<String>,
        endpoint_url: Option<String>,
    ) -> crate::provider::discovery::DiscoverySettings {
        crate::provider::discovery::DiscoverySettings {
            vpc_id: self.vpc_id,
            service_networks: self.service_networks,
            interval,
            region,
            endpoint_url,
        }
    }
}

/// Writes a command's output to stdout. A reader that stops early (`| head`) ends the command
/// quietly, as it ends any Unix tool, instead of a panic.
pub fn print(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(error) = written {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("lattice-xds: cannot write the output: {error}");
        }
        std::process::exit(if error.kind() == std::io::ErrorKind::BrokenPipe {
            0
        } else {
            1
        });
    }
}

/// The `-o` flag of a command that prints for a person or for a script.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct OutputArg {
    /// `text` for a person (a table where there is one), `json` or `yaml` for a script.
    #[arg(
        long = "output",
        short,
        env = "LATTICE_XDS_OUTPUT",
        value_enum,
        ignore_case = true,
        default_value_t
    )]
    pub output: Output,
}

/// How a command prints its answer: for a person, or for a script (`-o`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For a person: text, a table where there is one.
    #[default]
    #[value(alias = "table")]
    Text,
    Json,
    Yaml,
}

impl Output {
    /// Prints the answer: `text()` for a person, else `value` as JSON or YAML.
    pub fn print(
        self,
        value: &impl serde::Serialize,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let printed = match self {
            Self::Text => text(),
            Self::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
            Self::Yaml => serde_yaml_ng::to_string(value)?,
        };
        print(&printed);
        Ok(())
    }
}

/// A duration as every flag writes it: a number and its unit (`500ms`, `30s`, `5m`, `1h`, or
/// several, `1m30s`), as the help's defaults show.
fn duration(value: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(value).map_err(|_| {
        format!(
            "{value:?} is not a duration: a number and its unit, for example 500ms, 30s, 5m or 1h"
        )
    })
}

/// A `KEY=VALUE` flag value.
fn parse_pair(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{value:?} is not KEY=VALUE"))
}

#[cfg(test)]
mod tests;
