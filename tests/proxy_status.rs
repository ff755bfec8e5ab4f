//! `lattice-xds proxy-status` across the controller's replicas: each knows only the sidecars
//! connected to it, so the table merges every replica's answer with a column that says which;
//! one proxy in detail compares what its Envoy holds with what it was sent; a replica that
//! cannot be reached is named with the command that would reach it.

mod support;

use std::time::Duration;

use support::envoy::Envoy;
use support::kube::KubeCluster;
use support::process::{Controller, synced};

/// What a sidecar of the examples is sent (no private CA: no SDS).
const TYPES: [&str; 3] = ["CDS", "LDS", "RDS"];

fn proxy_status(args: &[&str]) -> (Option<i32>, String, String) {
    support::run_lattice_xds(&[&["proxy-status"], args].concat())
}

async fn wait_synced(controller: &Controller, node: &str) {
    support::eventually(
        &format!("{node} to accept its configuration"),
        Duration::from_secs(20),
        || async { synced(&controller.proxies().await, node, &TYPES).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_is_asked_and_one_proxy_is_compared_with_its_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::copy_examples(dir.path());
    let args = [format!("--manifests={}", manifests.display())];
    let first = Controller::start_on(
        dir.path(),
        support::free_port(),
        support::free_port(),
        "first",
        &args,
        &[],
    )
    .await;
    let second = Controller::start_on(
        dir.path(),
        support::free_port(),
        support::free_port(),
        "second",
        &args,
        &[],
    )
    .await;
    let one = Envoy::start(dir.path(), "one.apps", first.xds_port, "delta").await;
    let _two = Envoy::start(dir.path(), "two.apps", second.xds_port, "sotw").await;
    wait_synced(&first, "one.apps").await;
    wait_synced(&second, "two.apps").await;

    // Host:port without a scheme, one as a URL: both replicas, each proxy on its own.
    let first_admin = format!("127.0.0.1:{}", first.admin_port);
    let second_admin = second.admin_url("");
    let admins = format!("{first_admin},{second_admin}");
    let (code, table, errors) = proxy_status(&["--admin", &admins]);
    assert_eq!(code, Some(0), "{table}{errors}");
    let header = (table.lines())
        .find(|line| line.starts_with("NODE"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(header.ends_with("REPLICA"), "{table}");
    let row = |node: &str| {
        (table.lines())
            .find(|line| line.starts_with(node))
            .unwrap_or_else(|| panic!("no row for {node}:\n{table}"))
            .to_string()
    };
    assert!(
        row("one.apps").ends_with(&format!("http://{first_admin}")),
        "{table}"
    );
    assert!(
        row("two.apps").ends_with(second_admin.trim_end_matches('/')),
        "{table}"
    );
    assert!(row("two.apps").contains("SYNCED"), "{table}");

    let (code, json, _) = proxy_status(&["--admin", &admins, "-o", "json"]);
    assert_eq!(code, Some(0));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let replicas = report["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2, "{json}");
    assert_eq!(replicas[0]["proxies"][0]["node"], "one.apps", "{json}");
    assert_eq!(
        replicas[1]["proxies"][0]["types"]["CDS"]["state"], "SYNCED",
        "{json}"
    );

    // One proxy, by its pod's name, against what its Envoy holds.
    let envoy_admin = format!("127.0.0.1:{}", one.admin_port);
    let (code, detail, errors) =
        proxy_status(&["one", "--admin", &admins, "--envoy-admin", &envoy_admin]);
    assert_eq!(code, Some(0), "{detail}{errors}");
    assert!(
        detail.starts_with("one.apps (cluster demo-cluster1-v1, delta) on http://"),
        "{detail}"
    );
    for kind in TYPES {
        let line = (detail.lines())
            .find(|line| line.trim_start().starts_with(&format!("{kind}:")))
            .unwrap_or_else(|| panic!("no {kind} in:\n{detail}"));
        assert!(line.ends_with(", the same"), "{line}\n{detail}");
    }
    let (code, yaml, _) = proxy_status(&["one.apps", "--admin", &admins, "-o", "yaml"]);
    assert_eq!(code, Some(0));
    let detail: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(detail["node"], "one.apps", "{yaml}");
    assert_eq!(detail["types"]["LDS"]["state"], "SYNCED", "{yaml}");

    // A replica that does not answer is named with the way to reach it; the others still are.
    let closed = format!("127.0.0.1:{}", support::free_port());
    let (code, table, errors) = proxy_status(&["--admin", &format!("{first_admin},{closed}")]);
    assert_eq!(code, Some(0), "{errors}");
    assert!(table.contains("one.apps"), "{table}");
    assert!(
        errors.contains(&format!("http://{closed}: cannot reach the controller")),
        "{errors}"
    );
    let (code, _, errors) = proxy_status(&["--admin", &closed]);
    assert_eq!(code, Some(1), "{errors}");
    assert!(
        errors.contains("kubectl -n lattice-xds port-forward deploy/lattice-xds 19000"),
        "{errors}"
    );
}

/// The replicas are found through the Kubernetes API. This API server has no kubelet, so a
/// port-forward cannot succeed: each pod found is named with the command to reach it by hand.
#[test]
fn replicas_are_found_through_the_kubernetes_api() {
    let cluster = KubeCluster::start();
    cluster.kubectl(&["create", "namespace", "lattice-xds"]);
    // No controller manager runs to make it.
    cluster.kubectl(&["create", "serviceaccount", "default", "-n", "lattice-xds"]);
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let args = ["--find-replicas", "--kubeconfig", &kubeconfig];
    let (code, _, errors) = proxy_status(&args);
    assert_eq!(code, Some(1));
    assert!(
        errors
            .contains("no pod in namespace lattice-xds matches app.kubernetes.io/name=lattice-xds"),
        "{errors}"
    );

    for name in ["lattice-xds-a", "lattice-xds-b"] {
        cluster.apply_in(
            "lattice-xds",
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app.kubernetes.io/name: lattice-xds}}\n\
                 spec:\n  containers:\n  - {{name: controller, image: lattice-xds:0.1.0}}\n"
            ),
        );
    }
    let (code, _, errors) = proxy_status(&args);
    assert_eq!(code, Some(1));
    for name in ["lattice-xds-a", "lattice-xds-b"] {
        assert!(
            errors.contains(&format!("{name}: cannot port-forward to port 19000")),
            "{errors}"
        );
        assert!(
            errors.contains(&format!(
                "kubectl -n lattice-xds port-forward pod/{name} 19000"
            )),
            "{errors}"
        );
    }
}
