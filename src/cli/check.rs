//! `lattice-xds check`: the readiness check `helm test` runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::model::defaults;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lattice-xds check --admin http://127.0.0.1:19000 --xds-address 127.0.0.1:18000
  # What the chart's helm test runs (its pod's token, the CA the controller publishes):
  lattice-xds check --admin http://lattice-xds.lattice-xds.svc:9090 \\
    --xds-address lattice-xds.lattice-xds.svc:18000 --xds-ca-file ca.crt \\
    --xds-token-file /var/run/secrets/lattice-xds/xds-token --node-id $(POD_NAME).$(POD_NAMESPACE)")]
pub struct CheckArgs {
    /// The controller's admin URL.
    #[arg(
        long,
        env = "LATTICE_XDS_ADMIN",
        default_value_t = format!("http://{}", defaults::ADMIN_LISTEN)
    )]
    pub admin: String,
    /// The controller's ADS address, HOST:PORT.
    #[arg(
        long,
        env = "LATTICE_XDS_XDS_ADDRESS",
        default_value_t = defaults::XDS_LISTEN.to_string()
    )]
    pub xds_address: String,
    /// How long each step may take.
    #[arg(long, env = "LATTICE_XDS_TIMEOUT", default_value = "10s", value_parser = super::duration)]
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
