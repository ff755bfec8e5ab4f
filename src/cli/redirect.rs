//! `lattice-xds redirect`: the init container's iptables redirection.

use clap::Args;

use crate::model::defaults;
use crate::redirect::{Cidr, RedirectConfig};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # The rules the init container installs, printed instead:
  lattice-xds redirect --egress-port 8080 --proxy-uid 101 --print")]
pub struct RedirectArgs {
    /// The sidecar's egress listener port.
    #[arg(long, env = "LATTICE_XDS_EGRESS_PORT", default_value_t = defaults::EGRESS_PORT)]
    pub egress_port: u16,
    /// The uid Envoy runs as; its own connections to Lattice are not redirected.
    #[arg(long, env = "LATTICE_XDS_PROXY_UID", default_value_t = defaults::PROXY_UID)]
    pub proxy_uid: u32,
    /// The gid Envoy runs as; also exempt.
    #[arg(long, env = "LATTICE_XDS_PROXY_GID", default_value_t = defaults::PROXY_UID)]
    pub proxy_gid: u32,
    /// Address ranges to capture, IPv4 or IPv6. Repeatable.
    #[arg(long = "range", env = "LATTICE_XDS_RANGE", value_delimiter = ',', default_values = [crate::redirect::LATTICE_IPV4, crate::redirect::LATTICE_IPV6])]
    pub ranges: Vec<Cidr>,
    /// Print the rules (iptables-restore format, IPv4 then IPv6) instead of installing them.
    #[arg(long, env = "LATTICE_XDS_PRINT")]
    pub print: bool,
}

impl From<RedirectArgs> for RedirectConfig {
    fn from(args: RedirectArgs) -> Self {
        Self {
            egress_port: args.egress_port,
            proxy_uid: args.proxy_uid,
            proxy_gid: args.proxy_gid,
            ranges: args.ranges,
        }
    }
}
