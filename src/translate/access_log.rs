//! The egress listener's access log: one JSON line per request on Envoy's stdout, saying what
//! was called, what answered, through which route and signing mode, and on a 403 which error
//! Lattice gave. The route is named by the provenance its name carries (`destination h:p; route
//! namespace/name; auth policy …`): the destination, its route and the policies Lattice
//! evaluates, at no cost per request. The error is in the 403's body, which only a filter can
//! read: a small Lua filter (`envoy/access_log.lua`) that a
//! matcher on the response status skips for every other answer, so it costs nothing then.

use envoy_types::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source::Specifier,
    substitution_format_string::Format,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    StdoutAccessLog, stdout_access_log::AccessLogFormat,
};
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::Lua;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::r#type::matcher::v3::HttpResponseHeaderMatchInput;
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use envoy_types::pb::xds::core::v3::TypedExtensionConfig as XdsExtension;
use envoy_types::pb::xds::r#type::matcher::v3::matcher::matcher_list::Predicate;
use envoy_types::pb::xds::r#type::matcher::v3::matcher::matcher_list::predicate::{
    MatchType, SinglePredicate, single_predicate,
};
use envoy_types::pb::xds::r#type::matcher::v3::{
    StringMatcher as XdsStringMatcher, string_matcher::MatchPattern as XdsMatchPattern,
};
use envoy_types::util::pack_any;
use prost::{Message, Name};

use super::skipped_when;
use crate::model::Mesh;

const SCRIPT: &str = include_str!("../../envoy/access_log.lua");

/// The fields of each line, in the order a reader looks for them.
fn fields(mesh: &Mesh) -> Vec<(&'static str, String)> {
    let operator = |operator: &str| operator.to_string();
    // The path as the application sent it; without its query string when asked, since a
    // query may carry tokens or personal data.
    let path = match mesh.access_log_query {
        true => "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        false => "%PATH(NQ)%",
    };
    vec![
        ("time", operator("%START_TIME%")),
        ("method", operator("%REQ(:METHOD)%")),
        ("authority", operator("%REQ(:AUTHORITY)%")),
        ("path", operator(path)),
        ("protocol", operator("%PROTOCOL%")),
        ("response_code", operator("%RESPONSE_CODE%")),
        ("response_flags", operator("%RESPONSE_FLAGS%")),
        // Why Envoy answered as it did: `via_upstream` (the service answered),
        // `lattice_xds_signer_<reason>` (the signer refused), `ext_proc_error_gRPC_error_14{…}`
        // (the signer was unreachable), `route_not_found`, ...
        ("response_code_details", operator("%RESPONSE_CODE_DETAILS%")),
        ("duration_ms", operator("%DURATION%")),
        ("upstream_host", operator("%UPSTREAM_HOST%")),
        ("route", operator("%ROUTE_NAME%")),
        ("signing", mesh.signing.mode.as_str().to_string()),
        (
            "lattice_error",
            operator("%DYNAMIC_METADATA(lattice_xds:lattice_error)%"),
        ),
        ("request_id", operator("%REQ(X-REQUEST-ID)%")),
    ]
}

/// The connection manager's access logs: none when they are switched off.
pub fn access_logs(mesh: &Mesh) -> Vec<AccessLog> {
    if !mesh.access_log {
        return Vec::new();
    }
    vec![AccessLog {
        name: "envoy.access_loggers.stdout".to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(stdout_json(fields(
            mesh,
        )))),
        ..Default::default()
    }]
}

/// The pass-through chain's access log: one JSON line per connection that was neither HTTP nor
/// redirected to the egress port itself (TLS to terminate elsewhere, any other protocol), with
/// its server name when it is TLS.
pub fn passthrough_logs(mesh: &Mesh) -> Vec<AccessLog> {
    if !mesh.access_log {
        return Vec::new();
    }
    let operator = |operator: &str| operator.to_string();
    let fields = vec![
        ("time", operator("%START_TIME%")),
        ("protocol", "tcp".to_string()),
        ("server_name", operator("%REQUESTED_SERVER_NAME%")),
        ("destination", operator("%DOWNSTREAM_LOCAL_ADDRESS%")),
        ("upstream_host", operator("%UPSTREAM_HOST%")),
        ("response_flags", operator("%RESPONSE_FLAGS%")),
        ("duration_ms", operator("%DURATION%")),
        ("bytes_sent", operator("%BYTES_SENT%")),
        ("bytes_received", operator("%BYTES_RECEIVED%")),
        ("route", operator(super::listener::PASSTHROUGH)),
        ("signing", "none".to_string()),
    ];
    vec![AccessLog {
        name: "envoy.access_loggers.stdout".to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(stdout_json(fields))),
        ..Default::default()
    }]
}

/// A stdout log writing `fields` as JSON, encoded the same way every time.
///
/// `json_format` is a `Struct`, a map that prost encodes in `HashMap` order, which differs
/// from one map to the next: the listener's version would change with every rebuild. Protobuf
/// merges concatenated messages and adds up their map entries, so one message per field, in
/// name order, encodes the same log format deterministically.
fn stdout_json(mut fields: Vec<(&'static str, String)>) -> Any {
    fields.sort();
    let mut value = Vec::new();
    for (name, text) in fields {
        let field = Value {
            kind: Some(Kind::StringValue(text)),
        };
        let one = StdoutAccessLog {
            access_log_format: Some(AccessLogFormat::LogFormat(SubstitutionFormatString {
                format: Some(Format::JsonFormat(Struct {
                    fields: [(name.to_string(), field)].into_iter().collect(),
                })),
                ..Default::default()
            })),
        };
        value.extend(one.encode_to_vec());
    }
    Any {
        type_url: StdoutAccessLog::type_url(),
        value,
    }
}

/// The Lua filter that finds Lattice's error for the log and the request spans' `lattice.error`,
/// skipped unless the answer is a 403; `None` without logs or traces.
pub fn filter(mesh: &Mesh) -> Option<HttpFilter> {
    if !mesh.access_log && mesh.tracing.is_none() {
        return None;
    }
    let lua = Lua {
        default_source_code: Some(DataSource {
            specifier: Some(Specifier::InlineString(SCRIPT.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = XdsExtension {
        name: "status".to_string(),
        typed_config: Some(pack_any(HttpResponseHeaderMatchInput {
            header_name: ":status".to_string(),
        })),
    };
    let not_403 = Predicate {
        match_type: Some(MatchType::NotMatcher(Box::new(Predicate {
            match_type: Some(MatchType::SinglePredicate(SinglePredicate {
                input: Some(status),
                matcher: Some(single_predicate::Matcher::ValueMatch(XdsStringMatcher {
                    match_pattern: Some(XdsMatchPattern::Exact("403".to_string())),
                    ..Default::default()
                })),
            })),
        }))),
    };
    Some(skipped_when(ACCESS_LOG_FILTER, pack_any(lua), not_403))
}

/// The Lua filter's name in the chain (the signing filter in the Lua mode has its own).
const ACCESS_LOG_FILTER: &str = "lattice-xds.access-log";
