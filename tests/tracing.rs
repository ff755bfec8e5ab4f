//! The sidecar's spans, received by a real OpenTelemetry Collector built from its Go modules:
//! each call through the sidecar to the local VPC Lattice emulator leaves a span with the
//! destination, its route, the signing mode, the Lattice address and Lattice's error, and a
//! child span per attempt; a trace the application started goes on through the sidecar to the
//! service, signed as before.

mod support;

use std::time::Duration;

use support::collector::{Collector, Span};
use support::emulated::{HOST, Lattice, PRIVATE_HOST, Reach};
use support::{eventually, http};

/// The application's own trace and span, as its `traceparent` carries them (sampled).
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const APPLICATION_SPAN: &str = "00f067aa0ba902b7";
/// The destination's cluster, and the signer's.
const CLUSTER: &str = "lattice|orders.example.com|443";
const SIGNER: &str = "lattice-xds-signer-grpc";

/// A collector, and a sidecar signing in the mode `signing` that sends it every span.
async fn traced(dir: &std::path::Path, signing: &str) -> (Collector, Lattice) {
    let collector = Collector::start(dir).await;
    let flags = [
        format!("--trace-collector={}", collector.address),
        "--trace-sampling=1".to_string(),
    ];
    let lattice = Lattice::start_reached(Reach::Pinned, signing, &[], &flags).await;
    (collector, lattice)
}

/// A GET of `path` from the application, in its own sampled trace.
async fn get_in_trace(lattice: &Lattice, path: &str) -> http::HttpResponse {
    let traceparent = format!("00-{TRACE}-{APPLICATION_SPAN}-01");
    let headers = [("traceparent", traceparent.as_str())];
    http::request(lattice.egress, "GET", HOST, path, &headers, "")
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_leaves_spans_that_continue_the_applications_trace() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, lattice) = traced(dir.path(), "ext-proc").await;

    // The application's trace goes on: the service receives the same trace, under a span of
    // the sidecar's; the signature still holds.
    let response = get_in_trace(&lattice, "/continued").await;
    assert_eq!(response.status, 200, "{response:?}");
    let received = (response.body.trim())
        .strip_prefix("orders-v1 traceparent=")
        .expect("the service's answer");
    assert!(received.starts_with(&format!("00-{TRACE}-")), "{received}");
    assert!(!received.contains(APPLICATION_SPAN), "{received}");

    // A call Lattice refuses: its span names the error.
    let denied = http::get(lattice.egress, PRIVATE_HOST, "/denied")
        .await
        .expect("an answer");
    assert_eq!(denied.status, 403, "{denied:?}");

    let spans = eventually(
        "the spans at the collector",
        Duration::from_secs(30),
        || {
            let spans = collector.spans();
            async move {
                let request = (spans.iter())
                    .find(|span| span.trace_id == TRACE && span.parent_span_id == APPLICATION_SPAN)?
                    .clone();
                let children =
                    || (spans.iter()).filter(|span| span.parent_span_id == request.span_id);
                let attempt = children()
                    .find(|span| span.attribute("upstream_cluster") == Some(CLUSTER))?
                    .clone();
                let signing = children()
                    .find(|span| span.attribute("upstream_cluster") == Some(SIGNER))?
                    .clone();
                // The request's span, not its attempt's.
                let denied = (spans.iter())
                    .find(|span| span.name == format!("egress {PRIVATE_HOST}"))?
                    .clone();
                Some((request, attempt, signing, denied))
            }
        },
    )
    .await;
    let (request, attempt, signing, denied): (Span, Span, Span, Span) = spans;

    assert_eq!(request.service, "lattice-xds-sidecar");
    assert_eq!(request.name, format!("egress {HOST}"));
    assert_eq!(request.attribute("lattice.destination"), Some(HOST));
    let route = request.attribute("lattice.route").unwrap_or_default();
    assert!(route.contains("route apps/orders"), "{request:?}");
    assert_eq!(request.attribute("lattice.signing"), Some("ext-proc sigv4"));
    let address = lattice.address.to_string();
    assert_eq!(
        request.attribute("lattice.upstream_address"),
        Some(address.as_str()),
        "{request:?}"
    );
    assert_eq!(request.attribute("http.status_code"), Some("200"));
    // The attempt's span is the one the service's traceparent names; the call to the signer
    // is a span of its own.
    assert_eq!(attempt.trace_id, TRACE);
    assert!(
        received.contains(&attempt.span_id),
        "{received} {attempt:?}"
    );
    assert!(signing.name.contains("ExternalProcessor"), "{signing:?}");

    assert_eq!(
        denied.attribute("lattice.error"),
        Some("AccessDeniedException"),
        "{denied:?}"
    );
    assert_eq!(denied.attribute("http.status_code"), Some("403"));
}

/// Envoy's own signer signs before each attempt's span rewrites the trace context, which it
/// therefore leaves out of the signature: a traced call it signs still reaches the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_call_signed_by_envoys_own_filter_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, lattice) = traced(dir.path(), "native").await;
    let response = get_in_trace(&lattice, "/native").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.body.contains(&format!("traceparent=00-{TRACE}-")),
        "{response:?}"
    );
    eventually("the request's span", Duration::from_secs(30), || {
        let spans = collector.spans();
        async move {
            spans
                .iter()
                .find(|span| span.parent_span_id == APPLICATION_SPAN)
                .filter(|span| span.attribute("lattice.signing") == Some("native sigv4"))
                .map(|_| ())
        }
    })
    .await;
}
