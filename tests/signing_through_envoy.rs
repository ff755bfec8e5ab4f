//! Signing end to end, through stock Envoy configured by the controller, for each of the
//! `ext-proc`, `lua` and `native` modes: a request through the egress listener reaches an HTTPS
//! upstream that recomputes the SigV4 signature with botocore and answers 200; a request signed
//! with the wrong secret is rejected there with 403; an application's own `authorization`
//! header does not survive; and with the signer stopped, Envoy answers with an error instead of
//! sending the request unsigned. Killed (SIGKILL) under load from four clients, the signer
//! leaves every answer signed or 503, nothing reaches the upstream unsigned, and signing resumes
//! once it is back. The ext_proc and Lua modes also run with the signer on Unix sockets that
//! serve Envoy's uid only.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::envoy::Envoy;
use support::process::Controller;
use support::signing::{Issued, PodIdentityAgent, Signer, VerifyingUpstream, no_aws_sources};
use support::{eventually, free_port, http};

const HOST: &str = "demo-cluster2.example.com";
const REGION: &str = "eu-west-1";
const ACCESS_KEY: &str = "ASIAPODCREDENTIALS";
const SECRET: &str = "pod/secret+KEY/of-demo-cluster1";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEPodIdentity//token==";
const WAIT: Duration = Duration::from_secs(20);
/// What a sidecar holds once it has its configuration.
const SYNCED: [&str; 4] = ["CDS", "LDS", "RDS", "SDS"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_proc_signs_requests_through_envoy() {
    signs_through_envoy("ext-proc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_signs_requests_through_envoy() {
    signs_through_envoy("lua").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_filter_signs_requests_through_envoy() {
    signs_through_envoy("native").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_module_signs_requests_inside_envoy() {
    signs_through_envoy("module").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_proc_signs_over_a_unix_socket() {
    signs_through(Signing::new("ext-proc", true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_signs_over_a_unix_socket() {
    signs_through(Signing::new("lua", true)).await;
}

/// A signing mode, and whether the signer listens on Unix sockets.
struct Signing {
    mode: &'static str,
    sockets: bool,
}

impl Signing {
    fn new(mode: &'static str, sockets: bool) -> Self {
        Self { mode, sockets }
    }
}

/// The signer and Envoy of one pod, holding the given secret key.
struct Pod {
    signer: Option<Signer>,
    _envoy: Envoy,
}

struct Setup<'a> {
    dir: &'a Path,
    mode: &'a str,
    controller: &'a Controller,
    signer_grpc: SocketAddr,
    signer_http: SocketAddr,
    /// The signer's arguments for its Unix sockets, when it uses them.
    socket_args: Vec<String>,
}

impl Setup<'_> {
    /// The pod's AWS credentials, with `secret` as the secret key.
    fn credentials(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN.to_string()),
            ("AWS_REGION", REGION.to_string()),
        ]
        .into_iter()
        .chain(no_aws_sources(self.dir))
        .collect()
    }

    /// The pod's signer, where Envoy expects it, ready with credentials.
    async fn start_signer(&self, secret: &str) -> Signer {
        let args: Vec<&str> = self.socket_args.iter().map(String::as_str).collect();
        let signer = Signer::start_on(
            self.dir,
            "signer",
            self.signer_grpc,
            self.signer_http,
            &args,
            &self.credentials(secret),
        )
        .await;
        eventually("the signer to load credentials", WAIT, || async {
            http::get_url(&signer.url("/readyz"))
                .await
                .filter(|r| r.status == 200)
        })
        .await;
        signer
    }

    async fn start_pod(&self, secret: &str) -> Pod {
        let (signer, envoy_env) = if self.mode == "native" {
            (None, self.credentials(secret))
        } else if self.mode == "module" {
            let mut env = self.credentials(secret);
            env.extend(support::envoy::signer_module_env());
            (None, env)
        } else {
            (Some(self.start_signer(secret).await), Vec::new())
        };
        let envoy = Envoy::start_with_env(
            self.dir,
            "demo-pod",
            self.controller.xds_port,
            "delta",
            &envoy_env,
        )
        .await;
        self.controller.wait_synced("demo-pod", &SYNCED).await;
        Pod {
            signer,
            _envoy: envoy,
        }
    }
}

async fn signs_through_envoy(mode: &'static str) {
    signs_through(Signing::new(mode, false)).await;
}

async fn signs_through(signing: Signing) {
    let mode = signing.mode;
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::gateway_manifests(dir.path(), Some(HOST));

    let keys = HashMap::from([(ACCESS_KEY, SECRET)]);
    let mut upstream = VerifyingUpstream::start(dir.path(), &[HOST], &keys, REGION).await;
    let signer_grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let signer_http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let egress_port = free_port();
    let args = vec![
        format!("--manifests={}", manifests.display()),
        format!("--signing={mode}"),
        format!("--region={REGION}"),
        format!("--signer-grpc-address={signer_grpc}"),
        format!("--signer-http-address={signer_http}"),
        format!("--ca-file={}", upstream.ca_file.display()),
        format!("--resolve={HOST}={}", upstream.address),
        "--egress-address=127.0.0.1".to_string(),
        format!("--egress-port={egress_port}"),
    ];
    let mut args = args;
    let mut socket_args = Vec::new();
    if signing.sockets {
        let sockets = dir.path().join("signer");
        std::fs::create_dir(&sockets).unwrap();
        let grpc = sockets.join("ext-proc.sock").display().to_string();
        let http = sockets.join("sign.sock").display().to_string();
        args.push(format!("--signer-grpc-socket={grpc}"));
        args.push(format!("--signer-http-socket={http}"));
        // Envoy runs as this test's uid; health stays on the HTTP port (--admin-listen).
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&sockets).unwrap());
        socket_args = vec![
            format!("--grpc-socket={grpc}"),
            format!("--http-socket={http}"),
            format!("--socket-peer-uid={uid}"),
            format!("--admin-listen={signer_http}"),
        ];
    }
    let controller = Controller::start(dir.path(), &args).await;
    let setup = Setup {
        dir: dir.path(),
        mode,
        controller: &controller,
        signer_grpc,
        signer_http,
        socket_args,
    };
    let egress: SocketAddr = format!("127.0.0.1:{egress_port}").parse().unwrap();
    let call = |path: &'static str| async move {
        let headers = [
            ("Authorization", "Bearer the-apps-own-token"),
            ("User-Agent", "curl/8.5.0"),
            ("Accept", "*/*"),
            ("X-Tenant", "  apps   team "),
        ];
        http::request(egress, "GET", HOST, path, &headers, "")
            .await
            .expect("egress answers")
    };

    // Signed with the right key: the verifier recomputes the signature and accepts it.
    let pod = setup.start_pod(SECRET).await;
    let answer = call("/orders/7?b=2&a=1&a=0").await;
    assert_eq!(answer.status, 200, "[{mode}] {}", answer.body);
    let seen: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(seen["verified"], true);
    assert_eq!(seen["access_key"], ACCESS_KEY);
    assert_eq!(
        seen["path"], "/orders/7?b=2&a=1&a=0",
        "the path and query arrive unchanged"
    );
    assert_eq!(seen["authorization_count"], 1);
    let headers: Vec<(String, String)> = serde_json::from_value(seen["headers"].clone()).unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-amz-content-sha256"), Some("UNSIGNED-PAYLOAD"));
    assert_eq!(header("x-amz-security-token"), Some(SESSION_TOKEN));
    assert!(
        !header("authorization")
            .unwrap()
            .contains("the-apps-own-token"),
        "[{mode}] the application's own authorization header survived"
    );
    eprintln!("[{mode}] upstream saw: {headers:?}");

    // Requests the signer's own tests never use, each verified by botocore at the upstream.
    for (method, target, body) in HELD_OUT {
        let headers = [
            ("X-Tenant", "a  b"),
            ("X-Repeated", "one"),
            ("x-repeated", "two"),
        ];
        let answer = http::request(egress, method, HOST, target, &headers, body)
            .await
            .expect("egress answers");
        assert_eq!(
            answer.status, 200,
            "[{mode}] {method} {target}: {}",
            answer.body
        );
        let seen: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(seen["verified"], true, "[{mode}] {method} {target}");
    }
    if mode == "module" {
        // The module counts what it signs in Envoy's own stats.
        assert_eq!(
            pod._envoy
                .counter("lattice_xds_signer.requests_signed")
                .await,
            1 + HELD_OUT.len() as u64
        );
    }
    drop(pod);

    // Signed with the wrong secret: the verifier refuses, as VPC Lattice would.
    let pod = setup.start_pod("not/the+right/secret").await;
    let answer = call("/orders/7").await;
    assert_eq!(answer.status, 403, "[{mode}] {}", answer.body);
    assert!(
        answer.body.starts_with("InvalidSignatureException"),
        "[{mode}] {}",
        answer.body
    );
    let line = (pod
        ._envoy
        .access_log_line("a 403", |line| line["response_code"] == 403))
    .await;
    assert_eq!(line["response_code_details"], "via_upstream", "{line}");

    // The signer stops: Envoy answers with an error of its own, and nothing reaches the upstream.
    if let Some(mut signer) = pod.signer {
        signer.process.terminate();
        signer.process.wait();
        let before = upstream_requests(&upstream);
        let answer = call("/orders/7").await;
        assert_eq!(
            answer.status, 503,
            "[{mode}] expected an error, got {answer:?}"
        );
        assert!(
            !answer.body.contains("Exception"),
            "[{mode}] {}",
            answer.body
        );
        // The answer and the access log say why, unlike a refusal of the signer's own.
        let said = "lattice-xds: the signer is unreachable, so the request was not sent";
        assert!(answer.body.starts_with(said), "[{mode}] {}", answer.body);
        let line = (pod
            ._envoy
            .access_log_line("a 503", |line| line["response_code"] == 503))
        .await;
        let details = line["response_code_details"].as_str().unwrap_or_default();
        if mode == "ext-proc" {
            assert!(details.starts_with("ext_proc_error_gRPC_error_"), "{line}");
        }
        assert!(!details.is_empty() && details != "via_upstream", "{line}");
        assert_eq!(
            upstream_requests(&upstream),
            before,
            "[{mode}] a request reached the upstream while the signer was down"
        );
        eprintln!(
            "[{mode}] with the signer stopped: {} {:?}",
            answer.status, answer.body
        );
    }
    drop(pod._envoy);

    // The signer is killed under load and comes back: every request is signed or answered 503,
    // none reaches the upstream unsigned, and signing resumes.
    let pod = setup.start_pod(SECRET).await;
    if let Some(mut signer) = pod.signer {
        // Only what the upstream logs from now on (the wrong-key request above was refused).
        let logged_before = upstream.process.log_text().lines().count();
        let load = Load::start(egress);
        load.wait_for(200, 10).await;
        signer.process.kill();
        load.wait_for(503, 1).await;
        let _signer = setup.start_signer(SECRET).await;
        let signed = load.count(200);
        load.wait_for(200, signed + 10).await;
        let statuses = load.stop().await;
        signed_or_refused(&format!("[{mode}]"), &statuses, &upstream, logged_before);
        eprintln!(
            "[{mode}] signer killed under load: {} answers, {} signed, {} refused with 503",
            statuses.len(),
            statuses.iter().filter(|s| **s == 200).count(),
            statuses.iter().filter(|s| **s == 503).count()
        );
    }
    upstream.process.terminate();
    upstream.process.wait();
}

/// Requests with what signing gets wrong most often: reserved, encoded and UTF-8 path
/// characters, repeated slashes, literal percent sequences, repeated, empty and encoded query
/// keys and values, other methods with bodies. Each mode must get botocore's signature.
const HELD_OUT: [(&str, &str, &str); 16] = [
    ("GET", "/a/b%20c/d", ""),
    ("GET", "/%E4%BD%A0%E5%A5%BD/%F0%9F%98%80", ""),
    ("GET", "/unreserved/~tilde-_dash.dot", ""),
    ("GET", "/reserved/%21%27%28%29%2A%3A%40", ""),
    ("GET", "/literal/%2541/percent", ""),
    ("GET", "/sub-delims/!$&'()*+,;=:@", ""),
    ("GET", "/double//slash/", ""),
    ("GET", "/q?a=1&a=0&b=", ""),
    ("GET", "/q?key%20with%20space=v%2Fslash&plus=a%2Bb", ""),
    ("GET", "/q?empty&=v&x=%3Dy", ""),
    ("GET", "/q?%E2%82%AC=euro&z=%7E&A=upper&a=lower&_=under", ""),
    ("GET", "/q?sort=b&sort=a&sort=B&sort=", ""),
    ("GET", "/q?x=%3D%26%3F&y=%25", ""),
    ("POST", "/orders?dry-run=true", "{\"item\": 7}"),
    ("PUT", "/orders/7", "quantity=2"),
    ("DELETE", "/orders/7?reason=%22duplicate%22", ""),
];

/// The module mode under load, with credentials from a Pod Identity agent that is killed: once
/// the last credentials expire every answer is a 503 that says why, nothing reaches the
/// upstream unsigned, and signing resumes when the agent is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signer_module_refuses_once_its_credential_source_is_killed_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::gateway_manifests(dir.path(), Some(HOST));
    let keys = HashMap::from([(ACCESS_KEY, SECRET)]);
    let mut upstream = VerifyingUpstream::start(dir.path(), &[HOST], &keys, REGION).await;
    let egress_port = free_port();
    let controller = Controller::start(
        dir.path(),
        &[
            format!("--manifests={}", manifests.display()),
            "--signing=module".to_string(),
            format!("--region={REGION}"),
            format!("--ca-file={}", upstream.ca_file.display()),
            format!("--resolve={HOST}={}", upstream.address),
            "--egress-address=127.0.0.1".to_string(),
            format!("--egress-port={egress_port}"),
        ],
    )
    .await;

    // Short-lived credentials, so that the outage outlasts them.
    let issued = || Issued {
        access_key_id: ACCESS_KEY.to_string(),
        secret_access_key: SECRET.to_string(),
        token: SESSION_TOKEN.to_string(),
        expiration: std::time::SystemTime::now() + Duration::from_secs(4),
    };
    let agent = PodIdentityAgent::start("pod-token", issued()).await;
    let token_file = dir.path().join("pod-identity-token");
    std::fs::write(&token_file, "pod-token").unwrap();
    let mut env = agent.pod_env(&token_file);
    env.push(("AWS_REGION", REGION.to_string()));
    env.extend(no_aws_sources(dir.path()));
    env.extend(support::envoy::signer_module_env());
    let envoy =
        Envoy::start_with_env(dir.path(), "demo-pod", controller.xds_port, "delta", &env).await;
    controller.wait_synced("demo-pod", &SYNCED).await;

    let egress: SocketAddr = format!("127.0.0.1:{egress_port}").parse().unwrap();
    let load = Load::start(egress);
    load.wait_for(200, 10).await;
    let address = agent.stop().await;
    load.wait_for(503, 1).await;
    let agent = PodIdentityAgent::restart_at(address, "pod-token", issued()).await;
    let signed = load.count(200);
    load.wait_for(200, signed + 10).await;
    let statuses = load.stop().await;
    drop(agent);

    let reached = signed_or_refused("", &statuses, &upstream, 0);
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(
        reached.len(),
        statuses.len() - refused,
        "every answer but the refusals came from the upstream"
    );
    // Envoy's stats count each signature and each refusal, with its reason.
    assert_eq!(
        envoy.counter("lattice_xds_signer.requests_signed").await,
        (statuses.len() - refused) as u64
    );
    assert_eq!(
        envoy
            .counter("lattice_xds_signer.requests_refused.reason.credentials_expired")
            .await,
        refused as u64
    );
    let line = envoy
        .access_log_line("a refusal", |line| line["response_code"] == 503)
        .await;
    assert_eq!(
        line["response_code_details"], "lattice_xds_signer_credentials_expired",
        "{line}"
    );
    eprintln!(
        "credential source killed under load: {} answers, {} signed, {refused} refused with 503",
        statuses.len(),
        statuses.len() - refused,
    );
    upstream.process.terminate();
    upstream.process.wait();
}

/// Requests through the egress listener from four concurrent clients, until stopped.
struct Load {
    statuses: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(egress: SocketAddr) -> Load {
        let statuses = std::sync::Arc::<std::sync::Mutex<Vec<u16>>>::default();
        let stop = std::sync::Arc::<std::sync::atomic::AtomicBool>::default();
        let clients = (0..4)
            .map(|_| {
                let (statuses, stop) = (statuses.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let answer = http::request(egress, "GET", HOST, "/orders/7", &[], "").await;
                        // A connection Envoy could not serve counts as an error answer.
                        let status = answer.map_or(0, |answer| answer.status);
                        statuses.lock().unwrap().push(status);
                    }
                })
            })
            .collect();
        Load {
            statuses,
            stop,
            clients,
        }
    }

    fn count(&self, status: u16) -> usize {
        self.statuses
            .lock()
            .unwrap()
            .iter()
            .filter(|s| **s == status)
            .count()
    }

    /// Waits until `count` answers had `status`.
    async fn wait_for(&self, status: u16, count: usize) {
        let what = format!("{count} answers of {status} under load");
        eventually(&what, WAIT, || async {
            (self.count(status) >= count).then_some(())
        })
        .await;
    }

    /// Stops the clients; every status they saw.
    async fn stop(self) -> Vec<u16> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for client in self.clients {
            client.await.unwrap();
        }
        std::mem::take(&mut *self.statuses.lock().unwrap())
    }
}

/// Checks the answers of a load through a failure: each is signed (200) or refused (503), and
/// every request that reached the upstream from line `skip` of its log on carried a valid
/// signature. Returns those log lines.
fn signed_or_refused(
    what: &str,
    statuses: &[u16],
    upstream: &VerifyingUpstream,
    skip: usize,
) -> Vec<String> {
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 503),
        "{what} answers under load: {statuses:?}"
    );
    let reached: Vec<String> = upstream
        .process
        .log_text()
        .lines()
        .skip(skip)
        .filter(|line| line.starts_with("sigv4_upstream: "))
        .map(str::to_string)
        .collect();
    let unsigned: Vec<&String> = reached
        .iter()
        .filter(|line| !line.contains("\" 200 "))
        .collect();
    assert!(
        unsigned.is_empty(),
        "{what} requests reached the upstream without a valid signature: {unsigned:?}"
    );
    reached
}

/// How many requests the verifier has logged.
fn upstream_requests(upstream: &VerifyingUpstream) -> usize {
    upstream
        .process
        .log_text()
        .lines()
        .filter(|line| line.starts_with("sigv4_upstream: ") && line.contains("\"GET "))
        .count()
}
