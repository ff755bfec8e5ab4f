//! Timeouts, retries and limits through stock Envoy: an idempotent request that meets a 503 is
//! tried once more by default and succeeds; a POST is not tried again; a request that keeps
//! failing is tried as many times as configured and no more; a route's `timeouts.request`
//! answers 504 at its time, without waiting for the slow upstream; past `--max-requests` in
//! flight through the shared cluster, a request is answered 503 at once.

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

/// A sidecar whose pod calls each route's host at one TLS upstream: its controller runs with
/// `flags` besides, and every host is served before it is handed over.
struct Sidecar {
    upstream: TlsUpstream,
    egress: std::net::SocketAddr,
    envoy: Envoy,
    _controller: Controller,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// `routes`: name, host and the `rules` lines of each HTTPRoute.
    async fn start(routes: &[(&str, &str, &str)], flags: &[&str]) -> Sidecar {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::write(manifests.join("gateway.yaml"), GATEWAY).unwrap();
        for (name, host, rules) in routes {
            let file = manifests.join(format!("{name}.yaml"));
            std::fs::write(file, route(name, host, rules)).unwrap();
        }
        let hosts: Vec<&str> = routes.iter().map(|(_, host, _)| *host).collect();
        let upstream = TlsUpstream::start(dir.path(), &hosts).await;
        let egress_port = free_port();
        let mut args = upstream.controller_args(&manifests, &hosts, egress_port);
        args.extend(flags.iter().map(|flag| flag.to_string()));
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
        Sidecar {
            upstream,
            egress,
            envoy,
            _controller: controller,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_and_routes_set_their_time() {
    let sidecar = Sidecar::start(
        &[
            ("orders", "orders.example.com", ""),
            (
                "reports",
                "reports.example.com",
                "  rules:\n  - timeouts: {request: 1s}\n",
            ),
        ],
        &["--retries=2"],
    )
    .await;
    let (upstream, egress, envoy) = (&sidecar.upstream, sidecar.egress, &sidecar.envoy);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_request_limit_a_request_is_refused_at_once() {
    let sidecar = Sidecar::start(
        &[("orders", "orders.example.com", "")],
        &["--max-requests=1", "--max-pending-requests=1"],
    )
    .await;
    let (upstream, egress) = (&sidecar.upstream, sidecar.egress);

    // One slow request holds the only place; once the upstream has it, another is refused.
    let slow =
        tokio::spawn(async move { http::get(egress, "orders.example.com", "/delay/3000").await });
    eventually("the slow request to reach the upstream", WAIT, || async {
        (upstream.asked("GET", "/delay/3000") == 1).then_some(())
    })
    .await;
    let refused = http::get(egress, "orders.example.com", "/second")
        .await
        .expect("an answer");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(
        refused.header("x-envoy-overloaded"),
        Some("true"),
        "{refused:?}"
    );
    assert_eq!(
        upstream.asked("GET", "/second"),
        0,
        "the refused request was sent"
    );
    let slow = slow.await.unwrap().expect("an answer");
    assert_eq!(slow.status, 200, "{slow:?}");
    // With the place free again, requests go through.
    let after = http::get(egress, "orders.example.com", "/after")
        .await
        .expect("an answer");
    assert_eq!(after.status, 200, "{after:?}");
}
