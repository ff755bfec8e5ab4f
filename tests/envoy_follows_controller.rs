//! Stock Envoy follows the controller, over state-of-the-world and incremental ADS: it becomes
//! LIVE, accepts every type, routes a request to a TLS upstream with the right SNI, picks up
//! manifest edits live, and answers unknown hosts with the local 404.

mod support;

use std::time::{Duration, Instant};

use support::envoy::Envoy;
use support::process::{Controller, synced};
use support::upstream::TlsUpstream;
use support::{eventually, free_port, http};

const GATEWAY: &str = include_str!("../examples/gateway.yaml");
const ALL_TYPES: [&str; 4] = ["CDS", "LDS", "RDS", "SDS"];
const WAIT: Duration = Duration::from_secs(20);

fn route(name: &str, host: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: apps\n\
         spec:\n  hostnames: [{host}]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_follows_over_state_of_the_world() {
    follows("sotw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_follows_over_delta() {
    follows("delta").await;
}

async fn follows(protocol: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("gateway.yaml"), GATEWAY).unwrap();
    std::fs::write(
        manifests.join("cluster2.yaml"),
        route("demo-cluster2", "demo-cluster2.example.com"),
    )
    .unwrap();

    let hosts = ["demo-cluster2.example.com", "demo-cluster3.example.com"];
    let upstream = TlsUpstream::start(dir.path(), &hosts).await;
    let egress_port = free_port();
    let mut args = vec![
        format!("--manifests={}", manifests.display()),
        "--signing=none".to_string(),
        format!("--ca-file={}", upstream.ca_file.display()),
        "--egress-address=127.0.0.1".to_string(),
        format!("--egress-port={egress_port}"),
    ];
    args.extend(
        hosts
            .iter()
            .map(|host| format!("--resolve={host}={}", upstream.address)),
    );
    let started = Instant::now();
    let controller = Controller::start(dir.path(), &args).await;
    let envoy = Envoy::start(dir.path(), "demo-pod", controller.xds_port, protocol).await;
    eprintln!(
        "[{protocol}] controller start to Envoy LIVE: {:?}",
        started.elapsed()
    );

    let proxies = eventually("Envoy to ACK every type", WAIT, || async {
        let proxies = controller.proxies().await;
        synced(&proxies, "demo-pod", &ALL_TYPES).then_some(proxies)
    })
    .await;
    let proxy = &proxies["proxies"][0];
    assert_eq!(proxy["protocol"], protocol);
    assert_eq!(proxy["cluster"], "demo-cluster1-v1");
    assert!(
        proxy["metadata_json"]
            .as_str()
            .unwrap()
            .contains("\"namespace\":\"apps\"")
    );

    let dump = envoy.config_dump().await.to_string();
    for expected in [
        "\"egress\"",
        "demo-cluster2.example.com:443",
        "lattice|demo-cluster2.example.com|443",
        "trust-bundle/private-ca",
    ] {
        assert!(
            dump.contains(expected),
            "Envoy's config_dump lacks {expected}"
        );
    }

    let egress = format!("127.0.0.1:{egress_port}").parse().unwrap();
    let response = http::get(egress, "demo-cluster2.example.com", "/hello")
        .await
        .expect("egress answers");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "hello from demo-cluster2.example.com\n");
    assert_eq!(upstream.server_names(), ["demo-cluster2.example.com"]);

    let unknown = http::get(egress, "unknown.test", "/")
        .await
        .expect("egress answers");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, lattice_xds::translate::NO_ROUTE_BODY);
    let not_yet = http::get(egress, "demo-cluster3.example.com", "/")
        .await
        .unwrap();
    assert_eq!(
        not_yet.status, 404,
        "demo-cluster3 is not routed before its manifest exists"
    );

    // A new manifest adds a destination, live.
    let edited = Instant::now();
    std::fs::write(
        manifests.join("cluster3.yaml"),
        route("demo-cluster3", "demo-cluster3.example.com"),
    )
    .unwrap();
    let ready_url = controller.admin_url("/readyz");
    eventually("a new snapshot", WAIT, || async {
        http::get_url(&ready_url)
            .await
            .filter(|r| r.body.contains("snapshot 2"))
    })
    .await;
    eprintln!(
        "[{protocol}] manifest edit to a new snapshot: {:?}",
        edited.elapsed()
    );
    let response = eventually("the new destination to be routed", WAIT, || async {
        http::get(egress, "demo-cluster3.example.com", "/")
            .await
            .filter(|r| r.status == 200)
    })
    .await;
    eprintln!(
        "[{protocol}] manifest edit to a routed request: {:?}",
        edited.elapsed()
    );
    assert_eq!(response.body, "hello from demo-cluster3.example.com\n");
    let acked = eventually("the edit to be ACKed", WAIT, || async {
        synced(&controller.proxies().await, "demo-pod", &ALL_TYPES).then_some(edited.elapsed())
    })
    .await;
    eprintln!("[{protocol}] manifest edit to Envoy ACK: {acked:?}");

    // Removing it takes the destination away again; the first one keeps working.
    std::fs::remove_file(manifests.join("cluster3.yaml")).unwrap();
    eventually("the removed destination to 404", WAIT, || async {
        http::get(egress, "demo-cluster3.example.com", "/")
            .await
            .filter(|r| r.status == 404)
    })
    .await;
    let still = http::get(egress, "demo-cluster2.example.com", "/")
        .await
        .unwrap();
    assert_eq!(still.status, 200);
    let dump = envoy.config_dump().await.to_string();
    assert!(
        !dump.contains("lattice|demo-cluster3.example.com|443\""),
        "the removed cluster is gone from Envoy"
    );
    drop(envoy);
}
