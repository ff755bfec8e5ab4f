//! Sidecar injection end to end: the chart's MutatingWebhookConfiguration, installed in a real
//! API server and pointed at a controller on 127.0.0.1, injects the init container, Envoy and
//! the signer into the pods that opted in by label, leaves the others alone (they never reach
//! the webhook: pods of other namespaces are created on a fresh install, during an outage and
//! in the cert-manager mode), never injects twice or a hostNetwork pod, and with
//! `failurePolicy: Ignore` pods that opted in are still admitted while the controller is down.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::kube::KubeCluster;
use support::process::Controller;
use support::{eventually, free_port, helm};

const WAIT: Duration = Duration::from_secs(30);

fn pod(name: &str, annotations: &[(&str, &str)]) -> String {
    labelled_pod(name, "", annotations)
}

/// A pod with `extra` lines under `metadata.labels` (indented by four spaces).
fn labelled_pod(name: &str, extra_labels: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: Vec<String> = annotations
        .iter()
        .map(|(key, value)| format!("    {key}: \"{value}\"\n"))
        .collect();
    let annotations = if annotations.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{}", annotations.concat())
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: client\n{extra_labels}{annotations}\
         spec:\n  containers:\n  - name: app\n    image: busybox\n    command: [sleep, infinity]\n"
    )
}

fn stored_pod(cluster: &KubeCluster, namespace: &str, name: &str) -> Value {
    serde_json::from_str(&cluster.kubectl(&["get", "pod", name, "-n", namespace, "-o", "json"]))
        .unwrap()
}

fn init_container_names(pod: &Value) -> Vec<String> {
    pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|container| container["name"].as_str().unwrap().to_string())
        .collect()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["initContainers"]
        .as_array()
        .and_then(|containers| containers.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {pod}"))
}

const INJECTED: [&str; 4] = [
    "lattice-xds-redirect",
    "lattice-xds-bootstrap",
    "lattice-xds-envoy",
    "lattice-xds-signer",
];

/// The chart's webhook configuration for a controller at `url`.
fn webhook_configuration(url: &str, failure_policy: &str) -> String {
    webhook_configuration_with(url, failure_policy, false)
}

/// The same, with cert-manager keeping the caBundle when `cert_manager`.
fn webhook_configuration_with(url: &str, failure_policy: &str, cert_manager: bool) -> String {
    helm::webhook_configuration(&[
        &format!("--set=injection.url={url}"),
        &format!("--set=injection.failurePolicy={failure_policy}"),
        &format!("--set=certManager.enabled={cert_manager}"),
    ])
}

/// The certificate the webhook presents on 127.0.0.1, verified against `ca` (DER of the leaf).
async fn served_certificate(port: u16, ca_pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("the webhook's certificate verifies against the CA in the Secret");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_injects_the_pods_that_ask_once() {
    let cluster = KubeCluster::start();
    let webhook_port = free_port();
    let url = format!("https://127.0.0.1:{webhook_port}");
    cluster.apply(&webhook_configuration(&url, "Fail"));
    for (namespace, labelled) in [("labelled", true), ("plain", false)] {
        cluster.kubectl(&["create", "namespace", namespace]);
        cluster.kubectl(&["create", "serviceaccount", "default", "-n", namespace]);
        if labelled {
            cluster.kubectl(&[
                "label",
                "namespace",
                namespace,
                "lattice-xds/inject=enabled",
            ]);
        }
    }

    // A fresh install: no controller answers and the caBundle is empty. Pods that did not opt
    // in are created all the same; a pod that opted in is refused (failurePolicy Fail).
    assert_outside_pods_are_created(&cluster, "fresh-install");
    let (created, refusal) = cluster.try_kubectl_in("labelled", &pod("before-controller", &[]));
    assert!(
        !created,
        "a pod that opted in was admitted unsigned: {refusal}"
    );

    let args = vec![
        "--kubernetes".to_string(),
        format!("--kubeconfig={}", cluster.kubeconfig.display()),
        "--signing=ext-proc".to_string(),
        "--region=ap-northeast-2".to_string(),
        format!("--webhook-listen=127.0.0.1:{webhook_port}"),
        "--webhook-host=127.0.0.1".to_string(),
        "--webhook-configuration=lattice-xds".to_string(),
        "--inject-image=lattice-xds:test".to_string(),
        "--inject-xds-address=lattice-xds.lattice-xds.svc:18000".to_string(),
        // Renewed every second here, so that the test sees a renewal.
        "--webhook-renew-every=1s".to_string(),
        "--handshake-timeout=2s".to_string(),
    ];
    let controller = Controller::start(cluster.dir(), &args).await;
    // The leader puts its CA into the configuration's caBundle; then the API server can call it.
    cluster.wait_for_ca_bundle().await;

    // The walkthrough's annotation in a labelled namespace.
    let annotated = pod(
        "annotated",
        &[("vpc-lattices-svcs.amazonaws.com/agent-inject", "true")],
    );
    cluster.kubectl_in("labelled", &annotated);
    let injected = stored_pod(&cluster, "labelled", "annotated");
    assert_eq!(init_container_names(&injected), INJECTED);
    assert_eq!(
        injected["metadata"]["annotations"]["lattice-xds/injected"],
        "true"
    );
    // The label the chart's PodMonitor selects the signers of injected pods by.
    assert_eq!(
        injected["metadata"]["labels"]["lattice-xds/injected"],
        "true"
    );
    let redirect = container(&injected, "lattice-xds-redirect");
    assert_eq!(redirect["image"], "lattice-xds:test");
    assert_eq!(
        redirect["args"],
        serde_json::json!([
            "redirect",
            "--egress-port",
            "8080",
            "--proxy-uid",
            "101",
            "--proxy-gid",
            "101"
        ])
    );
    assert_eq!(
        redirect["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW"])
    );
    let bootstrap = container(&injected, "lattice-xds-bootstrap");
    let bootstrap_args = bootstrap["args"].to_string();
    for expected in [
        "\"--node-id\",\"$(POD_NAME).$(POD_NAMESPACE)\"",
        "\"--cluster\",\"client\"",
        "\"--xds-address\",\"lattice-xds.lattice-xds.svc:18000\"",
    ] {
        assert!(
            bootstrap_args.contains(expected),
            "{expected} not in {bootstrap_args}"
        );
    }
    assert_eq!(
        bootstrap["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let envoy = container(&injected, "lattice-xds-envoy");
    assert_eq!(envoy["image"], "envoyproxy/envoy:v1.40.0");
    assert_eq!(envoy["restartPolicy"], "Always");
    assert_eq!(envoy["securityContext"]["runAsUser"], 101);
    let signer = container(&injected, "lattice-xds-signer");
    assert_eq!(
        signer["command"],
        serde_json::json!(["/usr/local/bin/lattice-xds-signer"])
    );
    assert!(signer["args"].is_null(), "{signer}");
    let region = signer["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|env| env["name"] == "AWS_REGION")
        .map(|env| env["value"].clone());
    assert_eq!(region, Some(Value::from("ap-northeast-2")));
    // The application's own container is untouched.
    assert_eq!(injected["spec"]["containers"].as_array().unwrap().len(), 1);

    // No label: untouched, and never sent to the webhook, even with the annotation (the API
    // server cannot select on annotations). The pod's own label: injected.
    cluster.kubectl_in("plain", &pod("untouched", &[]));
    assert!(init_container_names(&stored_pod(&cluster, "plain", "untouched")).is_empty());
    cluster.kubectl_in(
        "plain",
        &pod(
            "annotated-only",
            &[("vpc-lattice-svcs.amazonaws.com/agent-inject", "true")],
        ),
    );
    assert!(init_container_names(&stored_pod(&cluster, "plain", "annotated-only")).is_empty());
    cluster.kubectl_in(
        "plain",
        &labelled_pod("pod-label", "    lattice-xds/inject: enabled\n", &[]),
    );
    assert_eq!(
        init_container_names(&stored_pod(&cluster, "plain", "pod-label")),
        INJECTED
    );
    // In an opted-in namespace a pod opts out with the label.
    cluster.kubectl_in(
        "labelled",
        &labelled_pod("opted-out", "    lattice-xds/inject: disabled\n", &[]),
    );
    assert!(init_container_names(&stored_pod(&cluster, "labelled", "opted-out")).is_empty());
    // A pod on the host's network is admitted unchanged: the API server does not even ask.
    cluster.kubectl_in("labelled", &host_network_pod("host-network"));
    assert!(init_container_names(&stored_pod(&cluster, "labelled", "host-network")).is_empty());

    // A pod made from an injected pod's manifest is not injected again.
    let mut again = injected.clone();
    again["metadata"] = serde_json::json!({
        "name": "again",
        "labels": injected["metadata"]["labels"],
        "annotations": injected["metadata"]["annotations"],
    });
    again.as_object_mut().unwrap().remove("status");
    cluster.kubectl_in("labelled", &again.to_string());
    assert_eq!(
        init_container_names(&stored_pod(&cluster, "labelled", "again")),
        INJECTED
    );
    // Applying the original manifest again changes nothing.
    let applied = cluster.apply_in("labelled", &annotated);
    assert!(
        applied.contains("unchanged") || applied.contains("configured"),
        "{applied}"
    );
    assert_eq!(
        init_container_names(&stored_pod(&cluster, "labelled", "annotated")),
        INJECTED
    );

    // The serving certificate is renewed from the same CA; the API server keeps trusting it.
    let ca = cluster.controller_ca();
    let first = served_certificate(webhook_port, &ca).await;
    let renewed = eventually("a renewed serving certificate", WAIT, || async {
        let now = served_certificate(webhook_port, &ca).await;
        (now != first).then_some(now)
    })
    .await;
    assert_ne!(renewed, first);
    cluster.kubectl_in(
        "plain",
        &labelled_pod("after-renewal", "    lattice-xds/inject: enabled\n", &[]),
    );
    assert_eq!(
        init_container_names(&stored_pod(&cluster, "plain", "after-renewal")),
        INJECTED
    );

    // Pod Security: an opted-in namespace needs the privileged level, for the redirect init
    // container alone (root, NET_ADMIN and NET_RAW for the iptables rules); baseline refuses it.
    cluster.kubectl(&["create", "namespace", "baseline"]);
    cluster.kubectl(&["create", "serviceaccount", "default", "-n", "baseline"]);
    cluster.kubectl(&[
        "label",
        "namespace",
        "baseline",
        "lattice-xds/inject=enabled",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    let (created, refusal) = cluster.try_kubectl_in("baseline", &pod("under-baseline", &[]));
    assert!(
        !created,
        "a baseline namespace admitted the redirect container"
    );
    assert!(
        refusal.contains("PodSecurity")
            && refusal.contains("lattice-xds-redirect")
            && refusal.contains("NET_ADMIN"),
        "{refusal}"
    );

    // A connection to the webhook that never starts its TLS handshake is closed at the
    // deadline; every pod may reach this port.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", webhook_port))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read(&mut silent, &mut buffer),
    );
    assert!(
        matches!(read.await, Ok(Ok(0) | Err(_))),
        "the webhook kept a silent connection"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "closed after {took:?}, with a 2 s deadline"
    );

    // Three pods injected and kept, and the one Pod Security refused after injection.
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains("lattice_xds_injections_total{decision=\"injected\"} 4"),
        "{metrics}"
    );
    // Pods that did not opt in, and pods on the host's network, were never sent to it.
    assert!(!metrics.contains("not_requested"), "{metrics}");
    assert!(!metrics.contains("host_network"), "{metrics}");

    // The controller goes away. With failurePolicy Fail the pod is refused; with Ignore it is
    // admitted, without the sidecar.
    drop(controller);
    let (created, refusal) = cluster.try_kubectl_in("labelled", &pod("while-down-fail", &[]));
    assert!(
        !created,
        "a pod was admitted without its webhook: {refusal}"
    );
    assert!(refusal.contains("inject.lattice-xds.io"), "{refusal}");
    assert_outside_pods_are_created(&cluster, "outage");
    let (created, output) =
        cluster.try_kubectl_in("labelled", &host_network_pod("host-network-while-down"));
    assert!(
        created,
        "a hostNetwork pod waited for the controller: {output}"
    );
    cluster.apply(&webhook_configuration(&url, "Ignore"));
    let (created, output) = cluster.try_kubectl_in("labelled", &pod("while-down", &[]));
    assert!(created, "{output}");
    assert!(init_container_names(&stored_pod(&cluster, "labelled", "while-down")).is_empty());

    // cert-manager keeps the caBundle (here no cert-manager runs, so there is none): the same
    // selectors, the same guarantee.
    cluster.apply(&webhook_configuration_with(&url, "Fail", true));
    assert_outside_pods_are_created(&cluster, "cert-manager");
}

/// A pod on the host's network.
fn host_network_pod(name: &str) -> String {
    pod(name, &[]).replace(
        "spec:\n  containers:",
        "spec:\n  hostNetwork: true\n  containers:",
    )
}

/// Pods of a namespace that did not opt in are created, unchanged, whatever the webhook's state.
fn assert_outside_pods_are_created(cluster: &KubeCluster, case: &str) {
    let name = format!("outside-{case}");
    let (created, output) = cluster.try_kubectl_in("plain", &pod(&name, &[]));
    assert!(
        created,
        "{case}: a pod that did not opt in was refused: {output}"
    );
    assert!(init_container_names(&stored_pod(cluster, "plain", &name)).is_empty());
}
