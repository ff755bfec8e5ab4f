//! The controller killed (SIGKILL) the moment a change is made, before or while it is pushed to
//! several stock Envoys: every Envoy keeps serving its last configuration (never an empty one),
//! reconnects when a controller answers again on the same address, and converges on the newest
//! configuration.

mod support;

use std::path::Path;
use std::time::Duration;

use support::envoy::Envoy;
use support::process::{Controller, synced};
use support::{eventually, free_port};

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
    let dump = envoy.config_dump().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_keep_serving_through_a_killed_controller_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::copy_examples(dir.path());
    let ports = (free_port(), free_port());
    let mut first = controller(dir.path(), &manifests, ports, "controller-first").await;
    let mut envoys = Vec::new();
    for (node, protocol) in NODES {
        envoys.push(Envoy::start(dir.path(), node, ports.0, protocol).await);
    }
    eventually("every Envoy to be synced", WAIT, || async {
        let proxies = first.proxies().await;
        NODES
            .iter()
            .all(|(node, _)| synced(&proxies, node, &TYPES))
            .then_some(())
    })
    .await;
    let before = routed_hosts(&envoys[0]).await;
    assert!(
        before
            .iter()
            .any(|host| host == "demo-cluster2.example.com"),
        "{before:?}"
    );

    // A change, and the controller is killed at once.
    std::fs::write(
        manifests.join("added.yaml"),
        route("added", "added.example.com"),
    )
    .unwrap();
    first.process.kill();

    // Nobody serves xDS now; every Envoy keeps what it had (or the change, if it arrived).
    for envoy in &envoys {
        let hosts = routed_hosts(envoy).await;
        for host in &before {
            assert!(
                hosts.contains(host),
                "{} lost {host} with the controller gone: {hosts:?}",
                envoy.node
            );
        }
    }

    // A controller answers on the same address again: every Envoy reconnects and converges.
    let second = controller(dir.path(), &manifests, ports, "controller-second").await;
    for envoy in &envoys {
        eventually("the Envoy to converge on the change", WAIT, || async {
            routed_hosts(envoy)
                .await
                .iter()
                .any(|host| host == "added.example.com")
                .then_some(())
        })
        .await;
    }
    eventually(
        "every Envoy to be synced with the new controller",
        WAIT,
        || async {
            let proxies = second.proxies().await;
            NODES
                .iter()
                .all(|(node, _)| synced(&proxies, node, &TYPES))
                .then_some(())
        },
    )
    .await;
    for envoy in &envoys {
        let hosts = routed_hosts(envoy).await;
        for host in &before {
            assert!(
                hosts.contains(host),
                "{} lost {host}: {hosts:?}",
                envoy.node
            );
        }
    }
}
