//! `lattice-xds bootstrap`: the sidecar Envoy's bootstrap.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::bootstrap::{BootstrapConfig, XdsAddress, XdsProtocol};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # A sidecar on this machine that follows a local controller:
  lattice-xds bootstrap --node-id client.apps --cluster client --xds-address 127.0.0.1:18000 \\
    --output /tmp/envoy.yaml && envoy -c /tmp/envoy.yaml
  # What the injected init container runs (TLS to the controller, the pod's token):
  lattice-xds bootstrap --node-id $(POD_NAME).$(POD_NAMESPACE) --cluster client \\
    --xds-address lattice-xds.lattice-xds.svc:18000 --xds-ca-file ca.crt \\
    --xds-token-file /var/run/secrets/lattice-xds/xds-token --output /etc/lattice-xds/envoy.yaml")]
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
    #[arg(long, env = "LATTICE_XDS_XDS_PROTOCOL", value_enum, ignore_case = true, default_value_t = XdsProtocol::Delta)]
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
    /// Also copy the signer module (`--signing=module`) into this directory, where Envoy finds
    /// it through ENVOY_DYNAMIC_MODULES_SEARCH_PATH (the injected container copies the image's
    /// module beside the bootstrap).
    #[arg(long, env = "LATTICE_XDS_MODULE_DIR")]
    pub module_dir: Option<PathBuf>,
    /// The signer module to copy.
    #[arg(long, env = "LATTICE_XDS_MODULE_FILE", default_value = crate::bootstrap::SIGNER_MODULE_FILE)]
    pub module_file: PathBuf,
}

impl BootstrapArgs {
    /// Copies the signer module into `--module-dir`, when given, under the name Envoy loads.
    pub fn install_module(&self) -> anyhow::Result<()> {
        let Some(dir) = &self.module_dir else {
            return Ok(());
        };
        let target = dir.join(crate::signer::module::FILE);
        std::fs::copy(&self.module_file, &target).with_context(|| {
            format!(
                "cannot copy the signer module {} to {}",
                self.module_file.display(),
                target.display()
            )
        })?;
        Ok(())
    }

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
