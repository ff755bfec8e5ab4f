//! `lattice-xds validate`: a manifest directory checked as the controller would read it.

use std::path::PathBuf;

use clap::Args;

use super::OutputArg;
use crate::model::{DEFAULT_GATEWAY_CLASS, Settings};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lattice-xds validate examples/cluster1
  lattice-xds validate manifests/ --output json | jq '.skipped'
  lattice-xds validate manifests/ --accepted-routes-only true   # as in a cluster

Exits 0 when every object is served whole, 1 when any object is skipped or any field ignored,
2 when the directory cannot be read.")]
pub struct ValidateArgs {
    /// The manifest directory (as the controller's --manifests): every *.yaml, *.yml and *.json
    /// under it.
    pub dir: PathBuf,
    /// GatewayClass whose Gateways are VPC Lattice service networks, besides any class the AWS
    /// Gateway API Controller runs.
    #[arg(long, env = "LATTICE_XDS_GATEWAY_CLASS", default_value = DEFAULT_GATEWAY_CLASS)]
    pub gateway_class: String,
    /// Serve a route on a Gateway only once the VPC Lattice controller has accepted it there
    /// (its status.parents), as the controller does in a cluster.
    #[arg(
        long,
        env = "LATTICE_XDS_ACCEPTED_ROUTES_ONLY",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub accepted_routes_only: bool,
    #[command(flatten)]
    pub output: OutputArg,
}

impl ValidateArgs {
    /// The controller's settings for reading the directory.
    pub fn settings(&self) -> Settings {
        Settings {
            gateway_class: self.gateway_class.clone(),
            accepted_routes_only: self.accepted_routes_only,
            ..Settings::default()
        }
    }
}
