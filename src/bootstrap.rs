//! `lattice-xds bootstrap`: the Envoy bootstrap of a sidecar, from the template in `envoy/`.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

const TEMPLATE: &str = include_str!("../envoy/bootstrap.yaml");

/// Where the image keeps the signer module (see the Dockerfile).
pub const SIGNER_MODULE_FILE: &str = "/usr/local/lib/lattice-xds/liblattice_xds_signer.so";

/// The ADS flavour Envoy speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdsProtocol {
    /// Incremental xDS (`DELTA_GRPC`): only changes are sent.
    #[default]
    Delta,
    /// State of the world (`GRPC`): every response carries the full set.
    Sotw,
}

/// Where the controller's ADS server is: `host:port`, IPv6 in brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsAddress {
    pub host: String,
    pub port: u16,
}

impl FromStr for XdsAddress {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (host, port) = value
            .rsplit_once(':')
            .ok_or_else(|| format!("{value:?} is not HOST:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{value:?} has no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for XdsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => write!(f, "[{}]:{}", self.host, self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// What varies between sidecars.
#[derive(Clone, Debug)]
pub struct BootstrapConfig {
    pub node_id: String,
    pub cluster: String,
    pub namespace: String,
    pub xds_address: XdsAddress,
    pub admin_port: u16,
    pub protocol: XdsProtocol,
    /// The CA (PEM) the controller's certificate is verified with: ADS goes over TLS.
    pub xds_ca: Option<String>,
    /// A token file sent as `authorization: Bearer <token>` on every new ADS stream (reloaded
    /// when its directory changes, so a renewed token is used); needs TLS.
    pub xds_token_file: Option<String>,
}

/// Renders the bootstrap YAML. Values are written as JSON strings, which YAML reads verbatim.
/// `token_sds` is where [`token_sds`]'s config is written, when streams authenticate.
pub fn render(config: &BootstrapConfig, token_sds: &Path) -> String {
    let quoted = |value: &str| serde_json::Value::from(value).to_string();
    let discovery = if config.xds_address.host.parse::<IpAddr>().is_ok() {
        "STATIC"
    } else {
        "LOGICAL_DNS"
    };
    let api_type = match config.protocol {
        XdsProtocol::Delta => "DELTA_GRPC",
        XdsProtocol::Sotw => "GRPC",
    };
    TEMPLATE
        .replace("{{node_id}}", &quoted(&config.node_id))
        .replace("{{cluster}}", &quoted(&config.cluster))
        .replace("{{namespace}}", &quoted(&config.namespace))
        .replace("{{version}}", &quoted(env!("CARGO_PKG_VERSION")))
        .replace("{{api_type}}", api_type)
        .replace("{{xds_discovery}}", discovery)
        .replace("{{xds_host}}", &quoted(&config.xds_address.host))
        .replace("{{xds_port}}", &config.xds_address.port.to_string())
        .replace("{{admin_port}}", &config.admin_port.to_string())
        .replace(
            "{{xds_upstream_filters}}",
            &upstream_filters(config, token_sds),
        )
        .replace("{{xds_transport_socket}}", &transport_socket(config))
}

/// Where the token's secret config goes: beside the bootstrap.
const TOKEN_SDS_FILE: &str = "xds-token-sds.yaml";

/// Writes the bootstrap to `output` (standard output when `None`) and, when streams
/// authenticate, the token's secret config beside it.
pub fn write(config: &BootstrapConfig, output: Option<&Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let Some(output) = output else {
        anyhow::ensure!(
            config.xds_token_file.is_none(),
            "--xds-token-file needs --output: the token's secret config is written beside the bootstrap"
        );
        crate::cli::print(&render(config, Path::new(TOKEN_SDS_FILE)));
        return Ok(());
    };
    let dir = output.parent().unwrap_or(Path::new("."));
    let sds = dir.join(TOKEN_SDS_FILE);
    if let Some(text) = token_sds(config) {
        std::fs::write(&sds, text).with_context(|| {
            format!(
                "cannot write the token's secret config to {}",
                sds.display()
            )
        })?;
    }
    std::fs::write(output, render(config, &sds))
        .with_context(|| format!("cannot write the bootstrap to {}", output.display()))
}

/// The name of the token secret in the file-based SDS config the bootstrap points at.
const TOKEN_SECRET: &str = "xds-token";

/// The upstream filters of the cluster `lattice-xds` when streams authenticate: the token,
/// as `authorization: Bearer …`, from the file-based SDS config `token_sds`. Envoy reloads
/// that config when the token's directory changes (the kubelet swaps a symlink there on
/// renewal), so each new stream carries the current token.
fn upstream_filters(config: &BootstrapConfig, token_sds: &Path) -> String {
    let quoted = |value: &str| serde_json::Value::from(value).to_string();
    let Some(token_file) = &config.xds_token_file else {
        return String::new();
    };
    let token_dir = Path::new(token_file)
        .parent()
        .map_or_else(|| ".".to_string(), |dir| dir.display().to_string());
    format!(
        "        http_filters:
        - name: envoy.filters.http.credential_injector
          typed_config:
            \"@type\": type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector
            overwrite: true
            credential:
              name: envoy.http.injected_credentials.generic
              typed_config:
                \"@type\": type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic
                credential:
                  name: {TOKEN_SECRET}
                  sds_config:
                    path_config_source:
                      path: {sds}
                      watched_directory:
                        path: {dir}
                header_value_prefix: \"Bearer \"
        - name: envoy.filters.http.upstream_codec
          typed_config:
            \"@type\": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
",
        sds = quoted(&token_sds.display().to_string()),
        dir = quoted(&token_dir),
    )
}

/// The TLS transport socket of the cluster `lattice-xds`: the controller's certificate must
/// chain to `xds_ca` and name the host the sidecar dials.
fn transport_socket(config: &BootstrapConfig) -> String {
    let quoted = |value: &str| serde_json::Value::from(value).to_string();
    let Some(ca) = &config.xds_ca else {
        return String::new();
    };
    let host = &config.xds_address.host;
    let (san_type, sni) = match host.parse::<IpAddr>() {
        Ok(_) => ("IP_ADDRESS", String::new()),
        Err(_) => ("DNS", format!("        sni: {}\n", quoted(host))),
    };
    format!(
        "    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
{sni}        common_tls_context:
          alpn_protocols: [h2]
          validation_context:
            trusted_ca:
              inline_string: {ca}
            match_typed_subject_alt_names:
            - san_type: {san_type}
              matcher:
                exact: {host}
",
        ca = quoted(ca),
        host = quoted(host),
    )
}

/// The file-based SDS config holding the token secret: written beside the bootstrap.
pub fn token_sds(config: &BootstrapConfig) -> Option<String> {
    let token_file = config.xds_token_file.as_ref()?;
    Some(format!(
        "# The pod's xDS token for the cluster lattice-xds, written by `lattice-xds bootstrap`.
resources:
- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: {TOKEN_SECRET}
  generic_secret:
    secret:
      filename: {}
",
        serde_json::Value::from(token_file.as_str())
    ))
}

#[cfg(test)]
mod tests {
    use super::XdsAddress;

    #[test]
    fn xds_addresses_parse_with_and_without_brackets() {
        let v6: XdsAddress = "[::1]:18000".parse().unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 18000));
        assert_eq!(v6.to_string(), "[::1]:18000");
        let name: XdsAddress = "lattice-xds.lattice-system.svc:18000".parse().unwrap();
        assert_eq!(name.host, "lattice-xds.lattice-system.svc");
        assert!("no-port".parse::<XdsAddress>().is_err());
        assert!(":18000".parse::<XdsAddress>().is_err());
        assert!("host:99999".parse::<XdsAddress>().is_err());
    }
}
