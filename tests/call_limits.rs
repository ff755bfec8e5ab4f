//! Timeouts and retries through stock Envoy: an idempotent request that meets a 503 is tried
//! once more by default and succeeds; a POST is not tried again; a request that keeps failing
//! is tried as many times as configured and no more; a route's `timeouts.request` answers 504
//! at its time, without waiting for the slow upstream.

mod support;

use std::time::{Duration, Instant};

use support::envoy::Envoy;
use support::process::Controller;
use support::upstream::TlsUpstream;
use support::{eventually, free_port, http};

const GATEWAY: &str = include_str!("../examples/cluster1/gateway.yaml");
const WAIT: Duration = Duration::from_secs(20);

fn route(name: &str, host: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: apps\n\
         spec:\n  hostnames: [{host}]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n{rules}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_and_routes_set_their_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("gateway.yaml"), GATEWAY).unwrap();
    std::fs::write(
        manifests.join("orders.yaml"),
        route("orders", "orders.example.com", ""),
    )
    .unwrap();
    std::fs::write(
        manifests.join("reports.yaml"),
        route(
            "reports",
            "reports.example.com",
            "  rules:\n  - timeouts: {request: 1s}\n",
        ),
    )
    .unwrap();
    let hosts = ["orders.example.com", "reports.example.com"];
    let upstream = TlsUpstream::start(dir.path(), &hosts).await;
    let egress_port = free_port();
    let mut args = upstream.controller_args(&manifests, &hosts, egress_port);
    args.push("--retries=2".to_string());
    let controller = Controller::start(dir.path(), &args).await;
    let envoy = Envoy::start(dir.path(), "demo-pod", controller.xds_port, "delta").await;
    let egress = format!("127.0.0.1:{egress_port}").parse().unwrap();
    for host in hosts {
        eventually(&format!("{host} to be served"), WAIT, || async {
            http::get(egress, host, "/ready")
                .await
                .filter(|r| r.status == 200)
        })
        .await;
    }

    // A GET that meets a 503 is tried again, and the application sees the answer that worked.
    let response = http::get(egress, "orders.example.com", "/fail-first/get")
        .await
        .expect("an answer");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(upstream.asked("GET", "/fail-first/get"), 2);

    // A POST may have been done already: its 503 reaches the application, from one attempt.
    let posted = http::request(
        egress,
        "POST",
        "orders.example.com",
        "/fail-first/post",
        &[],
        "",
    )
    .await
    .expect("an answer");
    assert_eq!(posted.status, 503, "{posted:?}");
    assert_eq!(upstream.asked("POST", "/fail-first/post"), 1);

    // One that keeps failing is tried three times in all (--retries=2), and no more.
    let failing = http::get(egress, "orders.example.com", "/status/503")
        .await
        .expect("an answer");
    assert_eq!(failing.status, 503, "{failing:?}");
    assert_eq!(upstream.asked("GET", "/status/503"), 3);
    // Other failures are the service's answer, not retried.
    let failing = http::get(egress, "orders.example.com", "/status/500")
        .await
        .expect("an answer");
    assert_eq!(failing.status, 500, "{failing:?}");
    assert_eq!(upstream.asked("GET", "/status/500"), 1);

    // The route's one second: a 504 from the sidecar, not the upstream's answer three seconds on.
    let started = Instant::now();
    let slow = http::get(egress, "reports.example.com", "/delay/3000")
        .await
        .expect("an answer");
    let took = started.elapsed();
    assert_eq!(slow.status, 504, "{slow:?}");
    assert!(
        took < Duration::from_millis(2500),
        "the answer took {took:?}, as long as the upstream"
    );
    // The default (15 s) lets the same request through on the other host.
    let patient = http::get(egress, "orders.example.com", "/delay/1500")
        .await
        .expect("an answer");
    assert_eq!(patient.status, 200, "{patient:?}");

    // The limits are in what Envoy accepted.
    let dump = envoy.config_dump().await.to_string();
    assert!(dump.contains("\"timeout\":\"1s\""), "{dump}");
}
