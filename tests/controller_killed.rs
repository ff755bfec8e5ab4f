//! The controller killed (SIGKILL) the moment a change is made, before or while it is pushed to
//! several stock Envoys: every Envoy keeps serving its last configuration (never an empty one),
//! reconnects when a controller answers again on the same address (or to the second replica
//! behind the Service, where two run), and converges on the newest configuration. A rolling
//! replacement of two replicas moves every Envoy to the new ones without it ever losing a route.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::envoy::Envoy;
use support::process::{Controller, synced};
use support::service::Service;
use support::{eventually, free_port, http};

const WAIT: Duration = Duration::from_secs(60);
const TYPES: [&str; 3] = ["CDS", "LDS", "RDS"];
const NODES: [(&str, &str); 3] = [("pod-a", "delta"), ("pod-b", "delta"), ("pod-c", "sotw")];

fn route(name: &str, host: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: apps\n\
         spec:\n  hostnames: [\"{host}\"]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n"
    )
}

/// The host names Envoy routes, from its own config dump.
async fn routed_hosts(envoy: &Envoy) -> Vec<String> {
    hosts_in(&envoy.config_dump().await)
}

fn hosts_in(dump: &serde_json::Value) -> Vec<String> {
    let mut hosts = Vec::new();
    for config in dump["configs"].as_array().into_iter().flatten() {
        for route_config in config["dynamic_route_configs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let virtual_hosts = route_config["route_config"]["virtual_hosts"].as_array();
            for virtual_host in virtual_hosts.into_iter().flatten() {
                for domain in virtual_host["domains"].as_array().into_iter().flatten() {
                    hosts.push(domain.as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    hosts
}

async fn controller(dir: &Path, manifests: &Path, ports: (u16, u16), name: &str) -> Controller {
    let args = [
        format!("--manifests={}", manifests.display()),
        "--signing=none".to_string(),
    ];
    Controller::start_on(dir, ports.0, ports.1, name, &args, &[]).await
}

/// A replica on ports of its own.
async fn replica(dir: &Path, manifests: &Path, name: &str) -> Controller {
    controller(dir, manifests, (free_port(), free_port()), name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_keep_serving_through_a_killed_controller_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::copy_examples(dir.path());
    let ports = (free_port(), free_port());
    let mut first = controller(dir.path(), &manifests, ports, "controller-first").await;
    let (envoys, before) = fleet(dir.path(), ports.0, &[&first]).await;

    // A change, and the controller is killed at once.
    std::fs::write(
        manifests.join("added.yaml"),
        route("added", "added.example.com"),
    )
    .unwrap();
    first.process.kill();

    // Nobody serves xDS now; every Envoy keeps what it had (or the change, if it arrived).
    keep_every_route(&envoys, &before).await;

    // A controller answers on the same address again: every Envoy reconnects and converges.
    let second = controller(dir.path(), &manifests, ports, "controller-second").await;
    converge_on(&envoys, "added.example.com").await;
    eventually(
        "every Envoy to be synced with the new controller",
        WAIT,
        || async { all_synced(&[&second]).await.then_some(()) },
    )
    .await;
    keep_every_route(&envoys, &before).await;
}

/// True when every Envoy of `NODES` is synced with one of `replicas`.
async fn all_synced(replicas: &[&Controller]) -> bool {
    let mut all = Vec::new();
    for replica in replicas {
        all.push(replica.proxies().await);
    }
    NODES
        .iter()
        .all(|(node, _)| all.iter().any(|proxies| synced(proxies, node, &TYPES)))
}

/// How many Envoys `replica` serves.
async fn served_by(replica: &Controller) -> usize {
    replica.proxies().await["proxies"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Starts one Envoy per node on the xDS port `xds_port`; returns them once each is synced with
/// one of `replicas`, with the hosts they route.
async fn fleet(dir: &Path, xds_port: u16, replicas: &[&Controller]) -> (Vec<Envoy>, Vec<String>) {
    let mut envoys = Vec::new();
    for (node, protocol) in NODES {
        envoys.push(Envoy::start(dir, node, xds_port, protocol).await);
    }
    eventually("every Envoy to be synced", WAIT, || async {
        all_synced(replicas).await.then_some(())
    })
    .await;
    let before = routed_hosts(&envoys[0]).await;
    assert!(
        before
            .iter()
            .any(|host| host == "demo-cluster2.example.com"),
        "{before:?}"
    );
    (envoys, before)
}

/// Asserts that every Envoy still routes every host of `before`.
async fn keep_every_route(envoys: &[Envoy], before: &[String]) {
    for envoy in envoys {
        let hosts = routed_hosts(envoy).await;
        for host in before {
            assert!(
                hosts.contains(host),
                "{} lost {host}: {hosts:?}",
                envoy.node
            );
        }
    }
}

async fn converge_on(envoys: &[Envoy], host: &str) {
    for envoy in envoys {
        eventually("the Envoy to converge on the change", WAIT, || async {
            routed_hosts(envoy)
                .await
                .iter()
                .any(|routed| routed == host)
                .then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_fail_over_to_the_second_replica_when_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::copy_examples(dir.path());
    let mut a = replica(dir.path(), &manifests, "replica-a").await;
    let b = replica(dir.path(), &manifests, "replica-b").await;
    // The Service hands connections out in turn: the first Envoy goes to replica a.
    let service = Service::start(&[a.xds_port, b.xds_port]).await;
    let (envoys, before) = fleet(dir.path(), service.port, &[&a, &b]).await;
    let on_a = served_by(&a).await;
    assert!(on_a >= 1, "no Envoy on the replica to be killed");

    // A change, and replica a is killed at once; its endpoint leaves the Service.
    std::fs::write(
        manifests.join("added.yaml"),
        route("added", "added.example.com"),
    )
    .unwrap();
    a.process.kill();
    service.set_endpoints(&[b.xds_port]);
    keep_every_route(&envoys, &before).await;

    // The Envoys of replica a reconnect to b; all converge, and b serves all of them.
    converge_on(&envoys, "added.example.com").await;
    eventually("replica b to serve every Envoy, synced", WAIT, || async {
        all_synced(&[&b]).await.then_some(())
    })
    .await;
    assert_eq!(served_by(&b).await, NODES.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_replacement_of_two_replicas_keeps_every_envoy_served() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::copy_examples(dir.path());
    let start = |name| replica(dir.path(), &manifests, name);
    let mut old = [start("replica-old-1").await, start("replica-old-2").await];
    let service = Service::start(&[old[0].xds_port, old[1].xds_port]).await;
    let (envoys, before) = fleet(dir.path(), service.port, &[&old[0], &old[1]]).await;

    // All through the rollout, every Envoy is sampled: it must never lose a route it had.
    let done = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(Mutex::new(Vec::<String>::new()));
    let samples = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let urls: Vec<(String, String)> = envoys
            .iter()
            .map(|envoy| (envoy.node.clone(), envoy.admin_url("/config_dump")))
            .collect();
        let (done, lost, samples, before) =
            (done.clone(), lost.clone(), samples.clone(), before.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                for (node, url) in &urls {
                    let Some(response) = http::get_url(url).await else {
                        lost.lock()
                            .unwrap()
                            .push(format!("{node}: admin did not answer"));
                        continue;
                    };
                    let dump: serde_json::Value = serde_json::from_str(&response.body).unwrap();
                    let hosts = hosts_in(&dump);
                    for host in before.iter().filter(|host| !hosts.contains(host)) {
                        lost.lock().unwrap().push(format!("{node} lost {host}"));
                    }
                }
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The fleet is sampled at least twice after each step, so every state in between is seen.
    let sampled = || {
        let samples = samples.clone();
        async move {
            let mark = samples.load(Ordering::SeqCst);
            eventually("the fleet to be sampled", WAIT, || async {
                (samples.load(Ordering::SeqCst) >= mark + 2).then_some(())
            })
            .await;
        }
    };

    // As a Deployment rolls with one surge and none unavailable: a new replica becomes ready
    // and joins the Service, then an old one leaves it and is terminated. A change is made
    // half-way through.
    let first_new = start("replica-new-1").await;
    service.set_endpoints(&[old[0].xds_port, old[1].xds_port, first_new.xds_port]);
    service.set_endpoints(&[old[1].xds_port, first_new.xds_port]);
    old[0].process.terminate();
    assert!(
        old[0].process.wait().success(),
        "replica-old-1 did not exit cleanly"
    );
    sampled().await;
    std::fs::write(
        manifests.join("added.yaml"),
        route("added", "added.example.com"),
    )
    .unwrap();
    let second_new = start("replica-new-2").await;
    service.set_endpoints(&[old[1].xds_port, first_new.xds_port, second_new.xds_port]);
    service.set_endpoints(&[first_new.xds_port, second_new.xds_port]);
    old[1].process.terminate();
    assert!(
        old[1].process.wait().success(),
        "replica-old-2 did not exit cleanly"
    );
    sampled().await;

    converge_on(&envoys, "added.example.com").await;
    eventually(
        "the new replicas to serve every Envoy, synced",
        WAIT,
        || async { all_synced(&[&first_new, &second_new]).await.then_some(()) },
    )
    .await;
    assert_eq!(
        served_by(&first_new).await + served_by(&second_new).await,
        NODES.len()
    );
    done.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let lost = lost.lock().unwrap().clone();
    assert!(lost.is_empty(), "during the rollout: {lost:?}");
}
