//! Virtual hosts on demand (`--on-demand-hosts`): stock Envoy on incremental ADS holds no
//! destination until its pod calls one, then fetches that host's virtual host (VHDS) and the
//! request proceeds. It holds only the hosts it was asked for; a change to a held host reaches
//! it, a change to another sends it nothing, a removed host stops being served, and a host no
//! destination names gets the unknown hosts' answer for that host alone.

mod support;

use std::time::Duration;

use support::envoy::Envoy;
use support::process::{Controller, type_status};
use support::upstream::TlsUpstream;
use support::{eventually, free_port, http};

const GATEWAY: &str = include_str!("../examples/cluster1/gateway.yaml");
const WAIT: Duration = Duration::from_secs(20);

fn route(name: &str, hosts: &[&str]) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: apps\n\
         spec:\n  hostnames: [{}]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n",
        hosts.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_holds_only_the_hosts_its_pod_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("gateway.yaml"), GATEWAY).unwrap();
    for name in ["a", "b", "c"] {
        let host = format!("{name}.example.com");
        std::fs::write(
            manifests.join(format!("{name}.yaml")),
            route(name, &[&host]),
        )
        .unwrap();
    }
    let hosts = [
        "a.example.com",
        "b.example.com",
        "c.example.com",
        "d.example.com",
    ];
    let upstream = TlsUpstream::start(dir.path(), &hosts).await;
    let egress_port = free_port();
    let mut args = upstream.controller_args(&manifests, &hosts, egress_port);
    args.push("--on-demand-hosts=true".to_string());
    let controller = Controller::start(dir.path(), &args).await;
    let envoy = Envoy::start(dir.path(), "demo-pod", controller.xds_port, "delta").await;
    let egress = format!("127.0.0.1:{egress_port}").parse().unwrap();

    // Nothing is held before a call.
    assert_eq!(envoy.virtual_hosts().await, Vec::<String>::new());

    // The first request waits for its host's virtual host, then proceeds.
    let response = http::get(egress, "a.example.com", "/first")
        .await
        .expect("an answer");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "hello from a.example.com\n");
    // With a port, the same host.
    let response = http::get(egress, "a.example.com:80", "/")
        .await
        .expect("an answer");
    assert_eq!(response.status, 200, "{response:?}");
    // A host nothing names: the unknown hosts' answer, for that host alone.
    let unknown = http::get(egress, "unknown.test", "/")
        .await
        .expect("an answer");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, lattice_xds::translate::NO_ROUTE_BODY);
    assert_eq!(
        envoy.virtual_hosts().await,
        ["egress/a.example.com", "egress/unknown.test"]
    );

    // A change to a host it does not hold sends it nothing; one to a held host reaches it as
    // that one virtual host. The changes are made in that order, and pushes keep it.
    let vhds = |proxies: &serde_json::Value| {
        let status = type_status(proxies, "demo-pod", "VHDS").expect("a VHDS subscription");
        (
            status["pushes"].as_u64().unwrap(),
            status["sent_bytes"].as_u64().unwrap(),
        )
    };
    let before = vhds(&controller.proxies().await);
    let routes = |proxies: &serde_json::Value| {
        type_status(proxies, "demo-pod", "RDS").unwrap()["pushes"].clone()
    };
    let routes_before = routes(&controller.proxies().await);
    std::fs::write(
        manifests.join("b.yaml"),
        route("b", &["b.example.com", "d.example.com"]),
    )
    .unwrap();
    controller.wait_for_snapshot(2).await;
    std::fs::write(
        manifests.join("a.yaml"),
        route("a-renamed", &["a.example.com"]),
    )
    .unwrap();
    eventually("the change to reach the held host", WAIT, || async {
        let dump = envoy.config_dump().await.to_string();
        dump.contains("route apps/a-renamed").then_some(())
    })
    .await;
    let after = vhds(&controller.proxies().await);
    assert_eq!(
        after.0,
        before.0 + 1,
        "one push, for a.example.com alone: {after:?} after {before:?}"
    );
    eprintln!("bytes for one changed virtual host: {}", after.1 - before.1);
    assert!(after.1 - before.1 < 2048, "{after:?} after {before:?}");
    assert_eq!(
        routes(&controller.proxies().await),
        routes_before,
        "the route configuration was sent again"
    );
    assert_eq!(
        envoy.virtual_hosts().await,
        ["egress/a.example.com", "egress/unknown.test"]
    );

    // A first request with a body waits for its virtual host too (Envoy issue 17891: a
    // request whose body came with its headers was routed before its virtual host arrived).
    let posted = http::request(egress, "POST", "c.example.com", "/", &[], "order=1")
        .await
        .expect("an answer");
    assert_eq!(posted.status, 200, "{posted:?}");
    assert_eq!(posted.body, "hello from c.example.com\n");

    // A removed host stops being served: it gets the unknown hosts' answer.
    std::fs::remove_file(manifests.join("a.yaml")).unwrap();
    eventually("the removed host to 404", WAIT, || async {
        http::get(egress, "a.example.com", "/")
            .await
            .filter(|r| r.status == 404)
    })
    .await;
}
