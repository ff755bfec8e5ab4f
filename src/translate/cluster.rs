//! Clusters: a shared dynamic-forward-proxy cluster per trust class, and a cluster of its own for
//! each destination that needs one (pinned, or on a port of its own), with TLS, SNI and SAN
//! checks.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CustomClusterType, DiscoveryType, DnsLookupFamily, LbPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster, OutlierDetection};
use envoy_types::pb::envoy::config::core::v3::{
    Address, DataSource, Pipe, SocketAddress, TransportSocket, TypedExtensionConfig, address,
    data_source::Specifier, socket_address, socket_address::PortSpecifier, transport_socket,
};
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, UpstreamHttpProtocolOptions,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::extensions::clusters::dynamic_forward_proxy::v3::{
    ClusterConfig, cluster_config::ClusterImplementationSpecifier,
};
use envoy_types::pb::envoy::extensions::common::dynamic_forward_proxy::v3::DnsCacheConfig;
use envoy_types::pb::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SdsSecretConfig, SubjectAltNameMatcher,
    UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    AutoHttpConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
    explicit_http_config::ProtocolConfig,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;

use super::{
    DNS_CACHE, ads, destination_cluster_name, duration, seconds, shared_cluster_name,
    trust_secret_name,
};
use crate::model::{ClusterLimits, Destination, Mesh, Protocol, Trust};

const CONNECT_TIMEOUT_SECONDS: i64 = 5;

/// The cluster for one destination.
pub fn destination(destination: &Destination, mesh: &Mesh) -> Cluster {
    let system_ca_file = mesh.system_ca_file.as_str();
    let name = destination_cluster_name(&destination.host, destination.port);
    // Every address DNS gives is an endpoint of its own (VPC Lattice answers with one per
    // zone), so that a failing one can be set aside while the others serve.
    let (discovery, addresses) = match destination.pinned.as_slice() {
        [] => (
            DiscoveryType::StrictDns,
            vec![socket_address(&destination.host, destination.port)],
        ),
        pinned => (
            DiscoveryType::Static,
            (pinned.iter())
                .map(|address| socket_address(&address.ip().to_string(), address.port()))
                .collect(),
        ),
    };
    Cluster {
        load_assignment: Some(load_assignment_of(&name, &destination.host, addresses)),
        name,
        connect_timeout: Some(seconds(CONNECT_TIMEOUT_SECONDS)),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery.into())),
        circuit_breakers: Some(circuit_breakers(&mesh.limits)),
        outlier_detection: outlier_detection(&mesh.limits),
        dns_lookup_family: DnsLookupFamily::V4Preferred.into(),
        typed_dns_resolver_config: destination
            .pinned
            .is_empty()
            .then(|| mesh.dns_resolver.map(dns_resolver))
            .flatten(),
        transport_socket: destination.tls.as_ref().map(|trust| {
            tls_socket(
                Some(&destination.host),
                trust,
                system_ca_file,
                destination.protocol,
            )
        }),
        typed_extension_protocol_options: destination
            .tls
            .as_ref()
            .map(|_| {
                let options = pack_any(protocol_options(destination.protocol, false));
                (HTTP_PROTOCOL_OPTIONS.to_string(), options)
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// A shared dynamic-forward-proxy cluster for one trust class (`None`: plain HTTP). Each
/// request's host (rewritten per destination, or the Host header under a fallback domain) is
/// resolved through the shared DNS cache; `auto_sni` and `auto_san_validation` keep SNI and
/// the SAN check per host, so one cluster serves every destination of the class.
pub fn shared(tls: Option<&Trust>, protocol: Protocol, mesh: &Mesh) -> Cluster {
    let config = ClusterConfig {
        cluster_implementation_specifier: Some(ClusterImplementationSpecifier::DnsCacheConfig(
            dns_cache(mesh.dns_resolver),
        )),
        ..Default::default()
    };
    Cluster {
        name: shared_cluster_name(tls, protocol),
        connect_timeout: Some(seconds(CONNECT_TIMEOUT_SECONDS)),
        lb_policy: LbPolicy::ClusterProvided.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
            name: "envoy.clusters.dynamic_forward_proxy".to_string(),
            typed_config: Some(pack_any(config)),
        })),
        circuit_breakers: Some(circuit_breakers(&mesh.limits)),
        // No outlier detection: the cluster holds one address per host name, and stock Envoy
        // answers every request for an ejected name 503 itself until the ejection ends, so a
        // service's brief 5xx would take it away for the ejection time.
        transport_socket: tls.map(|trust| tls_socket(None, trust, &mesh.system_ca_file, protocol)),
        typed_extension_protocol_options: tls
            .map(|_| {
                let options = pack_any(protocol_options(protocol, true));
                (HTTP_PROTOCOL_OPTIONS.to_string(), options)
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// A destination cluster's limits, at the default priority (the only one the sidecar uses).
fn circuit_breakers(limits: &ClusterLimits) -> CircuitBreakers {
    let value = |value| Some(UInt32Value { value });
    CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: value(limits.connections),
            max_pending_requests: value(limits.pending_requests),
            max_requests: value(limits.requests),
            max_retries: value(limits.requests),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Makes `cluster` speak HTTP/2 in clear text (gRPC to a sidecar of the pod, or to a
/// collector).
pub fn speak_http2(cluster: &mut Cluster) {
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    (cluster.typed_extension_protocol_options)
        .insert(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(options));
}

/// How a cluster sets an address aside: after `eject_after` 5xx answers or failed connections
/// in a row, for the ejection time (longer each time it is set aside again), at most half of a
/// cluster's addresses at once, so that a service's own failures never take every address away.
fn outlier_detection(limits: &ClusterLimits) -> Option<OutlierDetection> {
    if limits.eject_after == 0 {
        return None;
    }
    let ejection_time = duration(limits.ejection_time);
    Some(OutlierDetection {
        consecutive_5xx: Some(UInt32Value {
            value: limits.eject_after,
        }),
        // How often ejected addresses are looked at again: as often as they may come back.
        interval: Some(duration(limits.ejection_time.min(OUTLIER_INTERVAL))),
        base_ejection_time: Some(ejection_time),
        max_ejection_percent: Some(UInt32Value { value: 50 }),
        ..Default::default()
    })
}

/// Envoy's own sweep of its addresses' records, when ejections last longer.
const OUTLIER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The cluster that passes a connection on to the address its application dialed (the
/// original destination a redirect recorded), for what the egress listener does not route.
pub fn original_destination() -> Cluster {
    Cluster {
        name: super::listener::ORIGINAL_DESTINATION.to_string(),
        connect_timeout: Some(seconds(CONNECT_TIMEOUT_SECONDS)),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst.into(),
        )),
        lb_policy: LbPolicy::ClusterProvided.into(),
        ..Default::default()
    }
}

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The upstream protocol over TLS: HTTP/2 for gRPC, as VPC Lattice serves it; otherwise the
/// version ALPN negotiates (`h2`, then `http/1.1`), so that a service that speaks gRPC without
/// a local GRPCRoute (discovered, or another cluster's) is reached over HTTP/2 too. With
/// `per_host`, SNI is set to and the certificate checked against each request's host.
fn protocol_options(protocol: Protocol, per_host: bool) -> HttpProtocolOptions {
    let upstream_protocol_options = match protocol {
        Protocol::Grpc => UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
            protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                Http2ProtocolOptions::default(),
            )),
        }),
        Protocol::Http | Protocol::TlsPassthrough => {
            UpstreamProtocolOptions::AutoConfig(AutoHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(Http2ProtocolOptions::default()),
                ..Default::default()
            })
        }
    };
    HttpProtocolOptions {
        upstream_http_protocol_options: per_host.then(|| UpstreamHttpProtocolOptions {
            auto_sni: true,
            auto_san_validation: true,
            ..Default::default()
        }),
        upstream_protocol_options: Some(upstream_protocol_options),
        ..Default::default()
    }
}

/// Hosts one sidecar can hold in its DNS cache at once: generous, since an entry exists only
/// for a host the pod actually calls, and a full cache refuses new hosts with a 503.
const DNS_CACHE_MAX_HOSTS: u32 = 65_536;

/// The DNS cache shared by the fallback cluster and the dynamic forward proxy filter.
pub fn dns_cache(resolver: Option<SocketAddr>) -> DnsCacheConfig {
    DnsCacheConfig {
        name: DNS_CACHE.to_string(),
        max_hosts: Some(UInt32Value {
            value: DNS_CACHE_MAX_HOSTS,
        }),
        dns_lookup_family: DnsLookupFamily::V4Preferred.into(),
        typed_dns_resolver_config: resolver.map(dns_resolver),
        ..Default::default()
    }
}

/// Envoy's c-ares resolver asking only `address` (`--dns-resolver`), instead of the system's.
fn dns_resolver(address: SocketAddr) -> TypedExtensionConfig {
    let config = CaresDnsResolverConfig {
        resolvers: vec![Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                protocol: socket_address::Protocol::Udp.into(),
                address: address.ip().to_string(),
                port_specifier: Some(PortSpecifier::PortValue(u32::from(address.port()))),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    TypedExtensionConfig {
        name: "envoy.network.dns_resolver.cares".to_string(),
        typed_config: Some(pack_any(config)),
    }
}

/// A one-endpoint load assignment: a DNS name and port, or a pinned socket address.
pub fn load_assignment(
    cluster: &str,
    hostname: &str,
    address: (String, u16),
) -> ClusterLoadAssignment {
    load_assignment_at(cluster, hostname, socket_address(&address.0, address.1))
}

/// One endpoint at `address` (a socket address or a Unix socket).
pub fn load_assignment_at(
    cluster: &str,
    hostname: &str,
    address: Address,
) -> ClusterLoadAssignment {
    load_assignment_of(cluster, hostname, vec![address])
}

/// An endpoint at each of `addresses`, all in one locality.
fn load_assignment_of(
    cluster: &str,
    hostname: &str,
    addresses: Vec<Address>,
) -> ClusterLoadAssignment {
    let endpoint = |address| LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(address),
            hostname: hostname.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    };
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: addresses.into_iter().map(endpoint).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The pinned address of a socket, as a load-assignment `(address, port)` pair.
pub fn pinned(address: SocketAddr) -> (String, u16) {
    (address.ip().to_string(), address.port())
}

/// A Unix socket's address.
pub fn pipe_address(path: &str) -> Address {
    Address {
        address: Some(address::Address::Pipe(Pipe {
            path: path.to_string(),
            mode: 0,
        })),
    }
}

pub fn socket_address(address: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

/// Originating TLS: SNI and SAN verification for `host` (when known ahead of the request), and
/// the CA roots of `trust`. (Envoy does not implement `system_root_certs`, so the system roots
/// are the CA bundle file of the Envoy container.)
fn tls_socket(
    host: Option<&str>,
    trust: &Trust,
    system_ca_file: &str,
    protocol: Protocol,
) -> TransportSocket {
    let san_checks = host
        .map(|host| SubjectAltNameMatcher {
            san_type: SanType::Dns.into(),
            matcher: Some(StringMatcher {
                match_pattern: Some(MatchPattern::Exact(host.to_string())),
                ..Default::default()
            }),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let validation = match trust {
        Trust::SystemRoots => {
            ValidationContextType::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(Specifier::Filename(system_ca_file.to_string())),
                    ..Default::default()
                }),
                match_typed_subject_alt_names: san_checks,
                ..Default::default()
            })
        }
        Trust::Bundle(bundle) => {
            ValidationContextType::CombinedValidationContext(CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: san_checks,
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(SdsSecretConfig {
                    name: trust_secret_name(bundle),
                    sds_config: Some(ads()),
                }),
                ..Default::default()
            })
        }
    };
    let context = UpstreamTlsContext {
        sni: host.unwrap_or_default().to_string(),
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(validation),
            // Auto-config clusters set ALPN themselves (h2, http/1.1).
            alpn_protocols: match protocol {
                Protocol::Grpc => vec!["h2".to_string()],
                Protocol::Http | Protocol::TlsPassthrough => Vec::new(),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}
