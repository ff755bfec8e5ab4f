//! The signing filter of each mode, and the clusters that reach the signer sidecar.
//!
//! Every mode fails closed: ext_proc with `failure_mode_allow: false`, the Lua script answering
//! any signer failure with an error, and the native filter signing in Envoy itself.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, GrpcService, HeaderValue, data_source::Specifier, grpc_service,
};
use envoy_types::pb::envoy::extensions::filters::http::aws_request_signing::v3::AwsRequestSigning;
use envoy_types::pb::envoy::extensions::filters::http::aws_request_signing::v3::aws_request_signing::SigningAlgorithm as SigningAlgorithmProto;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::{
    ExternalProcessor, ProcessingMode, processing_mode::BodySendMode,
    processing_mode::HeaderSendMode,
};
use envoy_types::pb::envoy::extensions::dynamic_modules::v3::DynamicModuleConfig;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::Lua;
use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLogFilter, ExtensionFilter, access_log_filter, extension_filter,
};
use envoy_types::pb::envoy::config::core::v3::{
    SubstitutionFormatString, substitution_format_string::Format,
};
use envoy_types::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, LocalReplyConfig, ResponseMapper,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::util::pack_any;

use super::cluster::{load_assignment, load_assignment_at, pinned, pipe_address};
use super::{SIGNER_GRPC_CLUSTER, SIGNER_HTTP_CLUSTER, http_filter, seconds};
use crate::model::{SignerAddress, Signing, SigningAlgorithm, SigningMode};
use crate::signer::module;

const LUA_TEMPLATE: &str = include_str!("../../envoy/sign.lua");
const SIGNER_TIMEOUT_SECONDS: i64 = 1;

/// The Envoy filter name of a mode, `None` when nothing signs.
pub fn filter_name(mode: SigningMode) -> Option<&'static str> {
    match mode {
        SigningMode::ExtProc => Some("envoy.filters.http.ext_proc"),
        SigningMode::Lua => Some("envoy.filters.http.lua"),
        SigningMode::Native => Some("envoy.filters.http.aws_request_signing"),
        SigningMode::Module => Some("envoy.filters.http.dynamic_modules"),
        SigningMode::None => None,
    }
}

/// The HTTP filter that signs, placed before the router.
pub fn filter(signing: &Signing) -> Option<HttpFilter> {
    let name = filter_name(signing.mode)?;
    let config = match signing.mode {
        SigningMode::ExtProc => pack_any(ext_proc(signing)),
        SigningMode::Lua => pack_any(lua(signing)),
        SigningMode::Native => pack_any(native(signing)),
        SigningMode::Module => pack_any(module(signing)),
        SigningMode::None => return None,
    };
    Some(http_filter(name, config))
}

/// What Envoy says when the signer cannot be reached (ext_proc mode): ext_proc's own answer is
/// an empty 503, which reads like any other. The signer's refusals (no credentials, a request it
/// cannot sign) carry their own text and are left alone.
pub fn local_replies(signing: &Signing) -> Option<LocalReplyConfig> {
    if signing.mode != SigningMode::ExtProc {
        return None;
    }
    let unreachable = ExpressionFilter {
        expression: "response.code_details.startsWith('ext_proc_error')".to_string(),
        ..Default::default()
    };
    let filter = AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::ExtensionFilter(
            ExtensionFilter {
                name: "envoy.access_loggers.extension_filters.cel".to_string(),
                config_type: Some(extension_filter::ConfigType::TypedConfig(pack_any(
                    unreachable,
                ))),
            },
        )),
    };
    let body = SubstitutionFormatString {
        format: Some(Format::TextFormatSource(DataSource {
            specifier: Some(Specifier::InlineString(SIGNER_UNREACHABLE.to_string())),
            ..Default::default()
        })),
        content_type: "text/plain; charset=utf-8".to_string(),
        ..Default::default()
    };
    Some(LocalReplyConfig {
        mappers: vec![ResponseMapper {
            filter: Some(filter),
            body_format_override: Some(body),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// The body of that answer; Envoy fills in its details (the gRPC status and message).
pub const SIGNER_UNREACHABLE: &str = "lattice-xds: the signer is unreachable, so the request was not sent (%RESPONSE_CODE_DETAILS%)\n";

/// The clusters a mode needs to reach the signer sidecar.
pub fn clusters(signing: &Signing) -> Vec<Cluster> {
    match signing.mode {
        SigningMode::ExtProc => vec![signer_cluster(
            SIGNER_GRPC_CLUSTER,
            &signing.signer_grpc,
            true,
        )],
        SigningMode::Lua => vec![signer_cluster(
            SIGNER_HTTP_CLUSTER,
            &signing.signer_http,
            false,
        )],
        SigningMode::Native | SigningMode::Module | SigningMode::None => Vec::new(),
    }
}

/// Request headers only, never bodies; the region and service travel as gRPC metadata.
fn ext_proc(signing: &Signing) -> ExternalProcessor {
    let metadata = |key: &str, value: &str| HeaderValue {
        key: key.to_string(),
        value: value.to_string(),
        ..Default::default()
    };
    let mut initial_metadata = vec![metadata("x-lattice-xds-service", &signing.service)];
    if let Some(region) = &signing.region {
        initial_metadata.push(metadata("x-lattice-xds-region", region));
    }
    if signing.algorithm == SigningAlgorithm::SigV4a {
        initial_metadata.push(metadata(
            "x-lattice-xds-algorithm",
            signing.algorithm.as_str(),
        ));
        initial_metadata.push(metadata("x-lattice-xds-region-set", &signing.region_set));
    }
    ExternalProcessor {
        grpc_service: Some(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: SIGNER_GRPC_CLUSTER.to_string(),
                    ..Default::default()
                },
            )),
            timeout: Some(seconds(SIGNER_TIMEOUT_SECONDS)),
            initial_metadata,
            ..Default::default()
        }),
        failure_mode_allow: false,
        // An unreachable or failing signer is "service unavailable", like a refusal.
        status_on_error: Some(HttpStatus {
            code: StatusCode::ServiceUnavailable.into(),
        }),
        processing_mode: Some(ProcessingMode {
            request_header_mode: HeaderSendMode::Send.into(),
            response_header_mode: HeaderSendMode::Skip.into(),
            request_body_mode: BodySendMode::None.into(),
            response_body_mode: BodySendMode::None.into(),
            request_trailer_mode: HeaderSendMode::Skip.into(),
            response_trailer_mode: HeaderSendMode::Skip.into(),
        }),
        message_timeout: Some(seconds(SIGNER_TIMEOUT_SECONDS)),
        ..Default::default()
    }
}

fn lua(signing: &Signing) -> Lua {
    let code = LUA_TEMPLATE
        .replace("{{cluster}}", &lua_string(SIGNER_HTTP_CLUSTER))
        .replace(
            "{{region}}",
            &lua_string(signing.region.as_deref().unwrap_or_default()),
        )
        .replace("{{service}}", &lua_string(&signing.service))
        .replace("{{algorithm}}", &lua_string(signing.algorithm.as_str()))
        .replace("{{region_set}}", &lua_string(&signing.region_set));
    Lua {
        default_source_code: Some(DataSource {
            specifier: Some(Specifier::InlineString(code)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Lua string literal; JSON string escaping is valid Lua for these values.
fn lua_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// Envoy's own signer, configured as the reference sidecar does.
fn native(signing: &Signing) -> AwsRequestSigning {
    let matcher = |pattern: MatchPattern| StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    };
    let (algorithm, region) = match signing.algorithm {
        SigningAlgorithm::SigV4 => (
            SigningAlgorithmProto::AwsSigv4,
            signing.region.clone().unwrap_or_default(),
        ),
        // For SigV4A Envoy reads `region` as the region set.
        SigningAlgorithm::SigV4a => (SigningAlgorithmProto::AwsSigv4a, signing.region_set.clone()),
    };
    AwsRequestSigning {
        service_name: signing.service.clone(),
        region,
        signing_algorithm: algorithm.into(),
        use_unsigned_payload: true,
        match_excluded_headers: vec![
            matcher(MatchPattern::Prefix("x-envoy".to_string())),
            matcher(MatchPattern::Prefix("x-forwarded".to_string())),
            matcher(MatchPattern::Exact("x-amzn-trace-id".to_string())),
            // Each attempt's span rewrites the trace context after signing.
            matcher(MatchPattern::Exact("traceparent".to_string())),
            matcher(MatchPattern::Exact("tracestate".to_string())),
        ],
        ..Default::default()
    }
}

/// The signer inside Envoy: the dynamic module `lattice_xds_signer`, which Envoy loads from
/// `$ENVOY_DYNAMIC_MODULES_SEARCH_PATH/liblattice_xds_signer.so` and never unloads (its
/// credential refresher runs for the life of the process). Its configuration is the scope the
/// other modes send as gRPC metadata or Lua constants, as JSON; the module signs only within
/// the scope of its container's environment.
fn module(signing: &Signing) -> DynamicModuleFilter {
    let sigv4a = signing.algorithm == SigningAlgorithm::SigV4a;
    let settings = module::Settings {
        service: Some(signing.service.clone()),
        region: signing.region.clone(),
        algorithm: sigv4a.then(|| signing.algorithm.as_str().to_string()),
        region_set: sigv4a.then(|| signing.region_set.clone()),
    };
    DynamicModuleFilter {
        dynamic_module_config: Some(DynamicModuleConfig {
            name: module::NAME.to_string(),
            do_not_close: true,
            // The module's counters are Envoy stats under this prefix.
            metrics_namespace: module::NAME.to_string(),
            ..Default::default()
        }),
        filter_name: module::FILTER.to_string(),
        filter_config: Some(pack_any(
            serde_json::to_string(&settings).expect("strings serialize as JSON"),
        )),
        ..Default::default()
    }
}

fn signer_cluster(name: &str, address: &SignerAddress, http2: bool) -> Cluster {
    let load_assignment = match address {
        SignerAddress::Tcp(address) => load_assignment(name, "", pinned(*address)),
        SignerAddress::Unix(path) => load_assignment_at(name, "", pipe_address(path)),
    };
    let mut cluster = Cluster {
        name: name.to_string(),
        connect_timeout: Some(seconds(SIGNER_TIMEOUT_SECONDS)),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static.into())),
        load_assignment: Some(load_assignment),
        ..Default::default()
    };
    if http2 {
        super::cluster::speak_http2(&mut cluster);
    }
    cluster
}
