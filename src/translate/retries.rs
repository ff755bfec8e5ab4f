//! How long a caller's request may take, and when it is tried again.
//!
//! Every route carries its limit on the whole request. The retries are carried once for the
//! whole listener rather than by every virtual host: a filter gives each idempotent request
//! (GET, HEAD, OPTIONS, PUT, DELETE) Envoy's retry headers with the cluster-wide defaults, and
//! the router reads them. A retry policy in each virtual host, with its five method matchers,
//! cost a sidecar about 4.3 KB per destination, the matchers most of it (`docs/benchmarks.md`).
//! A destination whose calls differ from the defaults (its route's `timeouts` or `retry`) has a
//! retry policy of its own, and that filter is off on its route.

use envoy_types::pb::envoy::config::common::mutation_rules::v3::{
    HeaderMutation as Mutation, header_mutation,
};
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{
    FilterConfig, HeaderMatcher, RetryPolicy, Route, header_matcher::HeaderMatchSpecifier,
    retry_policy::RetryBackOff, route::Action,
};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{
    HeaderMutation, Mutations,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    HttpRequestHeaderMatchInput, StringMatcher, string_matcher::MatchPattern,
};
use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
use envoy_types::pb::xds::core::v3::TypedExtensionConfig as XdsExtension;
use envoy_types::pb::xds::r#type::matcher::v3::matcher::matcher_list::Predicate;
use envoy_types::pb::xds::r#type::matcher::v3::matcher::matcher_list::predicate::{
    MatchType, PredicateList, SinglePredicate, single_predicate,
};
use envoy_types::pb::xds::r#type::matcher::v3::{
    StringMatcher as XdsStringMatcher, string_matcher::MatchPattern as XdsMatchPattern,
};
use envoy_types::util::pack_any;

use super::{duration, skipped_when};
use crate::model::{Calls, Mesh};

/// Which requests a retry may repeat: those of the methods HTTP calls idempotent (RFC 9110).
const IDEMPOTENT_METHODS: [&str; 5] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"];

/// What a retry follows: a connection that failed, a reset before any response (or an attempt
/// past its own limit), or a retried status: by default a 503, VPC Lattice's answer while a
/// target is unavailable, as during a rolling restart.
const RETRY_ON: &str = "connect-failure,reset,retriable-status-codes";

/// The filter that gives idempotent requests the default retries.
pub const FILTER: &str = "lattice-xds.retry-defaults";

/// The filter, when the defaults allow a retry or limit an attempt.
pub fn filter(mesh: &Mesh) -> Option<HttpFilter> {
    let calls = &mesh.calls;
    let retries = calls.allowed_retries();
    if !has_defaults(calls) {
        return None;
    }
    let header = |key: &str, value: String| Mutation {
        action: Some(header_mutation::Action::Append(HeaderValueOption {
            header: Some(HeaderValue {
                key: key.to_string(),
                value,
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
            ..Default::default()
        })),
    };
    let mut request_mutations = Vec::new();
    if retries > 0 {
        request_mutations.extend([
            header("x-envoy-retry-on", RETRY_ON.to_string()),
            header("x-envoy-retriable-status-codes", "503".to_string()),
        ]);
    }
    // One retry is what Envoy's router makes of the headers above alone.
    if retries > 1 {
        request_mutations.push(header("x-envoy-max-retries", retries.to_string()));
    }
    if let Some(attempt) = calls.attempt_timeout {
        request_mutations.push(header(
            "x-envoy-upstream-rq-per-try-timeout-ms",
            attempt.as_millis().to_string(),
        ));
    }
    let mutation = HeaderMutation {
        mutations: Some(Mutations {
            request_mutations,
            ..Default::default()
        }),
        ..Default::default()
    };
    // Skipped unless the method is one of the idempotent ones.
    let method = |name: &str| Predicate {
        match_type: Some(MatchType::SinglePredicate(SinglePredicate {
            input: Some(XdsExtension {
                name: "method".to_string(),
                typed_config: Some(pack_any(HttpRequestHeaderMatchInput {
                    header_name: ":method".to_string(),
                })),
            }),
            matcher: Some(single_predicate::Matcher::ValueMatch(XdsStringMatcher {
                match_pattern: Some(XdsMatchPattern::Exact(name.to_string())),
                ..Default::default()
            })),
        })),
    };
    let not_idempotent = Predicate {
        match_type: Some(MatchType::NotMatcher(Box::new(Predicate {
            match_type: Some(MatchType::OrMatcher(PredicateList {
                predicate: IDEMPOTENT_METHODS.map(method).to_vec(),
            })),
        }))),
    };
    Some(skipped_when(FILTER, pack_any(mutation), not_idempotent))
}

/// Whether the defaults need the filter: they allow a retry or limit an attempt.
fn has_defaults(calls: &Calls) -> bool {
    calls.allowed_retries() > 0 || calls.attempt_timeout.is_some()
}

/// Sets a route's limit on the whole request (retries included; `0s` to Envoy is none). With
/// the cluster-wide defaults that is all: the filter adds the retries. Other calls get a retry
/// policy of their own when they allow any retry or limit an attempt, and the filter off. The
/// waits between attempts are Envoy's own unless a route's `retry` sets them: each drawn at
/// random below a bound that starts at 25 ms and grows with each retry up to 250 ms.
pub fn limit_calls(route: &mut Route, calls: &Calls, mesh: &Mesh) {
    let Some(Action::Route(action)) = &mut route.action else {
        return;
    };
    action.timeout = Some(
        calls
            .request_timeout
            .map_or_else(Duration::default, duration),
    );
    if calls == &mesh.calls {
        return;
    }
    if has_defaults(&mesh.calls) {
        let off = FilterConfig {
            disabled: true,
            ..Default::default()
        };
        (route.typed_per_filter_config).insert(FILTER.to_string(), pack_any(off));
    }
    let retries = calls.allowed_retries();
    if retries == 0 && calls.attempt_timeout.is_none() {
        return;
    }
    let policy = RetryPolicy {
        retry_on: RETRY_ON.to_string(),
        num_retries: Some(UInt32Value { value: retries }),
        per_try_timeout: calls.attempt_timeout.map(duration),
        ..Default::default()
    };
    action.retry_policy = Some(match &calls.retry {
        // The defaults' kind: an idempotent request, on a 503.
        None => RetryPolicy {
            retriable_status_codes: vec![503],
            retriable_request_headers: IDEMPOTENT_METHODS.map(exact_method).to_vec(),
            ..policy
        },
        // The route asked: any method, on its codes, after its backoff (at most ten times it
        // as the waits grow, as Envoy's own does).
        Some(retry) => RetryPolicy {
            retriable_status_codes: retry.codes.iter().map(u32::from).collect(),
            retry_back_off: retry.backoff.map(|base| RetryBackOff {
                base_interval: Some(duration(base)),
                max_interval: Some(duration(base * 10)),
            }),
            ..policy
        },
    });
}

fn exact_method(method: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: ":method".to_string(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(method.to_string())),
            ..Default::default()
        })),
        ..Default::default()
    }
}
