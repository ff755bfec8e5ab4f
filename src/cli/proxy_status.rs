//! `lattice-xds proxy-status`: what every connected Envoy was sent, accepted and rejected.

use clap::Args;

use crate::model::defaults;

#[derive(Debug, Args)]
pub struct ProxyStatusArgs {
    /// The controller's admin URL.
    #[arg(
        long,
        env = "LATTICE_XDS_ADMIN",
        default_value_t = format!("http://{}", defaults::ADMIN_LISTEN)
    )]
    pub admin: String,
}
