//! Clusters: one per destination (DNS-resolved or pinned, TLS with SNI and SAN checks), and the
//! dynamic-forward-proxy fallback for hosts under the configured domains.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CustomClusterType, DiscoveryType, DnsLookupFamily, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, DataSource, Metadata, SocketAddress, TransportSocket, TypedExtensionConfig, address,
    data_source::Specifier, socket_address, socket_address::PortSpecifier, transport_socket,
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
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use envoy_types::util::pack_any;

use super::{FALLBACK_CLUSTER, ads, destination_cluster_name, seconds, trust_secret_name};
use crate::model::{Destination, Mesh, Trust, custom_domain_trust};

const CONNECT_TIMEOUT_SECONDS: i64 = 5;

/// The cluster for one destination.
pub fn destination(destination: &Destination, mesh: &Mesh) -> Cluster {
    let system_ca_file = mesh.system_ca_file.as_str();
    let name = destination_cluster_name(&destination.host, destination.port);
    let (discovery, address) = match destination.pinned {
        Some(address) => (DiscoveryType::Static, pinned(address)),
        None => (
            DiscoveryType::LogicalDns,
            (destination.host.clone(), destination.port),
        ),
    };
    Cluster {
        load_assignment: Some(load_assignment(&name, &destination.host, address)),
        name,
        connect_timeout: Some(seconds(CONNECT_TIMEOUT_SECONDS)),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery.into())),
        dns_lookup_family: DnsLookupFamily::V4Preferred.into(),
        typed_dns_resolver_config: destination
            .pinned
            .is_none()
            .then(|| mesh.dns_resolver.map(dns_resolver))
            .flatten(),
        transport_socket: destination
            .tls
            .as_ref()
            .map(|trust| tls_socket(Some(&destination.host), trust, system_ca_file)),
        metadata: Some(provenance(destination)),
        ..Default::default()
    }
}

/// The filter metadata key under which a cluster records where it came from.
const METADATA_KEY: &str = "lattice-xds";

/// The provenance entries a destination cluster carries (`route ns/name`, then `auth policy
/// ns/name (level)` for each policy); empty for other clusters.
pub fn provenance_of(cluster: &Cluster) -> Vec<String> {
    let Some(metadata) = &cluster.metadata else {
        return Vec::new();
    };
    let Some(Kind::ListValue(list)) = metadata
        .filter_metadata
        .get(METADATA_KEY)
        .and_then(|fields| fields.fields.get("source"))
        .and_then(|value| value.kind.as_ref())
    else {
        return Vec::new();
    };
    list.values
        .iter()
        .filter_map(|value| match &value.kind {
            Some(Kind::StringValue(text)) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Where a destination came from, readable in any config dump: the route, then the IAM auth
/// policies VPC Lattice evaluates for it. One list under one key: protobuf maps encode in no
/// fixed order, and the encoding must not change while the destination does not.
fn provenance(destination: &Destination) -> Metadata {
    let string = |text: String| Value {
        kind: Some(Kind::StringValue(text)),
    };
    let values = std::iter::once(format!("route {}", destination.source))
        .chain(
            destination
                .auth_policies
                .iter()
                .map(|policy| format!("auth policy {policy}")),
        )
        .map(string)
        .collect();
    let source = Value {
        kind: Some(Kind::ListValue(ListValue { values })),
    };
    Metadata {
        filter_metadata: [(
            METADATA_KEY.to_string(),
            Struct {
                fields: [("source".to_string(), source)].into_iter().collect(),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// Hosts under the fallback domains that no route names (services in other clusters): resolved
/// per request from the Host header, TLS to port 443 unless the header names another port.
pub fn fallback(mesh: &Mesh) -> Cluster {
    let trust = custom_domain_trust(&mesh.bundles);
    let config = ClusterConfig {
        cluster_implementation_specifier: Some(ClusterImplementationSpecifier::DnsCacheConfig(
            dns_cache(mesh.dns_resolver),
        )),
        ..Default::default()
    };
    Cluster {
        name: FALLBACK_CLUSTER.to_string(),
        connect_timeout: Some(seconds(CONNECT_TIMEOUT_SECONDS)),
        lb_policy: LbPolicy::ClusterProvided.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
            name: "envoy.clusters.dynamic_forward_proxy".to_string(),
            typed_config: Some(pack_any(config)),
        })),
        // The forward proxy sets SNI and checks the SAN against each request's host itself.
        transport_socket: Some(tls_socket(None, &trust, &mesh.system_ca_file)),
        ..Default::default()
    }
}

/// The DNS cache shared by the fallback cluster and the dynamic forward proxy filter.
pub fn dns_cache(resolver: Option<SocketAddr>) -> DnsCacheConfig {
    DnsCacheConfig {
        name: FALLBACK_CLUSTER.to_string(),
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
    let endpoint = LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address(&address.0, address.1)),
            hostname: hostname.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    };
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![endpoint],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The pinned address of a socket, as a load-assignment `(address, port)` pair.
pub fn pinned(address: SocketAddr) -> (String, u16) {
    (address.ip().to_string(), address.port())
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
fn tls_socket(host: Option<&str>, trust: &Trust, system_ca_file: &str) -> TransportSocket {
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
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(context))),
    }
}
