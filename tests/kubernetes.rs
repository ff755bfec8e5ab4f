//! The controller against a real API server (etcd + kube-apiserver built from Go modules), with
//! stock Envoy attached: the walkthrough's objects become Envoy configuration and every change
//! follows; invalid routes get Events; an API server restart never publishes an empty or partial
//! snapshot; the shipped ClusterRole is enough and no more; of two replicas both serve and one
//! writes; an unauthenticated stream cannot have Events written on a pod; routes
//! attach only where their Gateway admits them, once the VPC Lattice controller accepted them.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use envoy_types::pb::google::rpc::Status;
use lattice_xds::xds::type_url;
use support::ads::{self, Sotw};
use support::envoy::Envoy;
use support::kube::KubeCluster;
use support::process::{Controller, synced};
use support::{eventually, free_port};

const GATEWAY: &str = include_str!("../examples/cluster1/gateway.yaml");
const CLUSTER1: &str = include_str!("../examples/cluster1/demo-cluster1.yaml");
const CLUSTER2: &str = include_str!("../examples/cluster2/demo-cluster2.yaml");
const GREETER: &str = include_str!("../examples/cluster1/greeter.yaml");
const CLUSTER_ROLE: &str = include_str!("../charts/lattice-xds/files/clusterrole.yaml");
const ROLE: &str = include_str!("../charts/lattice-xds/files/role.yaml");
const WAIT: Duration = Duration::from_secs(30);

/// A route applied as `gateway.networking.k8s.io/v1` (the walkthrough's are `v1beta1`).
fn v1_route(name: &str, host: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: apps\n\
         spec:\n  hostnames: [\"{host}\"]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n"
    )
}

/// The walkthrough's objects: the GatewayClass, the gateway with its three listeners and its
/// IAMAuthPolicy, both demo routes (v1beta1, two parentRefs each) and their IAMAuthPolicies.
fn apply_walkthrough(cluster: &KubeCluster) {
    cluster.kubectl(&["create", "namespace", "apps"]);
    cluster.kubectl(&["create", "namespace", "lattice-gateway"]);
    cluster.apply(GATEWAY);
    cluster.apply(CLUSTER1);
    cluster.apply(CLUSTER2);
}

fn controller_args(kubeconfig: &std::path::Path) -> Vec<String> {
    vec![
        "--kubernetes".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        "--signing=none".to_string(),
        "--lease-duration=3s".to_string(),
        // No VPC Lattice controller runs here to accept routes; the attachment test below
        // writes their status itself.
        "--accepted-routes-only=false".to_string(),
    ]
}

/// The destinations in Envoy's own config dump: the virtual hosts whose route names where the
/// destination came from, by `host:port`, with that provenance (`destination h:p; route ...`).
async fn envoy_destinations(envoy: &Envoy) -> Vec<(String, String)> {
    let dump = envoy.config_dump().await;
    let mut destinations = Vec::new();
    let route_configs = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|config| {
            config["dynamic_route_configs"]
                .as_array()
                .into_iter()
                .flatten()
        });
    for route_config in route_configs {
        let virtual_hosts = route_config["route_config"]["virtual_hosts"].as_array();
        for virtual_host in virtual_hosts.into_iter().flatten() {
            let provenance = virtual_host["routes"][0]["name"]
                .as_str()
                .unwrap_or_default();
            let destination = provenance
                .split("; ")
                .next()
                .and_then(|entry| entry.strip_prefix("destination "));
            if let Some(destination) = destination {
                destinations.push((destination.to_string(), provenance.to_string()));
            }
        }
    }
    destinations.sort_by(|a, b| a.0.cmp(&b.0));
    destinations
}

/// The names of the clusters Envoy received over CDS.
/// The clusters Envoy holds for destinations (the one that passes other protocols through
/// aside), sorted.
async fn envoy_clusters(envoy: &Envoy) -> Vec<String> {
    let dump = envoy.config_dump().await;
    let clusters = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|config| {
            config["dynamic_active_clusters"]
                .as_array()
                .into_iter()
                .flatten()
        });
    let mut names: Vec<String> = clusters
        .filter_map(|entry| entry["cluster"]["name"].as_str().map(str::to_string))
        .filter(|name| name != lattice_xds::translate::ORIGINAL_DESTINATION)
        .collect();
    names.sort();
    names
}

fn names(destinations: &[(String, String)]) -> BTreeSet<String> {
    destinations.iter().map(|(name, _)| name.clone()).collect()
}

fn destination(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// Waits until Envoy's destinations are exactly `expected`.
async fn wait_for_destinations(envoy: &Envoy, expected: &[String]) {
    let expected: BTreeSet<String> = expected.iter().cloned().collect();
    eventually(
        &format!("Envoy's destinations to be {expected:?}"),
        WAIT,
        || async {
            let found = names(&envoy_destinations(envoy).await);
            (found == expected).then_some(())
        },
    )
    .await;
}

/// Events about `object` (an HTTPRoute in `apps`), as (reason, note, reporting instance).
fn events_about(cluster: &KubeCluster, object: &str) -> Vec<(String, String, String)> {
    events_on(cluster, "HTTPRoute", object)
}

/// Events about the `kind` named `object` in `apps`, as (reason, note, reporting instance).
fn events_on(cluster: &KubeCluster, kind: &str, object: &str) -> Vec<(String, String, String)> {
    events_in(cluster, "apps", kind, object)
}

/// Events about the `kind` named `object` in `namespace`, as (reason, note, reporting instance).
fn events_in(
    cluster: &KubeCluster,
    namespace: &str,
    kind: &str,
    object: &str,
) -> Vec<(String, String, String)> {
    let text = cluster.kubectl(&["get", "events.events.k8s.io", "-n", namespace, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["regarding"]["name"] == object && event["regarding"]["kind"] == kind)
        .map(|event| {
            let field = |name: &str| event[name].as_str().unwrap_or_default().to_string();
            (field("reason"), field("note"), field("reportingInstance"))
        })
        .collect()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_follows_the_cluster_and_invalid_routes_get_events() {
    let cluster = KubeCluster::start();
    apply_walkthrough(&cluster);
    // Also a route applied as v1: both versions must be seen, each object exactly once.
    cluster.apply(&v1_route("demo-cluster3", "demo-cluster3.example.com"));

    let args = controller_args(&cluster.kubeconfig);
    let controller = Controller::start(cluster.dir(), &args).await;
    let envoy = Envoy::start(cluster.dir(), "pod-a", controller.xds_port, "delta").await;

    let assigned = |n: u8, id: &str| {
        destination(
            &format!("demo-cluster{n}-apps-{id}.7d67968.vpc-lattice-svcs.ap-northeast-2.on.aws"),
            443,
        )
    };
    let walkthrough = vec![
        destination("demo-cluster1.example.com", 443),
        destination("demo-cluster2.example.com", 443),
        assigned(1, "05a011bb3aacd80e4"),
        assigned(2, "0c2b8a7f5e1d94a36"),
    ];
    let mut expected = walkthrough.clone();
    expected.push(destination("demo-cluster3.example.com", 443));
    wait_for_destinations(&envoy, &expected).await;
    let proxies = controller.proxies().await;
    assert!(
        synced(&proxies, "pod-a", &["CDS", "LDS", "RDS"]),
        "{proxies}"
    );

    // Every destination goes through one shared cluster: the sidecar's cost does not grow with
    // destinations.
    assert_eq!(envoy_clusters(&envoy).await, ["lattice-tls|system-roots"]);

    // The IAMAuthPolicy shows beside the destination it guards, in Envoy's own dump.
    let destinations = envoy_destinations(&envoy).await;
    let provenance = |name: &str| {
        destinations
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, provenance)| provenance.clone())
            .unwrap()
    };
    let guarded = provenance(&destination("demo-cluster1.example.com", 443));
    assert!(
        guarded.contains("route apps/demo-cluster1")
            && guarded.contains("auth policy apps/demo-cluster1-iam-auth-policy (service)")
            && guarded.contains(
                "auth policy lattice-gateway/lattice-gateway-iam-auth-policy (service network)"
            ),
        "{guarded}"
    );
    let other = provenance(&destination("demo-cluster2.example.com", 443));
    assert!(!other.contains("demo-cluster1-iam-auth-policy"), "{other}");
    // And in `proxy-status`, one row per destination (no service was discovered: `-`).
    let status = std::process::Command::new(support::lattice_xds())
        .args(["proxy-status", "--admin", &controller.admin_url("")])
        .output()
        .expect("proxy-status");
    let status = String::from_utf8(status.stdout).unwrap();
    let row = |destination: &str| {
        status
            .lines()
            .find(|line| line.starts_with(destination))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no row for {destination} in:\n{status}"))
    };
    assert_eq!(
        row("demo-cluster1.example.com:443"),
        "demo-cluster1.example.com:443 apps/demo-cluster1 - \
         lattice-gateway/lattice-gateway-iam-auth-policy (service network), \
         apps/demo-cluster1-iam-auth-policy (service)"
    );
    // A route applied as v1 without a policy of its own.
    assert_eq!(
        row("demo-cluster3.example.com:443"),
        "demo-cluster3.example.com:443 apps/demo-cluster3 - \
         lattice-gateway/lattice-gateway-iam-auth-policy (service network)"
    );

    // A hostname update.
    cluster.kubectl(&[
        "patch",
        "httproute.gateway.networking.k8s.io",
        "demo-cluster3",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        r#"{"spec":{"hostnames":["demo-cluster3-renamed.example.com"]}}"#,
    ]);
    let mut expected = walkthrough.clone();
    expected.push(destination("demo-cluster3-renamed.example.com", 443));
    wait_for_destinations(&envoy, &expected).await;

    // A deletion.
    cluster.kubectl(&[
        "delete",
        "httproute.gateway.networking.k8s.io",
        "demo-cluster3",
        "-n",
        "apps",
    ]);
    wait_for_destinations(&envoy, &walkthrough).await;

    // A route the API server accepts but the controller cannot serve: an Event on it, the rest
    // still served.
    cluster.apply(&v1_route("wildcard", "*.wild.example.com"));
    let events = eventually("an Event on the invalid route", WAIT, || async {
        let events = events_about(&cluster, "wildcard");
        (!events.is_empty()).then_some(events)
    })
    .await;
    let (reason, note, _) = &events[0];
    assert_eq!(reason, "Skipped");
    assert!(note.contains("wildcard"), "{note}");
    wait_for_destinations(&envoy, &walkthrough).await;

    // A route the API server stores but too large to decode: refused before decoding, with an
    // Event naming the limit; the rest still served.
    let oversized = cluster.dir().join("oversized.yaml");
    std::fs::write(
        &oversized,
        oversized_route("oversized", "oversized.example.com"),
    )
    .unwrap();
    cluster.kubectl(&["create", "-f", oversized.to_str().unwrap()]);
    let events = eventually("an Event on the oversized route", WAIT, || async {
        let events = events_about(&cluster, "oversized");
        (!events.is_empty()).then_some(events)
    })
    .await;
    let (reason, note, _) = &events[0];
    assert_eq!(reason, "Skipped");
    assert!(note.contains("more than 512 KiB"), "{note}");

    // Another change rebuilds the snapshot; the same problems are not reported twice.
    cluster.apply(&v1_route("demo-cluster4", "demo-cluster4.example.com"));
    let mut expected = walkthrough.clone();
    expected.push(destination("demo-cluster4.example.com", 443));
    wait_for_destinations(&envoy, &expected).await;
    assert_eq!(events_about(&cluster, "wildcard").len(), 1);
    assert_eq!(events_about(&cluster, "oversized").len(), 1);
    let metrics = controller.metrics().await;
    assert_eq!(
        metric(&metrics, "lattice_xds_events_written_total"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "lattice_xds_invalid_inputs{kind=\"HTTPRoute\"}"),
        Some(2.0),
        "{metrics}"
    );
}

/// GRPCRoutes are watched like HTTPRoutes: one attached to an HTTPS listener becomes a
/// destination with its auth policy, behind a shared HTTP/2 cluster; one on a plain HTTP
/// listener gets an Event, is counted, and the rest is still served.
#[tokio::test]
async fn grpc_routes_become_http2_destinations_and_bad_ones_get_events() {
    let cluster = KubeCluster::start();
    apply_walkthrough(&cluster);
    cluster.apply(GREETER);
    cluster.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata:\n  name: stock\n  namespace: apps\n\
         spec:\n  hostnames: [stock.example.com]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: http-listener\n",
    );
    let args = controller_args(&cluster.kubeconfig);
    let controller = Controller::start(cluster.dir(), &args).await;
    let envoy = Envoy::start(cluster.dir(), "pod-g", controller.xds_port, "delta").await;

    let greeter = destination("greeter.example.com", 443);
    eventually("the GRPCRoute's destination", WAIT, || async {
        names(&envoy_destinations(&envoy).await)
            .contains(&greeter)
            .then_some(())
    })
    .await;
    let destinations = envoy_destinations(&envoy).await;
    let (_, provenance) = destinations
        .iter()
        .find(|(name, _)| *name == greeter)
        .unwrap();
    assert!(
        provenance.contains("route apps/greeter")
            && provenance.contains("auth policy apps/greeter-iam-auth-policy (service)"),
        "{provenance}"
    );
    // One shared cluster per protocol: HTTP as ALPN negotiates for HTTPRoutes, HTTP/2 for
    // GRPCRoutes.
    assert_eq!(
        envoy_clusters(&envoy).await,
        ["lattice-grpc|system-roots", "lattice-tls|system-roots"]
    );

    let events = eventually("an Event on the GRPCRoute", WAIT, || async {
        let events = events_on(&cluster, "GRPCRoute", "stock");
        (!events.is_empty()).then_some(events)
    })
    .await;
    let (reason, note, _) = &events[0];
    assert_eq!(reason, "Skipped");
    assert!(note.contains("needs an HTTPS listener"), "{note}");
    assert!(!names(&envoy_destinations(&envoy).await).contains("stock.example.com:80"));
    let metrics = controller.metrics().await;
    assert_eq!(
        metric(&metrics, "lattice_xds_invalid_inputs{kind=\"GRPCRoute\"}"),
        Some(1.0),
        "{metrics}"
    );
}

/// An HTTPRoute within the CRD's schema (2 rules of 64 matches, each on 2 headers of 2,500
/// characters) and the API server's size limit, but over the controller's 512 KiB per object.
fn oversized_route(name: &str, host: &str) -> String {
    let value = "v".repeat(2500);
    let mut matches = String::new();
    for index in 0..64 {
        matches.push_str(&format!(
            "    - headers:\n      - name: x-a-{index}\n        value: {value}\n      - name: x-b-{index}\n        value: {value}\n"
        ));
    }
    let mut text = v1_route(name, host);
    text.push_str("  rules:\n");
    for _ in 0..2 {
        text.push_str("  - matches:\n");
        text.push_str(&matches);
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_never_publishes_an_empty_snapshot() {
    let cluster = KubeCluster::start();
    apply_walkthrough(&cluster);
    let args = controller_args(&cluster.kubeconfig);
    let controller = Controller::start(cluster.dir(), &args).await;
    let envoy = Envoy::start(cluster.dir(), "pod-b", controller.xds_port, "sotw").await;
    let walkthrough: Vec<String> = ["demo-cluster1.example.com", "demo-cluster2.example.com"]
        .iter()
        .map(|host| destination(host, 443))
        .collect();
    let before = eventually("Envoy to hold the walkthrough", WAIT, || async {
        let found = names(&envoy_destinations(&envoy).await);
        (found.len() == 4 && walkthrough.iter().all(|name| found.contains(name))).then_some(found)
    })
    .await;
    let snapshots = metric(&controller.metrics().await, "lattice_xds_snapshots_total").unwrap();

    // The API server and etcd go away; the controller notices and keeps serving.
    cluster.down();
    eventually("the controller to see the watch fail", WAIT, || async {
        let metrics = controller.metrics().await;
        metrics
            .lines()
            .any(|line| line.starts_with("lattice_xds_kubernetes_watch_errors_total{"))
            .then_some(())
    })
    .await;
    assert_eq!(names(&envoy_destinations(&envoy).await), before);

    // They come back with the same data; a change made afterwards arrives.
    cluster.up();
    cluster.apply(&v1_route("after-restart", "after-restart.example.com"));
    let mut expected: Vec<String> = before.iter().cloned().collect();
    expected.push(destination("after-restart.example.com", 443));
    wait_for_destinations(&envoy, &expected).await;

    // Exactly one snapshot was published since: the change. None for the re-list itself, so
    // none empty or partial.
    let after = metric(&controller.metrics().await, "lattice_xds_snapshots_total").unwrap();
    assert_eq!(
        after,
        snapshots + 1.0,
        "snapshots before the restart: {snapshots}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_the_shipped_cluster_role_serve_and_one_writes() {
    let cluster = KubeCluster::start();
    apply_walkthrough(&cluster);
    cluster.kubectl(&["create", "namespace", "lattice-xds"]);
    cluster.kubectl(&[
        "create",
        "serviceaccount",
        "lattice-xds-controller",
        "-n",
        "lattice-xds",
    ]);
    cluster.apply(CLUSTER_ROLE);
    cluster.kubectl(&[
        "create",
        "clusterrolebinding",
        "lattice-xds-controller",
        "--clusterrole=lattice-xds-controller",
        "--serviceaccount=lattice-xds:lattice-xds-controller",
    ]);
    // Its Lease, in its own namespace only.
    cluster.apply_in("lattice-xds", ROLE);
    cluster.kubectl(&[
        "create",
        "rolebinding",
        "lattice-xds-controller",
        "-n",
        "lattice-xds",
        "--role=lattice-xds-controller",
        "--serviceaccount=lattice-xds:lattice-xds-controller",
    ]);
    let account = "system:serviceaccount:lattice-xds:lattice-xds-controller";
    let can = |verb: &str, resource: &str| {
        let (_, answer) = cluster.try_kubectl(&[
            "auth",
            "can-i",
            verb,
            resource,
            "--all-namespaces",
            "--as",
            account,
        ]);
        answer.trim().to_string()
    };
    assert_eq!(can("watch", "httproutes.gateway.networking.k8s.io"), "yes");
    assert_eq!(can("get", "secrets"), "no");
    assert_eq!(can("list", "secrets"), "no");
    assert_eq!(can("create", "httproutes.gateway.networking.k8s.io"), "no");
    assert_eq!(can("patch", "httproutes.gateway.networking.k8s.io"), "no");
    assert_eq!(can("delete", "configmaps"), "no");
    // Nothing is read by name, and the Lease is its namespace's alone.
    assert_eq!(can("get", "httproutes.gateway.networking.k8s.io"), "no");
    assert_eq!(can("get", "configmaps/lattice-xds-ca-bundle"), "no");
    assert_eq!(can("update", "configmaps/lattice-xds-ca-bundle"), "no");
    assert_eq!(can("create", "leases.coordination.k8s.io"), "no");
    let (_, in_own) = cluster.try_kubectl(&[
        "auth",
        "can-i",
        "create",
        "leases.coordination.k8s.io",
        "-n",
        "lattice-xds",
        "--as",
        account,
    ]);
    assert_eq!(in_own.trim(), "yes");

    // A namespace that asks for the CA bundle, and a CA to put in it.
    cluster.kubectl(&["create", "namespace", "payments"]);
    cluster.kubectl(&[
        "label",
        "namespace",
        "payments",
        "lattice-xds/ca-bundle=true",
    ]);
    let ca = rcgen::generate_simple_self_signed(vec!["test-ca".to_string()]).unwrap();
    let ca_file = cluster.dir().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();

    let kubeconfig = cluster.service_account_kubeconfig("lattice-xds", "lattice-xds-controller");
    let mut args = controller_args(&kubeconfig);
    args.push("--lease-namespace=lattice-xds".to_string());
    args.push(format!("--ca-file={}", ca_file.display()));
    let start = |name: &'static str| {
        let mut args = args.clone();
        args.push(format!("--instance={name}"));
        let dir = cluster.dir().to_path_buf();
        async move { Controller::start_on(&dir, free_port(), free_port(), name, &args, &[]).await }
    };
    let first = start("replica-1").await;
    let second = start("replica-2").await;

    // Both serve xDS.
    let envoy_one = Envoy::start(cluster.dir(), "pod-1", first.xds_port, "delta").await;
    let envoy_two = Envoy::start(cluster.dir(), "pod-2", second.xds_port, "delta").await;
    for envoy in [&envoy_one, &envoy_two] {
        eventually("both Envoys to hold the walkthrough", WAIT, || async {
            (envoy_destinations(envoy).await.len() == 4).then_some(())
        })
        .await;
    }

    // Exactly one holds the Lease.
    let leader = eventually("one leader", WAIT, || async {
        let one = metric(&first.metrics().await, "lattice_xds_leader");
        let two = metric(&second.metrics().await, "lattice_xds_leader");
        match (one, two) {
            (Some(1.0), Some(0.0)) => Some("replica-1"),
            (Some(0.0), Some(1.0)) => Some("replica-2"),
            _ => None,
        }
    })
    .await;
    let lease = cluster.kubectl(&[
        "get",
        "lease",
        "lattice-xds-controller",
        "-n",
        "lattice-xds",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(lease, leader);

    // Only the leader writes: one Event for the invalid route, from the leader.
    cluster.apply(&v1_route("wildcard", "*.wild.example.com"));
    let events = eventually("an Event on the invalid route", WAIT, || async {
        let events = events_about(&cluster, "wildcard");
        (!events.is_empty()).then_some(events)
    })
    .await;
    // Both replicas have rebuilt once they report the route as invalid.
    for replica in [&first, &second] {
        eventually("both replicas to skip the route", WAIT, || async {
            let metrics = replica.metrics().await;
            (metric(&metrics, "lattice_xds_invalid_inputs{kind=\"HTTPRoute\"}") == Some(1.0))
                .then_some(())
        })
        .await;
    }
    let events_after = events_about(&cluster, "wildcard");
    assert_eq!(events_after.len(), 1, "{events_after:?}");
    assert_eq!(events[0].2, leader);

    // The CA bundle ConfigMap, written by the leader into the labelled namespace only.
    let bundle = eventually("the CA bundle ConfigMap", WAIT, || async {
        let (ok, text) = cluster.try_kubectl(&[
            "get",
            "configmap",
            "lattice-xds-ca-bundle",
            "-n",
            "payments",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        ok.then_some(text)
    })
    .await;
    assert_eq!(bundle.trim(), ca.cert.pem().trim());
    let (exists, _) =
        cluster.try_kubectl(&["get", "configmap", "lattice-xds-ca-bundle", "-n", "apps"]);
    assert!(
        !exists,
        "the bundle went to a namespace that did not ask for it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_stream_gets_no_event_written_on_a_pod() {
    let cluster = KubeCluster::start();
    apply_walkthrough(&cluster);
    let args = controller_args(&cluster.kubeconfig);
    let controller = Controller::start(cluster.dir(), &args).await;

    // Any client may claim to be pod apps/client-1 when streams are not authenticated
    // (--xds-auth none), and reject what it is sent.
    let node = "client-1.apps";
    let mut stream = Sotw::open(controller.xds_port).await;
    stream
        .send(ads::request(node, type_url::CLUSTER, &[]))
        .await;
    let rejected = stream.next().await;
    let mut nack = ads::request(node, type_url::CLUSTER, &[]);
    nack.response_nonce = rejected.nonce.clone();
    nack.error_detail = Some(Status {
        code: 3,
        message: "cluster lattice-egress: no healthy upstream".to_string(),
        ..Default::default()
    });
    stream.send(nack).await;
    // The rejection is recorded and shown ...
    eventually("the rejection in proxy status", WAIT, || async {
        let proxies = controller.proxies().await;
        support::process::type_status(&proxies, node, "CDS")
            .filter(|status| status["nack_error"] != "")
            .map(|_| ())
    })
    .await;
    // ... but nothing writes Events on pods for streams that did not prove who they are
    // (tests/xds_auth.rs shows the Events of an authenticated one).
    let log = controller.process.log_text();
    assert!(
        log.contains("no Events on pods for rejected configurations"),
        "{log}"
    );
    let events = events_on(&cluster, "Pod", "client-1");
    assert!(events.is_empty(), "{events:?}");
    let metrics = controller.metrics().await;
    assert_eq!(
        metric(&metrics, "lattice_xds_rejecting_proxies{type=\"CDS\"}"),
        Some(1.0),
        "{metrics}"
    );
}

/// A Gateway whose listeners admit routes three ways: its own namespace only (no
/// `allowedRoutes`), the namespaces labelled for it (`Selector`), and every namespace (`All`).
const ATTACHMENT_GATEWAY: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: lattice-gateway
  namespace: lattice-gateway
spec:
  gatewayClassName: amazon-vpc-lattice
  listeners:
  - name: http-listener
    port: 80
    protocol: HTTP
  - name: https-listener-with-custom-domain
    hostname: \"*.example.com\"
    port: 443
    protocol: HTTPS
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels:
            lattice-gateway-access: granted
  - name: open-listener
    hostname: \"*.open.example.com\"
    port: 9443
    protocol: HTTPS
    allowedRoutes:
      namespaces:
        from: All
";

/// The victim's name, in the shape VPC Lattice gives the service of `payments/payments`.
const VICTIM_ASSIGNED: &str =
    "payments-payments-0a1b2c3d4e5f60718.7d67968.vpc-lattice-svcs.ap-northeast-2.on.aws";

/// An HTTPRoute in `namespace` on one listener of the gateway, with an assigned-name annotation
/// unless `assigned` is empty.
fn attached_route(
    namespace: &str,
    name: &str,
    hosts: &[&str],
    section: &str,
    assigned: &str,
) -> String {
    let annotations = match assigned {
        "" => String::new(),
        name => format!(
            "  annotations:\n    application-networking.k8s.aws/lattice-assigned-domain-name: {name}\n"
        ),
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: {namespace}\n{annotations}\
         spec:\n  hostnames: {hosts:?}\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: {section}\n"
    )
}

/// Writes what the VPC Lattice controller writes once it accepts a route on its listener.
fn accept(cluster: &KubeCluster, namespace: &str, name: &str, section: &str) {
    let status = serde_json::json!({"status": {"parents": [{
        "controllerName": "application-networking.k8s.aws/gateway-api-controller",
        "parentRef": {
            "group": "gateway.networking.k8s.io", "kind": "Gateway",
            "namespace": "lattice-gateway", "name": "lattice-gateway", "sectionName": section,
        },
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
            "lastTransitionTime": "2025-06-01T00:00:00Z",
        }],
    }]}});
    cluster.kubectl(&[
        "patch",
        "httproute",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_attach_only_where_their_gateway_admits_them_once_accepted() {
    let cluster = KubeCluster::start();
    for namespace in ["lattice-gateway", "payments", "tenant-x"] {
        cluster.kubectl(&["create", "namespace", namespace]);
    }
    cluster.kubectl(&[
        "label",
        "namespace",
        "payments",
        "lattice-gateway-access=granted",
    ]);
    // The GatewayClass of the walkthrough's gateway file.
    cluster.apply(GATEWAY.split("\n---\n").next().unwrap());
    cluster.apply(ATTACHMENT_GATEWAY);

    // The probe: an older route of tenant-x claims the victim's custom domain on the listener
    // that admits only the gateway's own namespace, and the victim's assigned name.
    let takeover = attached_route(
        "tenant-x",
        "old-route",
        &["pay.example.com"],
        "http-listener",
        VICTIM_ASSIGNED,
    );
    cluster.apply(&takeover);
    let routes = [
        // Same, admitted: the gateway's own namespace.
        (
            "lattice-gateway",
            "local",
            vec!["local.example.com"],
            "http-listener",
            "",
        ),
        // Selector, admitted: the victim, with its assigned name.
        (
            "payments",
            "payments",
            vec!["pay.example.com"],
            "https-listener-with-custom-domain",
            VICTIM_ASSIGNED,
        ),
        // Selector, refused until tenant-x is labelled.
        (
            "tenant-x",
            "sneaky",
            vec!["sneaky.example.com"],
            "https-listener-with-custom-domain",
            "",
        ),
        // All, admitted; but the victim's assigned name is not this route's service's.
        (
            "tenant-x",
            "reports",
            vec!["reports.open.example.com"],
            "open-listener",
            VICTIM_ASSIGNED,
        ),
        // All, refused: a name outside the listener's.
        (
            "tenant-x",
            "elsewhere",
            vec!["api.other-domain.net"],
            "open-listener",
            "",
        ),
    ];
    for (namespace, name, hosts, section, assigned) in &routes {
        cluster.apply(&attached_route(namespace, name, hosts, section, assigned));
        accept(&cluster, namespace, name, section);
    }
    accept(&cluster, "tenant-x", "old-route", "http-listener");
    // Applied, not yet accepted.
    cluster.apply(&attached_route(
        "payments",
        "pending",
        &["pending.example.com"],
        "https-listener-with-custom-domain",
        "",
    ));

    let mut args = controller_args(&cluster.kubeconfig);
    args.retain(|arg| !arg.starts_with("--accepted-routes-only"));
    let controller = Controller::start(cluster.dir(), &args).await;
    let envoy = Envoy::start(cluster.dir(), "pod-a", controller.xds_port, "delta").await;
    let mut expected = vec![
        destination("local.example.com", 80),
        destination("pay.example.com", 443),
        destination(VICTIM_ASSIGNED, 443),
        destination("reports.open.example.com", 9443),
    ];
    wait_for_destinations(&envoy, &expected).await;
    // Both of the victim's names go to the victim's route.
    for (name, provenance) in envoy_destinations(&envoy).await {
        if name.starts_with("pay.") || name.starts_with("payments-") {
            assert!(
                provenance.contains("route payments/payments"),
                "{name}: {provenance}"
            );
        }
    }

    // Each refusal says why, on the route.
    let refused = [
        ("tenant-x", "old-route", "own namespace only"),
        ("tenant-x", "sneaky", "namespace tenant-x is not one"),
        ("tenant-x", "reports", "is not that service's"),
        (
            "tenant-x",
            "elsewhere",
            "none of the route's host names is within it",
        ),
        ("payments", "pending", "not yet accepted"),
    ];
    for (namespace, name, why) in refused {
        eventually(
            &format!("an Event on {namespace}/{name} saying {why:?}"),
            WAIT,
            || async {
                let events = events_in(&cluster, namespace, "HTTPRoute", name);
                events
                    .iter()
                    .any(|(_, note, _)| note.contains(why))
                    .then_some(())
            },
        )
        .await;
    }
    let metrics = controller.metrics().await;
    assert_eq!(
        metric(&metrics, "lattice_xds_invalid_inputs{kind=\"HTTPRoute\"}"),
        Some(5.0),
        "{metrics}"
    );

    // Accepted now: served. Labelled now: admitted by the selector.
    accept(
        &cluster,
        "payments",
        "pending",
        "https-listener-with-custom-domain",
    );
    expected.push(destination("pending.example.com", 443));
    wait_for_destinations(&envoy, &expected).await;
    cluster.kubectl(&[
        "label",
        "namespace",
        "tenant-x",
        "lattice-gateway-access=granted",
    ]);
    expected.push(destination("sneaky.example.com", 443));
    wait_for_destinations(&envoy, &expected).await;
}
