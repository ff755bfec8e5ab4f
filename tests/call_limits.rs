//! Timeouts, retries and limits through stock Envoy: an idempotent request that meets a 503 is
//! tried once more by default and succeeds; a POST is not tried again; a request that keeps
//! failing is tried as many times as configured and no more; a route's `timeouts.request`
//! answers 504 at its time, without waiting for the slow upstream, and an attempt that outlives
//! `timeouts.backendRequest` is tried again; a route's `retry` retries its codes its number of
//! times, any method; past `--max-requests` in flight through the cluster, a request is answered
//! 503 at once; an address that keeps failing is set aside while the others serve, and comes
//! back.

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
    /// The service's other addresses, when it has more than one.
    others: Vec<TlsUpstream>,
    egress: std::net::SocketAddr,
    envoy: Envoy,
    _controller: Controller,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// `routes`: name, host and the `rules` lines of each HTTPRoute.
    async fn start(routes: &[(&str, &str, &str)], flags: &[&str]) -> Sidecar {
        Self::start_at(routes, flags, 1).await
    }

    /// The same, each host at `addresses` addresses (upstreams with the same certificate).
    async fn start_at(routes: &[(&str, &str, &str)], flags: &[&str], addresses: usize) -> Sidecar {
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
        let mut others = Vec::new();
        for _ in 1..addresses {
            others.push(upstream.beside().await);
        }
        let egress_port = free_port();
        let mut args = upstream.controller_args(&manifests, &hosts, egress_port);
        for (other, host) in others
            .iter()
            .flat_map(|o| hosts.iter().map(move |h| (o, h)))
        {
            args.push(format!("--resolve={host}={}", other.address));
        }
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
            others,
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
            (
                "ledger",
                "ledger.example.com",
                "  rules:\n  - timeouts: {request: 5s, backendRequest: 300ms}\n",
            ),
            (
                "payments",
                "payments.example.com",
                "  rules:\n  - retry: {attempts: 3, codes: [500, 502], backoff: 10ms}\n",
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

    // An attempt that outlives its own limit is retried like a reset: three attempts of 300 ms
    // each (--retries=2), then the sidecar's 504, long before the request's five seconds.
    let started = Instant::now();
    let cut = http::get(egress, "ledger.example.com", "/delay/2000")
        .await
        .expect("an answer");
    let took = started.elapsed();
    assert_eq!(cut.status, 504, "{cut:?}");
    assert_eq!(upstream.asked("GET", "/delay/2000"), 3);
    assert!(took < Duration::from_millis(2000), "took {took:?}");

    // A route's own retry: its codes, its number of times, and every method, as it asked.
    let route_retried = http::get(egress, "payments.example.com", "/status/500")
        .await
        .expect("an answer");
    assert_eq!(route_retried.status, 500, "{route_retried:?}");
    assert_eq!(upstream.asked("GET", "/status/500"), 1 + 4);
    let posted = http::request(
        egress,
        "POST",
        "payments.example.com",
        "/status/502",
        &[],
        "",
    )
    .await
    .expect("an answer");
    assert_eq!(posted.status, 502, "{posted:?}");
    assert_eq!(upstream.asked("POST", "/status/502"), 4);
    // A 503 is not among its codes.
    let not_listed = http::get(egress, "payments.example.com", "/status/503")
        .await
        .expect("an answer");
    assert_eq!(not_listed.status, 503, "{not_listed:?}");
    assert_eq!(upstream.asked("GET", "/status/503"), 3 + 1);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_address_is_set_aside_and_comes_back() {
    let sidecar = Sidecar::start_at(
        &[("orders", "orders.example.com", "")],
        &["--retries=0", "--eject-after=3", "--ejection-time=2s"],
        2,
    )
    .await;
    let (healthy, failing) = (&sidecar.upstream, &sidecar.others[0]);
    let (egress, envoy) = (sidecar.egress, &sidecar.envoy);
    let cluster = "cluster.lattice|orders.example.com|443";

    // One of the two addresses answers 503 to everything: after three in a row it is set aside,
    // and every later request goes to the other.
    failing.fail(true);
    let mut statuses = Vec::new();
    for n in 0..30 {
        let response = http::get(egress, "orders.example.com", &format!("/set-aside/{n}"))
            .await
            .expect("an answer");
        statuses.push(response.status);
    }
    let failed = statuses.iter().filter(|status| **status == 503).count();
    assert!(
        (1..=3).contains(&failed),
        "{failed} requests failed: {statuses:?}"
    );
    assert!(
        statuses[10..].iter().all(|status| *status == 200),
        "{statuses:?}"
    );
    let ejections = format!("{cluster}.outlier_detection.ejections_enforced_consecutive_5xx");
    assert_eq!(envoy.counter(&ejections).await, 1);
    let asked = |upstream: &TlsUpstream| {
        let requests = upstream.requests.lock().unwrap();
        requests.iter().filter(|r| r.contains("/back/")).count()
    };

    // Healthy again, it is used again once its time is out.
    failing.fail(false);
    let mut n = 0;
    eventually("the set-aside address to be used again", WAIT, || {
        n += 1;
        let path = format!("/back/{n}");
        async move {
            let response = http::get(egress, "orders.example.com", &path).await?;
            assert_eq!(response.status, 200, "{response:?}");
            (asked(failing) > 0).then_some(())
        }
    })
    .await;
    assert!(asked(healthy) > 0);
    assert_eq!(
        envoy
            .counter(&format!("{cluster}.outlier_detection.ejections_active"))
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_attempt_limit_holds_idempotent_requests_only() {
    let sidecar = Sidecar::start(
        &[("orders", "orders.example.com", "")],
        &["--attempt-timeout=300ms", "--retries=1"],
    )
    .await;
    let (upstream, egress) = (&sidecar.upstream, sidecar.egress);

    // A GET: two attempts of 300 ms, then the sidecar's 504.
    let started = Instant::now();
    let cut = http::get(egress, "orders.example.com", "/delay/1000")
        .await
        .expect("an answer");
    assert_eq!(cut.status, 504, "{cut:?}");
    assert_eq!(upstream.asked("GET", "/delay/1000"), 2);
    assert!(started.elapsed() < Duration::from_millis(1000));

    // A POST is neither cut short nor tried again: it has the request's 15 s.
    let posted = http::request(egress, "POST", "orders.example.com", "/delay/1000", &[], "")
        .await
        .expect("an answer");
    assert_eq!(posted.status, 200, "{posted:?}");
    assert_eq!(upstream.asked("POST", "/delay/1000"), 1);
}
