//! The egress listener: plain HTTP from the application (redirected by iptables), routed by
//! Host header through the signing filter; every other protocol passed through untouched.

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::config::listener::v3::{
    AdditionalAddress, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter,
    listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::http::dynamic_forward_proxy::v3::{
    FilterConfig as DynamicForwardProxy, filter_config::ImplementationSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::on_demand::v3::OnDemand;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::direct_response::v3::Config as DirectResponse;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
    http_connection_manager::{RouteSpecifier, StripPortMode},
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::{Any, Duration, UInt32Value};
use envoy_types::util::pack_any;

use super::cluster::{dns_cache, socket_address};
use super::{EGRESS, access_log, ads, http_filter, shared_classes, signing};
use crate::model::Mesh;

/// The name of the pass-through chain, in the access log.
pub const PASSTHROUGH: &str =
    "passthrough: not HTTP; forwarded unsigned and untouched to the address the application dialed";

/// The cluster that sends a connection on to the address the application dialed.
pub const ORIGINAL_DESTINATION: &str = "lattice-original-destination";

/// How long the listener waits for a connection's first bytes to tell HTTP from TLS from
/// anything else. Clients of HTTP and TLS speak first, so only a protocol whose server speaks
/// first waits this long before it is passed through.
const INSPECTION_TIMEOUT: Duration = Duration {
    seconds: 1,
    nanos: 0,
};

/// The application protocols the HTTP inspector reports for plain HTTP.
const HTTP_PROTOCOLS: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];

/// The listener on every configured address at the egress port. It reads each connection's
/// first bytes: plain HTTP goes to the connection manager (routed, signed); everything else a
/// redirect captured (TLS that a VPC Lattice TLS passthrough listener terminates at the service,
/// any other protocol) goes on unsigned and untouched to the address the application dialed,
/// which VPC Lattice routes by its SNI. A connection made to the egress port itself has no
/// such address: anything but HTTP on it gets a line that says so, and is closed.
pub fn egress(mesh: &Mesh) -> Listener {
    let mut addresses = mesh
        .egress
        .addresses
        .iter()
        .map(|ip| socket_address(&ip.to_string(), mesh.egress.port));
    let http = |destination_port| FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            destination_port,
            transport_protocol: "raw_buffer".to_string(),
            application_protocols: HTTP_PROTOCOLS.map(str::to_string).to_vec(),
            ..Default::default()
        }),
        filters: vec![network_filter(
            "envoy.filters.network.http_connection_manager",
            pack_any(connection_manager(mesh)),
        )],
        ..Default::default()
    };
    let egress_port = Some(UInt32Value {
        value: u32::from(mesh.egress.port),
    });
    let address = addresses.next();
    let additional_addresses = addresses
        .map(|address| AdditionalAddress {
            address: Some(address),
            ..Default::default()
        })
        .collect();
    if !mesh.egress.inspect {
        // HTTP alone: one chain, nothing read before the connection manager.
        let chain = FilterChain {
            filter_chain_match: None,
            ..http(None)
        };
        return Listener {
            name: EGRESS.to_string(),
            address,
            additional_addresses,
            filter_chains: vec![chain],
            ..Default::default()
        };
    }
    Listener {
        name: EGRESS.to_string(),
        address,
        additional_addresses,
        listener_filters: vec![
            // Where a redirected connection was going.
            listener_filter(
                "envoy.filters.listener.original_dst",
                pack_any(OriginalDst {}),
            ),
            listener_filter(
                "envoy.filters.listener.tls_inspector",
                pack_any(TlsInspector::default()),
            ),
            listener_filter(
                "envoy.filters.listener.http_inspector",
                pack_any(HttpInspector {}),
            ),
        ],
        listener_filters_timeout: Some(INSPECTION_TIMEOUT),
        continue_on_listener_filters_timeout: true,
        filter_chains: vec![
            http(None),
            // The same for connections made to the egress port itself (the more specific match
            // wins, so the refusal below does not take them).
            http(egress_port),
            not_redirected(egress_port),
        ],
        default_filter_chain: Some(passthrough(mesh)),
        ..Default::default()
    }
}

/// Anything but HTTP made to the egress port itself: there is no original destination to pass
/// it to (it would come back to this listener), so it gets a line that says so.
fn not_redirected(egress_port: Option<UInt32Value>) -> FilterChain {
    let reply = DirectResponse {
        response: Some(DataSource {
            specifier: Some(Specifier::InlineString(NOT_REDIRECTED.to_string())),
            ..Default::default()
        }),
    };
    FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            destination_port: egress_port,
            ..Default::default()
        }),
        filters: vec![network_filter(
            "envoy.filters.network.direct_response",
            pack_any(reply),
        )],
        name: "not-redirected".to_string(),
        ..Default::default()
    }
}

/// What a non-HTTP connection made to the egress port itself reads before it is closed.
pub const NOT_REDIRECTED: &str =
    "lattice-xds: the egress port takes HTTP; other protocols pass through only when redirected\n";

/// Everything else: on, untouched, to where it was going.
fn passthrough(mesh: &Mesh) -> FilterChain {
    let proxy = TcpProxy {
        stat_prefix: "passthrough".to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(
            ORIGINAL_DESTINATION.to_string(),
        )),
        access_log: access_log::passthrough_logs(mesh),
        ..Default::default()
    };
    FilterChain {
        filters: vec![network_filter(
            "envoy.filters.network.tcp_proxy",
            pack_any(proxy),
        )],
        name: "passthrough".to_string(),
        ..Default::default()
    }
}

fn network_filter(name: &str, config: Any) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}

fn listener_filter(name: &str, config: Any) -> ListenerFilter {
    ListenerFilter {
        name: name.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(config)),
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
    let mut http_filters: Vec<HttpFilter> = Vec::new();
    if mesh.egress.on_demand {
        // Before anything that needs the route: a request for a host whose virtual host the
        // sidecar does not hold yet waits here until it is fetched, then starts over.
        http_filters.push(http_filter(
            "envoy.filters.http.on_demand",
            pack_any(OnDemand::default()),
        ));
    }
    // Then the access log's, so that on the way back it sees the answer as the application
    // will.
    http_filters.extend(access_log::filter(mesh));
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
    // After signing, so that the signer is not sent headers only the router reads.
    http_filters.extend(super::retries::filter(mesh));
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
        tracing: super::tracing::requests(mesh),
        local_reply_config: signing::local_replies(&mesh.signing),
        ..Default::default()
    }
}

fn uses_shared_clusters(mesh: &Mesh) -> bool {
    !shared_classes(mesh).is_empty()
}
