//! The called service rolls out behind the local VPC Lattice emulator (its targets refusing in
//! turn, streams reset), and the caller's sidecar with its defaults: a GET meets no error, as
//! the one retry goes to the next target; a POST is not tried again; a reset before any response
//! is tried again once; a route's own `retry` tries its attempts and no more, as the emulator
//! counts them; of two Lattice addresses (an emulator at each), the one answering only 503s is
//! set aside and comes back. Through the shared forward-proxy cluster (a host found by DNS on 443,
//! as VPC Lattice's are; needs root), the request limit holds and no host name is set aside.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::emulated::{HOST, Lattice, PRIVATE_HOST, RETRIED_HOST, Reach};
use support::{eventually, http};

const WAIT: Duration = Duration::from_secs(20);

const CLUSTER: &str = "cluster.lattice|orders.example.com|443";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_through_a_rolling_restart_meets_no_error() {
    // Three targets, each refusing for 300 ms in turn: a third of the attempts meet a 503.
    let lattice = Lattice::start(&[format!("--fault={HOST}=rolling=3x300ms")], &[]).await;

    let mut statuses = Vec::new();
    let mut attempts = Vec::new();
    let started = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    let mut n = 0;
    // Two seconds: every target refuses at least twice.
    while started.elapsed() < Duration::from_secs(2) {
        pace.tick().await;
        n += 1;
        let id = format!("rolling-get-{n}");
        let response = http::request(
            lattice.egress,
            "GET",
            HOST,
            &format!("/get/{n}"),
            &[("x-request-id", &id)],
            "",
        )
        .await
        .expect("an answer");
        statuses.push(response.status);
        attempts.push(
            response
                .header("x-lattice-emulator-attempt")
                .map(str::to_string),
        );
    }
    assert!(statuses.len() > 50, "only {} requests", statuses.len());
    let failed: Vec<_> = statuses.iter().filter(|status| **status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} GETs failed: {failed:?}",
        failed.len()
    );
    // Some met a refusing target, and were answered on their second attempt.
    let retried = (attempts.iter())
        .filter(|attempt| attempt.as_deref() == Some("2"))
        .count();
    assert!(retried > 5, "{retried} retried: {attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| matches!(a.as_deref(), Some("1" | "2"))),
        "{attempts:?}"
    );

    // A POST may have been done: what the refusing target answered reaches the application.
    let mut posted = Vec::new();
    for n in 0..30 {
        let id = format!("rolling-post-{n}");
        let response = http::request(
            lattice.egress,
            "POST",
            HOST,
            "/orders",
            &[("x-request-id", &id)],
            "{}",
        )
        .await
        .expect("an answer");
        assert_eq!(
            response.header("x-lattice-emulator-attempt"),
            Some("1"),
            "{response:?}"
        );
        posted.push(response.status);
    }
    let refused = posted.iter().filter(|status| **status == 503).count();
    assert!(refused > 0, "{posted:?}");
    assert!(posted.iter().all(|s| *s == 200 || *s == 503), "{posted:?}");
}

/// A route's own `retry` (attempts 3, on a 503): a POST that meets a 503 every time is tried
/// four times in all, as the emulator counts, and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_retry_tries_its_attempts_and_no_more() {
    let lattice = Lattice::start(&[format!("--fault={RETRIED_HOST}=unavailable=1")], &[]).await;
    let posted = http::request(
        lattice.egress,
        "POST",
        RETRIED_HOST,
        "/payments",
        &[("x-request-id", "route-retry-post")],
        "",
    )
    .await
    .expect("an answer");
    assert_eq!(posted.status, 503, "{posted:?}");
    assert_eq!(
        posted.header("x-lattice-emulator-attempt"),
        Some("4"),
        "{posted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_any_response_is_tried_again_once() {
    let lattice = Lattice::start(&[format!("--fault={HOST}=reset=1")], &[]).await;
    let retries = format!("{CLUSTER}.upstream_rq_retry");
    let before = lattice.envoy.counter(&retries).await;

    let response = http::get(lattice.egress, HOST, "/reset")
        .await
        .expect("an answer");
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        response.body.contains("reset"),
        "Envoy's answer names the reset: {response:?}"
    );
    assert_eq!(lattice.envoy.counter(&retries).await - before, 1);

    let posted = http::request(lattice.egress, "POST", HOST, "/orders", &[], "{}")
        .await
        .expect("an answer");
    assert_eq!(posted.status, 503, "{posted:?}");
    assert_eq!(lattice.envoy.counter(&retries).await - before, 1);
}

/// The shared forward-proxy cluster (a destination reached by DNS on 443) holds its request
/// limit with stock Envoy, as a destination's own cluster does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_proxy_cluster_holds_its_limits() {
    let lattice = Lattice::start_reached(
        Reach::Dns(Ipv4Addr::new(127, 0, 0, 46)),
        "ext-proc",
        &[format!("--fault={HOST}=latency=1500ms")],
        &[
            "--max-requests=1".to_string(),
            "--max-pending-requests=1".to_string(),
        ],
    )
    .await;
    let egress = lattice.egress;

    // One slow request holds the only place; meanwhile another is refused at once.
    let slow = tokio::spawn(async move { http::get(egress, HOST, "/slow").await });
    let refused = eventually("a request refused past the limit", WAIT, || async {
        let response = http::get(egress, PRIVATE_HOST, "/second").await?;
        (response.header("x-envoy-overloaded") == Some("true")).then_some(response)
    })
    .await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(slow.await.unwrap().expect("an answer").status, 200);
    let overflow = "cluster.lattice-tls|private-ca.upstream_rq_active_overflow";
    assert!(lattice.envoy.counter(overflow).await >= 1);
}

/// The shared forward-proxy cluster sets nothing aside: it holds one address per host name, and
/// stock Envoy would answer every request for an ejected name itself. A host name whose every
/// answer is a 5xx keeps being asked, among others the cluster holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_proxy_cluster_never_sets_a_host_name_aside() {
    let lattice = Lattice::start_reached(
        Reach::Dns(Ipv4Addr::new(127, 0, 0, 47)),
        "ext-proc",
        &[format!("--fault={HOST}=unavailable=1")],
        &["--eject-after=3".to_string(), "--retries=0".to_string()],
    )
    .await;
    // A second host name in the cluster, so that setting one aside would be allowed.
    for _ in 0..3 {
        let other = http::get(lattice.egress, PRIVATE_HOST, "/other").await;
        assert_eq!(other.expect("an answer").status, 403);
    }
    for n in 0..10 {
        let id = format!("shared-{n}");
        let response = http::request(
            lattice.egress,
            "GET",
            HOST,
            "/status",
            &[("x-request-id", &id)],
            "",
        )
        .await
        .expect("an answer");
        assert_eq!(response.status, 503, "{response:?}");
        assert_eq!(
            response.header("x-lattice-emulator-attempt"),
            Some("1"),
            "request {n} did not reach VPC Lattice: {response:?}"
        );
    }
    let ejections = "cluster.lattice-tls|private-ca.outlier_detection.ejections_total";
    assert_eq!(lattice.envoy.counter(ejections).await, 0);
}

/// Outlier detection on a destination's own cluster, with two VPC Lattice addresses (an
/// emulator at each): the address that answers only 503s is set aside after three in a row,
/// the other takes every request meanwhile, and once healthy again the first is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lattice_address_is_set_aside_and_comes_back() {
    let mut lattice = Lattice::start_reached(
        Reach::PinnedTo(2),
        "ext-proc",
        &[],
        &[
            "--retries=0".to_string(),
            "--eject-after=3".to_string(),
            "--ejection-time=2s".to_string(),
        ],
    )
    .await;
    let failing = lattice.others[0].0;
    lattice
        .restart_other(0, &[format!("--fault={HOST}=unavailable=1")])
        .await;

    let mut statuses = Vec::new();
    for n in 0..30 {
        let response = http::get(lattice.egress, HOST, &format!("/aside/{n}"))
            .await
            .expect("an answer");
        statuses.push(response.status);
    }
    let failed = statuses.iter().filter(|status| **status == 503).count();
    assert!((1..=5).contains(&failed), "{failed} failed: {statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 200), "{statuses:?}");
    let ejected = format!("{CLUSTER}.outlier_detection.ejections_enforced_consecutive_5xx");
    assert_eq!(lattice.envoy.counter(&ejected).await, 1);

    // Healthy again: once its time is out, it answers requests again.
    lattice.restart_other(0, &[]).await;
    let answered = |text: &str| {
        let prefix = format!("{CLUSTER}::{failing}::rq_success::");
        let prefix = prefix.trim_start_matches("cluster.");
        text.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let clusters_url = lattice.envoy.admin_url("/clusters");
    let before = answered(&http::get_url(&clusters_url).await.expect("clusters").body);
    let mut n = 0;
    eventually("the set-aside address to answer again", WAIT, || {
        n += 1;
        let (egress, url) = (lattice.egress, clusters_url.clone());
        async move {
            let response = http::get(egress, HOST, &format!("/back/{n}")).await?;
            assert_eq!(response.status, 200, "{response:?}");
            let clusters = http::get_url(&url).await?.body;
            (answered(&clusters) > before).then_some(())
        }
    })
    .await;
}
