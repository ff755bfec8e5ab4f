//! The egress listener: plain HTTP/1.1 from the application (redirected by iptables), routed
//! by Host header through the signing filter.

use envoy_types::pb::envoy::config::listener::v3::{
    AdditionalAddress, Filter, FilterChain, Listener, filter,
};
use envoy_types::pb::envoy::extensions::filters::http::dynamic_forward_proxy::v3::{
    FilterConfig as DynamicForwardProxy, filter_config::ImplementationSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
    http_connection_manager::{RouteSpecifier, StripPortMode},
};
use envoy_types::util::pack_any;

use super::cluster::{dns_cache, socket_address};
use super::{EGRESS, access_log, ads, http_filter, shared_classes, signing};
use crate::model::Mesh;

/// The listener on every configured address at the egress port.
pub fn egress(mesh: &Mesh) -> Listener {
    let mut addresses = mesh
        .egress
        .addresses
        .iter()
        .map(|ip| socket_address(&ip.to_string(), mesh.egress.port));
    Listener {
        name: EGRESS.to_string(),
        address: addresses.next(),
        additional_addresses: addresses
            .map(|address| AdditionalAddress {
                address: Some(address),
                ..Default::default()
            })
            .collect(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(
                    connection_manager(mesh),
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The dynamic forward proxy filter: resolves the host of requests bound for a shared cluster.
const FORWARD_PROXY_FILTER: &str = "envoy.filters.http.dynamic_forward_proxy";

/// The forward proxy (it resolves hosts bound for a shared cluster), the signing filter, then
/// the router. Any port is stripped from the Host header first: routes match the bare name,
/// the forward proxy then uses the shared cluster's default port (443 with TLS, 80 without),
/// and the Host that is signed is the one sent.
fn connection_manager(mesh: &Mesh) -> HttpConnectionManager {
    // First, so that on the way back it sees the answer as the application will.
    let mut http_filters: Vec<HttpFilter> = access_log::filter(mesh).into_iter().collect();
    if uses_shared_clusters(mesh) {
        let config = DynamicForwardProxy {
            implementation_specifier: Some(ImplementationSpecifier::DnsCacheConfig(dns_cache(
                mesh.dns_resolver,
            ))),
            ..Default::default()
        };
        http_filters.push(http_filter(FORWARD_PROXY_FILTER, pack_any(config)));
    }
    http_filters.extend(signing::filter(&mesh.signing));
    http_filters.push(http_filter(
        "envoy.filters.http.router",
        pack_any(Router::default()),
    ));
    HttpConnectionManager {
        stat_prefix: EGRESS.to_string(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: EGRESS.to_string(),
        })),
        http_filters,
        access_log: access_log::access_logs(mesh),
        strip_port_mode: Some(StripPortMode::StripAnyHostPort(true)),
        ..Default::default()
    }
}

fn uses_shared_clusters(mesh: &Mesh) -> bool {
    !shared_classes(mesh).is_empty()
}
