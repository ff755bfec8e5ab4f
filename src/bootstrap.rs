//! `lattice-xds bootstrap`: the Envoy bootstrap of a sidecar, from the template in `envoy/`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

const TEMPLATE: &str = include_str!("../envoy/bootstrap.yaml");

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
}

/// Renders the bootstrap YAML. Values are written as JSON strings, which YAML reads verbatim.
pub fn render(config: &BootstrapConfig) -> String {
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
