//! A fleet on one controller: 50 stock Envoys (`--concurrency 1`, as sidecars run) follow a
//! controller serving 2,000 routes. One route is added and one removed; every Envoy then serves
//! the added host (through the shared forward-proxy cluster, resolved by DNS) and answers the
//! removed one with the local 404. The controller's and every Envoy's memory are printed.
//! With virtual hosts on demand, 50 Envoys on incremental ADS each hold only the hosts they
//! were called for, never the 2,000, and follow a change to one of them.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lattice_xds::translate::NO_ROUTE_BODY;
use support::envoy::Envoy;
use support::process::{Controller, synced, type_status};
use support::{eventually, free_port, http};

const ENVOYS: usize = 50;
const ROUTES: usize = 2000;
const WAIT: Duration = Duration::from_secs(120);
/// Where the added destination resolves: a loopback address of its own, port 80.
const UPSTREAM_IP: [u8; 4] = [127, 0, 0, 86];
const ADDED: &str = "added-svc.example.com";
const REMOVED: &str = "svc-0.example.com";

fn route(name: &str, host: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  \
         namespace: apps\nspec:\n  hostnames:\n  - {host}\n  parentRefs:\n  \
         - name: lattice-gateway\n    namespace: lattice-gateway\n    sectionName: http-listener\n"
    )
}

/// The routes `svc-<first>` .. `svc-<ROUTES-1>` on the walkthrough gateway's HTTP listener.
fn write_routes(dir: &Path, first: usize) {
    let text: String = (first..ROUTES)
        .map(|n| route(&format!("svc-{n}"), &format!("svc-{n}.example.com")))
        .collect();
    let part = dir.join("routes.yaml.part");
    std::fs::write(&part, text).unwrap();
    std::fs::rename(part, dir.join("routes.yaml")).unwrap();
}

/// Answers DNS for the added host with the upstream's address, as Route 53 would.
async fn dns() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let (_, names) = tokio::sync::watch::channel(Arc::new(BTreeSet::from([ADDED.to_string()])));
    let answer = IpAddr::from(UPSTREAM_IP);
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(lattice_xds::emulator::dns::serve(
        socket, names, answer, shutdown,
    ));
    address
}

/// The added service itself, on port 80 of its own loopback address.
async fn upstream() {
    let address = SocketAddr::from((UPSTREAM_IP, 80));
    // The other fleet's upstream may still be closing with its runtime.
    let listener = eventually("the upstream's address to be free", WAIT, || async {
        tokio::net::TcpListener::bind(address).await.ok()
    })
    .await;
    let app = axum::Router::new().fallback(|| async { "hello from the added service\n" });
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// `GET /` for `host` through the egress port, read up to the end of the body (Envoy waits a
/// moment for the client to close first after a local reply, so reading to EOF would wait).
async fn fetch(egress: SocketAddr, host: &str) -> http::HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(egress).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.unwrap();
        raw.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("a content-length");
            if body.len() >= length || read == 0 {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                let body = body[..length.min(body.len())].to_string();
                let headers = Vec::new();
                return http::HttpResponse {
                    status,
                    headers,
                    body,
                };
            }
        }
        assert!(
            read > 0,
            "the connection closed before a full response: {text}"
        );
    }
}

/// A manifest directory with the walkthrough's gateway and the 2,000 routes, and the upstream
/// listening; the directory is removed when the returned guard drops.
async fn fleet_manifests() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::copy(
        "examples/cluster1/gateway.yaml",
        manifests.join("gateway.yaml"),
    )
    .unwrap();
    write_routes(&manifests, 0);
    upstream().await;
    (dir, manifests)
}

/// The two fleets run one after the other: fifty Envoys each, and one upstream address.
static FLEET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Printed past the test harness's capture, so that CI logs show the fleet's memory.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "fleet: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_envoys_follow_an_added_and_a_removed_route() {
    let _fleet = FLEET.lock().await;
    let (dir, manifests) = fleet_manifests().await;
    let egress_port = free_port();
    let args = vec![
        format!("--manifests={}", manifests.display()),
        "--signing=none".to_string(),
        // A removed destination gets the sidecar's own 404, which this test reads.
        "--unknown-hosts=deny".to_string(),
        format!("--dns-resolver={}", dns().await),
        "--egress-address=127.0.0.1".to_string(),
        format!("--egress-port={egress_port}"),
    ];
    let controller = Controller::start(dir.path(), &args).await;

    let nodes: Vec<String> = (0..ENVOYS).map(|n| format!("sidecar-{n}.apps")).collect();
    let starts = nodes.iter().enumerate().map(|(n, node)| {
        let protocol = if n % 2 == 0 { "delta" } else { "sotw" };
        Envoy::start(dir.path(), node, controller.xds_port, protocol)
    });
    let started = std::time::Instant::now();
    let envoys: Vec<Envoy> = futures::future::join_all(starts).await;
    report(&format!("{ENVOYS} Envoys LIVE in {:?}", started.elapsed()));
    let controller_rss = controller.process.rss_kib().unwrap_or(0);

    let started = std::time::Instant::now();
    let before = controller.proxies().await["snapshot_version"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);

    // One route removed, one added, in one change of the manifests; every Envoy acknowledges
    // the route table that carries it.
    std::fs::write(manifests.join("added.yaml"), route("added-svc", ADDED)).unwrap();
    write_routes(&manifests, 1);
    eventually("every Envoy to accept the change", WAIT, || async {
        let proxies = controller.proxies().await;
        let version = proxies["snapshot_version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let newer = version.parse::<u64>().is_ok_and(|v| v > before);
        let all = nodes.iter().all(|node| {
            synced(&proxies, node, &["RDS"])
                && type_status(&proxies, node, "RDS")
                    .is_some_and(|status| status["acked_version"] == version.as_str())
        });
        (newer && all).then_some(())
    })
    .await;
    report(&format!(
        "the change reached every Envoy in {:?}",
        started.elapsed()
    ));
    let dump = envoys[ENVOYS - 1].config_dump().await.to_string();
    assert!(
        dump.contains(&format!("\"{ADDED}\"")),
        "the added host is configured"
    );
    assert!(
        !dump.contains(&format!("\"{REMOVED}\"")),
        "the removed host is gone"
    );

    // The Envoys share the egress port; the kernel spreads new connections over them. Requests
    // go on until each Envoy has served the added host and refused the removed one.
    let egress = SocketAddr::from(([127, 0, 0, 1], egress_port));
    let served = format!("vhost.{ADDED}.route.destination.upstream_rq_2xx");
    let refused = "http.egress.downstream_rq_4xx";
    let mut requests = 0;
    loop {
        for _ in 0..100 {
            let ok = fetch(egress, ADDED).await;
            assert_eq!(ok.status, 200, "{}", ok.body);
            assert_eq!(ok.body, "hello from the added service\n");
            let gone = fetch(egress, REMOVED).await;
            assert_eq!(gone.status, 404);
            assert_eq!(gone.body, NO_ROUTE_BODY);
            requests += 2;
        }
        let mut missing = Vec::new();
        for envoy in &envoys {
            if envoy.counter(&served).await == 0 || envoy.counter(refused).await == 0 {
                missing.push(envoy.node.clone());
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            requests < 20_000,
            "after {requests} requests these Envoys had not served both hosts: {missing:?}"
        );
    }

    let rss: Vec<u64> = envoys
        .iter()
        .filter_map(|envoy| envoy.process.rss_kib())
        .collect();
    let mean = rss.iter().sum::<u64>() / rss.len().max(1) as u64;
    report(&format!(
        "{ENVOYS} Envoys, {ROUTES} routes; controller RSS {} MiB with every stream open ({} MiB now); \
         Envoy RSS min {} / mean {} / max {} MiB; {requests} requests",
        controller_rss / 1024,
        controller.process.rss_kib().unwrap_or(0) / 1024,
        rss.iter().min().unwrap_or(&0) / 1024,
        mean / 1024,
        rss.iter().max().unwrap_or(&0) / 1024,
    ));
    report(&format!(
        "each Envoy's RSS in MiB: {:?}",
        rss.iter().map(|kib| kib / 1024).collect::<Vec<_>>()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_envoys_on_demand_hold_only_the_hosts_they_were_called_for() {
    let _fleet = FLEET.lock().await;
    let (dir, manifests) = fleet_manifests().await;
    // The hosts the pods call, of the 2,000: each pinned to the upstream.
    let called: Vec<String> = (0..5).map(|n| format!("svc-{n}.example.com")).collect();
    let egress_port = free_port();
    let mut args = vec![
        format!("--manifests={}", manifests.display()),
        "--signing=none".to_string(),
        "--unknown-hosts=deny".to_string(),
        "--on-demand-hosts=true".to_string(),
        "--egress-address=127.0.0.1".to_string(),
        format!("--egress-port={egress_port}"),
    ];
    let upstream = SocketAddr::from((UPSTREAM_IP, 80));
    args.extend(
        called
            .iter()
            .map(|host| format!("--resolve={host}={upstream}")),
    );
    let controller = Controller::start(dir.path(), &args).await;
    let nodes: Vec<String> = (0..ENVOYS).map(|n| format!("sidecar-{n}.apps")).collect();
    let starts = nodes
        .iter()
        .map(|node| Envoy::start(dir.path(), node, controller.xds_port, "delta"));
    let envoys: Vec<Envoy> = futures::future::join_all(starts).await;

    // The kernel spreads connections over the Envoys that share the egress port: calls go on
    // until every Envoy has answered some.
    let egress = SocketAddr::from(([127, 0, 0, 1], egress_port));
    let mut requests = 0;
    loop {
        for host in &called {
            let ok = fetch(egress, host).await;
            assert_eq!(ok.status, 200, "{host}: {}", ok.body);
            requests += 1;
        }
        let mut idle = 0;
        for envoy in &envoys {
            if envoy.counter("http.egress.downstream_rq_2xx").await == 0 {
                idle += 1;
            }
        }
        if idle == 0 {
            break;
        }
        assert!(
            requests < 20_000,
            "{idle} Envoys answered nothing after {requests} requests"
        );
    }
    let mut holding_svc0 = Vec::new();
    for envoy in &envoys {
        let held = envoy.virtual_hosts().await;
        assert!(!held.is_empty(), "{} holds nothing", envoy.node);
        for name in &held {
            let host = name.strip_prefix("egress/").unwrap_or(name);
            assert!(
                called.iter().any(|c| c == host),
                "{} holds {name}",
                envoy.node
            );
        }
        if held.iter().any(|name| name == "egress/svc-0.example.com") {
            holding_svc0.push(envoy);
        }
    }
    report(&format!(
        "on demand: {} of {ENVOYS} Envoys hold svc-0 after {requests} requests",
        holding_svc0.len()
    ));

    // svc-0's route renamed: every Envoy that holds svc-0 has the new name.
    std::fs::write(
        manifests.join("renamed.yaml"),
        route("svc-0-renamed", "svc-0.example.com"),
    )
    .unwrap();
    write_routes(&manifests, 1);
    eventually("every holder of svc-0 to have its change", WAIT, || async {
        for envoy in &holding_svc0 {
            let dump = envoy.config_dump().await.to_string();
            if !dump.contains("route apps/svc-0-renamed") {
                return None;
            }
        }
        Some(())
    })
    .await;
    let rss: Vec<u64> = envoys
        .iter()
        .filter_map(|envoy| envoy.process.rss_kib())
        .collect();
    report(&format!(
        "on demand: {ENVOYS} Envoys, {ROUTES} routes; controller RSS {} MiB; Envoy RSS mean {} MiB",
        controller.process.rss_kib().unwrap_or(0) / 1024,
        rss.iter().sum::<u64>() / rss.len().max(1) as u64 / 1024,
    ));
}
