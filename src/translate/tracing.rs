//! The sidecar's spans: with a collector configured, the egress connection manager starts (or
//! continues, from the application's W3C `traceparent`) a span per request and one per attempt,
//! and Envoy's OpenTelemetry tracer exports them over OTLP/gRPC. The request's span carries what
//! the sidecar knows of the call as attributes; each attempt's, the address it went to.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::{GrpcService, grpc_service};
use envoy_types::pb::envoy::config::trace::v3::{OpenTelemetryConfig, tracing};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing as RequestTracing;
use envoy_types::pb::envoy::r#type::tracing::v3::{CustomTag, custom_tag};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;

use super::cluster::{load_assignment, speak_http2};
use super::seconds;
use crate::model::{Mesh, Tracing};

/// The cluster of the collector the spans go to.
pub const COLLECTOR_CLUSTER: &str = "lattice-trace-collector";

/// The resource's `service.name` of every sidecar's spans.
const SERVICE_NAME: &str = "lattice-xds-sidecar";

/// How long an export may take before the spans are dropped.
const EXPORT_TIMEOUT_SECONDS: i64 = 2;

/// What the egress connection manager traces, when a collector is configured.
pub fn requests(mesh: &Mesh) -> Option<RequestTracing> {
    let tracing = mesh.tracing.as_ref()?;
    let exporter = OpenTelemetryConfig {
        grpc_service: Some(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: COLLECTOR_CLUSTER.to_string(),
                    ..Default::default()
                },
            )),
            timeout: Some(seconds(EXPORT_TIMEOUT_SECONDS)),
            ..Default::default()
        }),
        service_name: SERVICE_NAME.to_string(),
        ..Default::default()
    };
    let every = Some(Percent { value: 100.0 });
    Some(RequestTracing {
        provider: Some(tracing::Http {
            name: "envoy.tracers.opentelemetry".to_string(),
            config_type: Some(tracing::http::ConfigType::TypedConfig(pack_any(exporter))),
        }),
        client_sampling: every,
        random_sampling: Some(Percent {
            value: tracing.sampled_percent(),
        }),
        overall_sampling: every,
        custom_tags: attributes(mesh),
        // Named for what the application asked: `egress orders.example.com`.
        operation: "egress %REQ(:AUTHORITY)%".to_string(),
        // A span per attempt: a retry shows as a second attempt, each with its address.
        spawn_upstream_span: Some(BoolValue { value: true }),
        ..Default::default()
    })
}

/// The request span's attributes: the destination, its route (the provenance its name
/// carries), the signing mode, the VPC Lattice address that answered, and the error type of a
/// 403 from Lattice (as the access log reads it).
fn attributes(mesh: &Mesh) -> Vec<CustomTag> {
    let tag = |name: &str, value: custom_tag::Type| CustomTag {
        tag: name.to_string(),
        r#type: Some(value),
    };
    let formatted = |format: &str| custom_tag::Type::Value(format.to_string());
    vec![
        tag("lattice.destination", formatted("%REQ(:AUTHORITY)%")),
        tag("lattice.route", formatted("%ROUTE_NAME%")),
        tag(
            "lattice.signing",
            custom_tag::Type::Literal(custom_tag::Literal {
                value: format!("{} {}", mesh.signing.mode, mesh.signing.algorithm),
            }),
        ),
        tag("lattice.upstream_address", formatted("%UPSTREAM_HOST%")),
        tag(
            "lattice.error",
            formatted("%DYNAMIC_METADATA(lattice_xds:lattice_error)%"),
        ),
    ]
}

/// The collector's cluster: its address, by DNS when it is a name; HTTP/2 in clear text.
pub fn collector(tracing: &Tracing) -> Cluster {
    let (host, port) = tracing
        .collector
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse().ok()?)))
        .unwrap_or((tracing.collector.as_str(), 4317));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let discovery = match host.parse::<std::net::IpAddr>() {
        Ok(_) => DiscoveryType::Static,
        Err(_) => DiscoveryType::StrictDns,
    };
    let mut cluster = Cluster {
        name: COLLECTOR_CLUSTER.to_string(),
        connect_timeout: Some(seconds(EXPORT_TIMEOUT_SECONDS)),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery.into())),
        load_assignment: Some(load_assignment(
            COLLECTOR_CLUSTER,
            "",
            (host.to_string(), port),
        )),
        ..Default::default()
    };
    speak_http2(&mut cluster);
    cluster
}
