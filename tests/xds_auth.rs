//! ADS over TLS, every stream authenticated as a pod (`--xds-auth kubernetes`), against a real
//! API server: a pod's own projected token is served; no token, a token for another audience,
//! an expired token, a token of another pod, a node id that is not the pod's, and a token bound
//! to no pod are each refused with the status that says so; a plain-text client is refused;
//! stock Envoy keeps being served past its first token's lifetime because it reads the renewed
//! token file for its next stream; proxy status shows who each stream is; `lattice-xds check`
//! sees ADS answer; the probe listener serves health and metrics only; the CA is published in a
//! ConfigMap for other injectors; a pod's rejected configuration and its recovery are Events
//! on that pod. And a pod the webhook injects, its bootstrap container run as the kubelet would
//! with the pod's projected token, is served as that pod.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use lattice_xds::xds::type_url;
use serde_json::{Value, json};
use support::envoy::Envoy;
use support::eventually;
use support::kube::KubeCluster;
use support::process::Controller;
use tonic::Code;

const GATEWAY: &str = include_str!("../examples/cluster1/gateway.yaml");
const CLUSTER1: &str = include_str!("../examples/cluster1/demo-cluster1.yaml");
const WAIT: Duration = Duration::from_secs(30);
const AUDIENCE: &str = "lattice-xds";

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.trim().split('.').nth(index).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The test cluster's tokens: issued by the API server (TokenRequest), or signed here with the
/// cluster's own service account key for lifetimes the API refuses to issue (an expired token,
/// one that lives seconds).
struct Tokens<'a> {
    cluster: &'a KubeCluster,
}

impl Tokens<'_> {
    /// A TokenRequest for service account `apps/client`, bound to `pod` when given.
    fn issued(&self, audience: &str, pod: Option<&str>) -> String {
        let mut args = vec![
            "create".to_string(),
            "token".to_string(),
            "client".to_string(),
            "-n".to_string(),
            "apps".to_string(),
            format!("--audience={audience}"),
            "--duration=10m".to_string(),
        ];
        if let Some(pod) = pod {
            let uid = self.cluster.kubectl(&[
                "get",
                "pod",
                pod,
                "-n",
                "apps",
                "-o",
                "jsonpath={.metadata.uid}",
            ]);
            args.extend([
                "--bound-object-kind=Pod".to_string(),
                format!("--bound-object-name={pod}"),
                format!("--bound-object-uid={}", uid.trim()),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cluster.kubectl(&args).trim().to_string()
    }

    /// `pod`'s token with its lifetime moved to [`now - age`, `now - age + lifetime`], signed
    /// with the API server's key, so it is valid in every other way.
    fn signed(&self, pod: &str, age: Duration, lifetime: Duration) -> String {
        let model = self.issued(AUDIENCE, Some(pod));
        let header = decode_part(&model, 0);
        let mut claims = decode_part(&model, 1);
        let issued_at = now() - age.as_secs();
        claims["iat"] = json!(issued_at);
        claims["nbf"] = json!(issued_at);
        claims["exp"] = json!(issued_at + lifetime.as_secs());
        let input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let key = self.cluster.dir().join("pki/service-account.key");
        let mut openssl = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run openssl");
        use std::io::Write as _;
        openssl
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let signature = openssl.wait_with_output().unwrap();
        assert!(signature.status.success(), "openssl could not sign");
        format!("{input}.{}", base64url(&signature.stdout))
    }
}

/// A state-of-the-world ADS client over TLS that trusts `ca_pem`.
async fn tls_client(
    port: u16,
    ca_pem: &str,
) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    let config = lattice_xds::https::client_config(Some(ca_pem)).expect("a TLS client for the CA");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .expect("a TLS connection to the controller's ADS port");
    AggregatedDiscoveryServiceClient::new(channel)
}

/// Opens a stream as `node` with `token` and returns its first answer, or how it was refused.
async fn first_answer(
    client: &mut AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    token: Option<&str>,
    node: &str,
) -> Result<DiscoveryResponse, tonic::Status> {
    let request = DiscoveryRequest {
        type_url: type_url::LISTENER.to_string(),
        node: Some(Node {
            id: node.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let requests =
        futures::StreamExt::chain(futures::stream::iter([request]), futures::stream::pending());
    let mut call = tonic::Request::new(requests);
    if let Some(token) = token {
        call.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut responses = client.stream_aggregated_resources(call).await?.into_inner();
        responses
            .message()
            .await?
            .ok_or_else(|| tonic::Status::unknown("the stream closed without an answer"))
    })
    .await;
    answer.expect("an answer or a refusal within 10 s")
}

fn expect_refused(outcome: Result<DiscoveryResponse, tonic::Status>, code: Code, what: &str) {
    match outcome {
        Ok(_) => panic!("{what}: served, but should have been refused with {code:?}"),
        Err(status) => assert_eq!(status.code(), code, "{what}: {status:?}"),
    }
}

/// A controller's flags for `cluster` that serve ADS over TLS to authenticated pods only, in
/// the native mode (Envoy is the pod's only sidecar, and the one holding the token), and
/// `extra`.
fn authenticating(cluster: &KubeCluster, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "--kubernetes".to_string(),
        format!("--kubeconfig={}", cluster.kubeconfig.display()),
        "--signing=native".to_string(),
        "--region=ap-northeast-2".to_string(),
        "--xds-auth=kubernetes".to_string(),
        // No VPC Lattice controller runs here to accept routes.
        "--accepted-routes-only=false".to_string(),
        "--xds-tls-host=127.0.0.1".to_string(),
    ];
    args.extend_from_slice(extra);
    args
}

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  serviceAccountName: client\n  containers:\n  - name: app\n    image: busybox\n"
    )
}

/// Writes `token` into `dir` the way the kubelet updates a projected volume: the file is a
/// symlink through `..data`, and an update writes a new timestamped directory and renames a new
/// `..data` symlink over the old one. Returns the token file's path.
fn write_token(dir: &Path, token: &str) -> std::path::PathBuf {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir).unwrap();
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let version = format!("..{}", since_epoch.as_nanos());
    std::fs::create_dir(dir.join(&version)).unwrap();
    std::fs::write(dir.join(&version).join("xds-token"), token).unwrap();
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    symlink(&version, &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
    let file = dir.join("xds-token");
    if std::fs::symlink_metadata(&file).is_err() {
        symlink("..data/xds-token", &file).unwrap();
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_serves_each_pod_only_under_its_own_name() {
    let cluster = KubeCluster::start();
    cluster.kubectl(&["create", "namespace", "apps"]);
    cluster.kubectl(&["create", "namespace", "lattice-gateway"]);
    cluster.kubectl(&["create", "serviceaccount", "client", "-n", "apps"]);
    cluster.kubectl_in("apps", &pod("client-a"));
    cluster.kubectl_in("apps", &pod("client-b"));
    cluster.apply(GATEWAY);
    cluster.apply(CLUSTER1);
    let tokens = Tokens { cluster: &cluster };
    let probe_port = support::free_port();

    let args = authenticating(
        &cluster,
        &[
            format!("--probe-listen=127.0.0.1:{probe_port}"),
            "--xds-ca-configmap=lattice-xds-xds-ca".to_string(),
        ],
    );
    let controller = Controller::start(cluster.dir(), &args).await;

    // The probe listener serves health and metrics, and nothing about the proxies.
    for (path, status) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/metrics", 200),
        ("/debug/proxies", 404),
        ("/debug/config_dump?node=client-a.apps", 404),
        ("/debug/trust", 404),
    ] {
        let answer = support::http::get_url(&format!("http://127.0.0.1:{probe_port}{path}"))
            .await
            .expect("the probe listener answers");
        assert_eq!(answer.status, status, "{path}");
    }
    let ca = String::from_utf8(cluster.controller_ca()).unwrap();
    // The CA (and nothing else) is published for other injectors, by the leader.
    let published = eventually("the xDS CA ConfigMap", WAIT, || async {
        let (found, text) = cluster.try_kubectl(&[
            "get",
            "configmap",
            "lattice-xds-xds-ca",
            "-n",
            "default",
            "-o",
            "jsonpath={.data}",
        ]);
        found.then_some(text)
    })
    .await;
    let published: Value = serde_json::from_str(&published).unwrap();
    assert_eq!(published, json!({ "ca.crt": ca }));

    // A plain-text client gets nothing: the port speaks TLS only.
    let plain = async {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!(
            "http://127.0.0.1:{}",
            controller.xds_port
        ))
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        first_answer(&mut client, None, "client-a.apps").await
    };
    assert!(
        plain.await.is_err(),
        "a plain-text client was served by a TLS-only ADS port"
    );

    // `lattice-xds check` (the chart's helm test) sees ADS answer and refuse it.
    let ca_file = cluster.dir().join("xds-ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    for tls in [
        format!("--xds-ca-file={}", ca_file.display()),
        "--xds-tls-unverified".to_string(),
    ] {
        let check = Command::new(support::lattice_xds())
            .args(["check", "--admin", &controller.admin_url("")])
            .arg(format!("--xds-address=127.0.0.1:{}", controller.xds_port))
            .arg(&tls)
            .output()
            .expect("lattice-xds check");
        let printed = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{tls}: {printed}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(printed.contains("streams must authenticate"), "{printed}");
    }
    // With a pod's token it is served.
    let check_token = cluster.dir().join("check-token");
    std::fs::write(&check_token, tokens.issued(AUDIENCE, Some("client-a"))).unwrap();
    let check = Command::new(support::lattice_xds())
        .args(["check", "--admin", &controller.admin_url("")])
        .arg(format!("--xds-address=127.0.0.1:{}", controller.xds_port))
        .arg(format!("--xds-ca-file={}", ca_file.display()))
        .arg(format!("--xds-token-file={}", check_token.display()))
        .arg("--node-id=client-a.apps")
        .output()
        .expect("lattice-xds check");
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{printed}");
    assert!(printed.contains("listeners, version"), "{printed}");

    let mut client = tls_client(controller.xds_port, &ca).await;
    let own = tokens.issued(AUDIENCE, Some("client-a"));
    let served = first_answer(&mut client, Some(&own), "client-a.apps")
        .await
        .expect("a pod's own token, under its own node id, is served");
    assert!(!served.resources.is_empty(), "no listeners in {served:?}");
    // The same token again is answered from the cache: no second TokenReview.
    first_answer(&mut client, Some(&own), "client-a.apps")
        .await
        .expect("served again");

    expect_refused(
        first_answer(&mut client, None, "client-a.apps").await,
        Code::Unauthenticated,
        "no token",
    );
    let vault = tokens.issued("vault", Some("client-a"));
    expect_refused(
        first_answer(&mut client, Some(&vault), "client-a.apps").await,
        Code::Unauthenticated,
        "a token for another audience",
    );
    let expired = tokens.signed(
        "client-a",
        Duration::from_secs(7200),
        Duration::from_secs(3600),
    );
    expect_refused(
        first_answer(&mut client, Some(&expired), "client-a.apps").await,
        Code::Unauthenticated,
        "an expired token",
    );
    let other = tokens.issued(AUDIENCE, Some("client-b"));
    expect_refused(
        first_answer(&mut client, Some(&other), "client-a.apps").await,
        Code::PermissionDenied,
        "another pod's token",
    );
    expect_refused(
        first_answer(&mut client, Some(&own), "client-a.other").await,
        Code::PermissionDenied,
        "a node id that is not the pod's",
    );
    let unbound = tokens.issued(AUDIENCE, None);
    expect_refused(
        first_answer(&mut client, Some(&unbound), "client-a.apps").await,
        Code::PermissionDenied,
        "a token bound to no pod",
    );

    let metrics = controller.metrics().await;
    for expected in [
        "lattice_xds_token_reviews_total{result=\"authenticated\"} 3",
        "lattice_xds_token_reviews_total{result=\"refused\"} 1",
        "lattice_xds_token_review_cache_hits_total 2",
        "lattice_xds_stream_errors_total{reason=\"unauthenticated\"} 5",
        "lattice_xds_stream_errors_total{reason=\"node_mismatch\"} 2",
        "lattice_xds_stream_errors_total{reason=\"not_a_pod\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} not in\n{metrics}");
    }

    // Stock Envoy, first with a token that lives 15 seconds. The renewed token is in the file
    // before the first expires; the controller ends the stream at expiry and Envoy's next one
    // carries the file's new token.
    let dir = cluster.dir();
    let token_dir = dir.join("tokens");
    let lifetime = Duration::from_secs(15);
    let token_file = write_token(
        &token_dir,
        &tokens.signed("client-a", Duration::ZERO, lifetime),
    );
    let started = std::time::Instant::now();
    let bootstrap_args = [
        format!("--xds-ca-file={}", ca_file.display()),
        format!("--xds-token-file={}", token_file.display()),
    ];
    let envoy = Envoy::start_with(
        dir,
        "client-a.apps",
        controller.xds_port,
        "delta",
        &[],
        &bootstrap_args,
    )
    .await;
    let identity = eventually("Envoy to be served as pod client-a", WAIT, || async {
        let proxies = controller.proxies().await;
        proxies["proxies"]
            .as_array()?
            .iter()
            .find(|proxy| proxy["node_id"] == "client-a.apps")
            .map(|proxy| proxy["identity"].clone())
    })
    .await;
    assert_eq!(identity, "pod apps/client-a (service account client)");
    let status = Command::new(support::lattice_xds())
        .args(["proxy-status", "--admin", &controller.admin_url("")])
        .output()
        .expect("proxy-status");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("IDENTITY"), "{table}");
    assert!(
        table.contains("pod apps/client-a (service account client)"),
        "{table}"
    );

    write_token(&token_dir, &tokens.issued(AUDIENCE, Some("client-a")));
    eventually(
        "the first token's stream to end at its expiry",
        WAIT,
        || async {
            let metrics = controller.metrics().await;
            metrics
                .contains("lattice_xds_stream_errors_total{reason=\"token_expired\"} 1")
                .then_some(())
        },
    )
    .await;
    assert!(started.elapsed() >= lifetime - Duration::from_secs(1));
    // A change made now reaches Envoy over the stream its renewed token opened.
    cluster.apply_in(
        "apps",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: after-rotation\n  namespace: apps\n\
         spec:\n  hostnames: [\"after-rotation.example.com\"]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n",
    );
    eventually(
        "Envoy to get the route made after the rotation",
        WAIT,
        || async {
            let dump = envoy.config_dump().await.to_string();
            dump.contains("after-rotation.example.com").then_some(())
        },
    )
    .await;
    let metrics = controller.metrics().await;
    assert!(
        !metrics.contains("lattice_xds_stream_errors_total{reason=\"unauthenticated\"} 6"),
        "Envoy reconnected with its expired token:\n{metrics}"
    );
}

/// The injected container `name` of `pod`.
fn injected<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["initContainers"]
        .as_array()
        .and_then(|containers| containers.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {pod}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_pod_follows_the_controller_as_itself() {
    let cluster = KubeCluster::start();
    cluster.kubectl(&["create", "namespace", "apps"]);
    cluster.kubectl(&["label", "namespace", "apps", "lattice-xds/inject=enabled"]);
    cluster.kubectl(&["create", "namespace", "lattice-gateway"]);
    cluster.kubectl(&["create", "serviceaccount", "default", "-n", "apps"]);
    cluster.apply(GATEWAY);
    cluster.apply(CLUSTER1);
    let (xds_port, admin_port, webhook_port) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    cluster.apply(&support::helm::webhook_configuration(&[&format!(
        "--set=injection.url=https://127.0.0.1:{webhook_port}"
    )]));
    let args = vec![
        "--kubernetes".to_string(),
        format!("--kubeconfig={}", cluster.kubeconfig.display()),
        "--signing=ext-proc".to_string(),
        "--region=ap-northeast-2".to_string(),
        "--xds-auth=kubernetes".to_string(),
        // No VPC Lattice controller runs here to accept routes.
        "--accepted-routes-only=false".to_string(),
        "--xds-tls-host=127.0.0.1".to_string(),
        format!("--webhook-listen=127.0.0.1:{webhook_port}"),
        "--webhook-host=127.0.0.1".to_string(),
        "--webhook-configuration=lattice-xds".to_string(),
        format!("--inject-xds-address=127.0.0.1:{xds_port}"),
    ];
    let controller = Controller::start_on(
        cluster.dir(),
        xds_port,
        admin_port,
        "controller",
        &args,
        &[],
    )
    .await;
    cluster.wait_for_ca_bundle().await;

    // The namespace opted in: the pod is injected with the CA and a projected token.
    cluster.kubectl_in(
        "apps",
        &pod("client").replace("  serviceAccountName: client\n", ""),
    );
    let stored: Value = serde_json::from_str(
        &cluster.kubectl(&["get", "pod", "client", "-n", "apps", "-o", "json"]),
    )
    .unwrap();
    let bootstrap = injected(&stored, "lattice-xds-bootstrap");
    let ca = bootstrap["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|env| env["name"] == "LATTICE_XDS_XDS_CA")
        .and_then(|env| env["value"].as_str())
        .expect("the bootstrap container gets the controller's CA")
        .to_string();
    assert_eq!(ca, String::from_utf8(cluster.controller_ca()).unwrap());
    let volumes = stored["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("\"audience\":\"lattice-xds\""),
        "{volumes}"
    );

    // What the kubelet would do: the projected token bound to the pod, and the bootstrap
    // container run with the pod's values; then stock Envoy on its output.
    let dir = cluster.dir().join("pod");
    let token_dir = dir.join("tokens");
    let token = cluster.kubectl(&[
        "create",
        "token",
        "default",
        "-n",
        "apps",
        "--audience=lattice-xds",
        "--bound-object-kind=Pod",
        "--bound-object-name=client",
        &format!(
            "--bound-object-uid={}",
            stored["metadata"]["uid"].as_str().unwrap()
        ),
    ]);
    let token_file = write_token(&token_dir, token.trim());
    let output = dir.join("envoy.yaml");
    let envoy_admin = support::free_port();
    let args: Vec<String> = bootstrap["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| {
            arg.as_str()
                .unwrap()
                .replace("$(POD_NAME)", "client")
                .replace("$(POD_NAMESPACE)", "apps")
                .replace(
                    "/var/run/secrets/lattice-xds/xds-token",
                    token_file.to_str().unwrap(),
                )
                .replace("/etc/lattice-xds/envoy.yaml", output.to_str().unwrap())
        })
        .chain([format!("--admin-port={envoy_admin}")])
        .collect();
    let rendered = Command::new(support::lattice_xds())
        .args(&args)
        .env("LATTICE_XDS_XDS_CA", &ca)
        .output()
        .expect("lattice-xds bootstrap");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut envoy = Command::new(support::envoy::binary());
    envoy
        .arg("-c")
        .arg(&output)
        .args(["--disable-hot-restart", "--concurrency", "1"]);
    let _envoy = support::process::Running::spawn(&mut envoy, &dir.join("envoy.log"));
    let identity = eventually(
        "the injected Envoy to be served as its pod",
        WAIT,
        || async {
            let proxies = controller.proxies().await;
            support::process::synced(&proxies, "client.apps", &["CDS", "LDS", "RDS"])
                .then(|| {
                    proxies["proxies"]
                        .as_array()?
                        .iter()
                        .find(|proxy| proxy["node_id"] == "client.apps")
                        .map(|proxy| proxy["identity"].clone())
                })
                .flatten()
        },
    )
    .await;
    assert_eq!(identity, "pod apps/client (service account default)");
}

async fn next_response(responses: &mut tonic::Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("an answer")
        .expect("a response")
        .expect("the stream is open")
}

/// A cluster with pod apps/client-a (ServiceAccount `client`) and the walkthrough's gateway and
/// eks-cluster1 route.
fn cluster_with_client_a() -> KubeCluster {
    let cluster = KubeCluster::start();
    cluster.kubectl(&["create", "namespace", "apps"]);
    cluster.kubectl(&["create", "namespace", "lattice-gateway"]);
    cluster.kubectl(&["create", "serviceaccount", "client", "-n", "apps"]);
    cluster.kubectl_in("apps", &pod("client-a"));
    cluster.apply(GATEWAY);
    cluster.apply(CLUSTER1);
    cluster
}

/// Events on pod `name` in `apps`, as (reason, note).
fn pod_events(cluster: &KubeCluster, name: &str) -> Vec<(String, String)> {
    let text = cluster.kubectl(&["get", "events.events.k8s.io", "-n", "apps", "-o", "json"]);
    let list: Value = serde_json::from_str(&text).unwrap();
    (list["items"].as_array().unwrap().iter())
        .filter(|event| event["regarding"]["kind"] == "Pod" && event["regarding"]["name"] == name)
        .map(|event| {
            let field = |key: &str| event[key].as_str().unwrap_or_default().to_string();
            (field("reason"), field("note"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_rejected_configuration_and_its_recovery_are_events_on_it() {
    let cluster = cluster_with_client_a();
    let tokens = Tokens { cluster: &cluster };
    // A pinned destination gets a cluster of its own: adding it makes a new CDS version.
    let pin = ["--resolve=after-rejection.example.com=127.0.0.1:9".to_string()];
    let args = authenticating(&cluster, &pin);
    let controller = Controller::start(cluster.dir(), &args).await;
    let ca = String::from_utf8(cluster.controller_ca()).unwrap();
    let mut client = tls_client(controller.xds_port, &ca).await;

    // Pod apps/client-a, with its own token, rejects the clusters it is sent.
    let node = "client-a.apps";
    let request = |nonce: &str, version: &str, error: Option<&str>| DiscoveryRequest {
        type_url: type_url::CLUSTER.to_string(),
        node: Some(Node {
            id: node.to_string(),
            ..Default::default()
        }),
        response_nonce: nonce.to_string(),
        version_info: version.to_string(),
        error_detail: error.map(|message| RpcStatus {
            code: 3,
            message: message.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (sender, requests) = tokio::sync::mpsc::channel(4);
    sender.send(request("", "", None)).await.unwrap();
    let mut call = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(requests));
    let token = tokens.issued(AUDIENCE, Some("client-a"));
    call.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut responses = client
        .stream_aggregated_resources(call)
        .await
        .expect("served as pod client-a")
        .into_inner();
    let rejected = next_response(&mut responses).await;
    let error = "cluster lattice-egress: no healthy upstream";
    sender
        .send(request(&rejected.nonce, "", Some(error)))
        .await
        .unwrap();
    let events = eventually("an Event on the pod for the rejection", WAIT, || async {
        let events = pod_events(&cluster, "client-a");
        (!events.is_empty()).then_some(events)
    })
    .await;
    let (reason, note) = &events[0];
    assert_eq!(reason, "ConfigRejected");
    assert!(
        note.contains(&format!("CDS version {}", rejected.version_info)) && note.contains(error),
        "{note}"
    );

    // A change makes a new version; the pod accepts it: a second Event says so.
    cluster.apply_in(
        "apps",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: after-rejection\n\
         spec:\n  hostnames: [after-rejection.example.com]\n  parentRefs:\n  - name: lattice-gateway\n\
         \x20   namespace: lattice-gateway\n    sectionName: https-listener-with-custom-domain\n",
    );
    let accepted = next_response(&mut responses).await;
    sender
        .send(request(&accepted.nonce, &accepted.version_info, None))
        .await
        .unwrap();
    let events = eventually("an Event on the pod for the recovery", WAIT, || async {
        let events = pod_events(&cluster, "client-a");
        (events.len() == 2).then_some(events)
    })
    .await;
    let recovery = (events.iter())
        .find(|(reason, _)| reason == "ConfigAccepted")
        .unwrap_or_else(|| panic!("no ConfigAccepted among {events:?}"));
    assert_eq!(
        recovery.1,
        format!(
            "Envoy accepted CDS version {} after rejecting version {}",
            accepted.version_info, rejected.version_info
        )
    );
}

/// `token` with one claim changed and its signature kept: a forgery that only the signature
/// gives away.
fn forged(token: &str, n: usize) -> String {
    let mut parts = token.split('.');
    let (header, _, signature) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
    let mut claims = decode_part(token, 1);
    claims["jti"] = json!(format!("forged-{n}"));
    format!(
        "{header}.{}.{signature}",
        base64url(claims.to_string().as_bytes())
    )
}

/// How long a fresh token of pod client-a takes to be served its first answer.
async fn timed_connect(port: u16, ca: &str, token: &str) -> Duration {
    let mut client = tls_client(port, ca).await;
    let started = std::time::Instant::now();
    first_answer(&mut client, Some(token), "client-a.apps")
        .await
        .expect("the pod's own token is served");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_cost_no_token_review_and_do_not_delay_a_sidecar() {
    let cluster = cluster_with_client_a();
    let tokens = Tokens { cluster: &cluster };
    let flood_streams = ["--xds-max-streams-per-connection=512".to_string()];
    let controller =
        Controller::start(cluster.dir(), &authenticating(&cluster, &flood_streams)).await;
    let ca = String::from_utf8(cluster.controller_ca()).unwrap();
    let port = controller.xds_port;

    // Without a flood (after a first stream, which reads the issuer's keys), twice.
    let real: Vec<String> = (0..4)
        .map(|_| tokens.issued(AUDIENCE, Some("client-a")))
        .collect();
    timed_connect(port, &ca, &real[0]).await;
    let quiet = timed_connect(port, &ca, &real[1])
        .await
        .max(timed_connect(port, &ca, &real[2]).await);

    // 255 forged tokens, each a genuine token with one claim changed, all at once, while the
    // pod connects with its own.
    let mut flood = tokio::task::JoinSet::new();
    let client = tls_client(port, &ca).await;
    for n in 0..255 {
        let (mut client, token) = (client.clone(), forged(&real[0], n));
        flood.spawn(async move { first_answer(&mut client, Some(&token), "client-a.apps").await });
    }
    let during = timed_connect(port, &ca, &real[3]).await;
    while let Some(outcome) = flood.join_next().await {
        expect_refused(outcome.unwrap(), Code::Unauthenticated, "a forged token");
    }

    // Not one TokenReview was spent on a forgery: four for the four real tokens.
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains("lattice_xds_token_reviews_total{result=\"authenticated\"} 4")
            && !metrics.contains("lattice_xds_token_reviews_total{result=\"refused\"}"),
        "{metrics}"
    );
    assert!(
        during <= quiet.mul_f32(1.5) + Duration::from_millis(200),
        "the pod waited {during:?} during the flood, {quiet:?} without it"
    );
}
