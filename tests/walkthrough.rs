//! The walkthrough end to end on one machine, as `make demo` runs it: ACM PCA in moto issues
//! the private CA and the `*.example.com` certificate; the Lattice emulator serves both
//! clusters' services on 127.0.0.1:443, answers DNS for them and plays the Pod Identity agent;
//! each emulated cluster has its controller (its own manifests only), Envoy and signer. From
//! eks-cluster1's pod, demo-cluster2 answers (reached through the DNS fallback) and
//! demo-cluster1 refuses with Lattice's AccessDeniedException naming the pod's role session;
//! the pod's access log names the route and the error. A gRPC health check of eks-cluster1's
//! GRPCRoute answers SERVING through stock Envoy in the ext-proc, lua and native modes (h2c to
//! the sidecar, HTTP/2 over TLS to the emulator, h2c to a real gRPC server); a caller of another
//! namespace is refused by the GRPCRoute's auth policy, and the unsigned (`none`) call by the
//! service network's.
//! Needs root to listen on port 443, as Lattice's services do.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use lattice_xds::grpc_health::{self, CheckError, ServingStatus};
use support::envoy::Envoy;
use support::pca::{Moto, controller_env, create_root_ca, issue_leaf};
use support::process::{Controller, Running};
use support::signing::{Signer, isolate_aws};
use support::{eventually, free_port, http, lattice_xds};

const REGION: &str = "ap-northeast-2";
const ACCOUNT: &str = "890742582773";
const WAIT: Duration = Duration::from_secs(30);

/// The callers EKS Pod Identity would give each cluster's demo pod, and a pod of eks-cluster1's
/// `batch` namespace.
fn identities() -> String {
    [
        ("eks-cluster1", "apps", "1111"),
        ("eks-cluster2", "apps", "2222"),
        ("eks-cluster1", "batch", "3333"),
    ]
    .iter()
    .map(|(cluster, namespace, id)| {
        format!(
            "- name: {cluster}/{namespace}/demo\n  accessKeyId: ASIAWALKTHROUGH{id}\n  secretAccessKey: secret-{id}\n  \
             sessionToken: token-{id}\n  arn: arn:aws:sts::{ACCOUNT}:assumed-role/vpc-lattice-sigv4-client/eks-{cluster}-demo-{id}\n  \
             agentToken: projected-sa-token-{id}\n  \
             tags: {{eks-cluster-name: {cluster}, kubernetes-namespace: {namespace}, kubernetes-service-account: default}}\n"
        )
    })
    .collect()
}

/// The greeter's gRPC backend: the standard health service, reporting `greeter` as serving.
async fn greeter_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let services = ["greeter".to_string()];
        grpc_health::serve_on(listener, &services, Default::default()).await
    });
    port
}

fn pem_key(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// A demo app answering as the walkthrough's http-server does.
async fn demo_app(name: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = format!("Requesting to Pod({name}): Hello from {name}\n");
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { body }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// One emulated cluster's pod: its signer (credentials from the emulator's Pod Identity
/// agent), its controller on the cluster's own manifests, and its Envoy.
struct Pod {
    _signer: Signer,
    _controller: Controller,
    _envoy: Envoy,
    egress: SocketAddr,
}

/// What every pod's sidecars reach: the emulator's agent and DNS, and ACM PCA.
struct Cloud<'a> {
    dir: &'a Path,
    agent: SocketAddr,
    dns: SocketAddr,
    moto: &'a Moto,
    ca_arn: &'a str,
}

async fn pod(cloud: &Cloud<'_>, cluster: &str, id: &str, signing: &str) -> Pod {
    let Cloud {
        dir,
        agent,
        dns,
        moto,
        ca_arn,
    } = *cloud;
    let token_file = dir.join(format!("{cluster}-{signing}-{id}-token"));
    std::fs::write(&token_file, format!("projected-sa-token-{id}")).unwrap();
    // The Pod Identity agent's credentials, for the signer, or for Envoy's own filter.
    let credentials = [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{agent}/v1/credentials"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_REGION", REGION.to_string()),
    ];
    let signer = Signer::start(
        dir,
        &format!("signer-{cluster}-{signing}-{id}"),
        &[],
        &credentials,
    )
    .await;
    let egress_port = free_port();
    let mut args = vec![
        format!(
            "--manifests=examples/{}",
            cluster.trim_start_matches("eks-")
        ),
        format!("--ca-arn={ca_arn}"),
        format!("--aws-endpoint-url={}", moto.endpoint()),
        format!("--dns-resolver={dns}"),
        format!("--signing={signing}"),
        format!("--region={REGION}"),
        format!("--signer-grpc-address={}", signer.grpc),
        format!("--signer-http-address={}", signer.http),
        "--egress-address=127.0.0.1".to_string(),
        format!("--egress-port={egress_port}"),
    ];
    // eks-cluster2's sidecars leave query strings out of their access logs.
    if cluster == "eks-cluster2" {
        args.push("--access-log-query=false".to_string());
    }
    let env = controller_env(dir);
    let controller = Controller::start_on(
        dir,
        free_port(),
        free_port(),
        &format!("controller-{cluster}-{signing}-{id}"),
        &args,
        &env,
    )
    .await;
    let envoy_env: &[(&str, String)] = if signing == "native" {
        &credentials
    } else {
        &[]
    };
    let envoy = Envoy::start_with_env(
        dir,
        &format!("{cluster}-{signing}-{id}-demo-pod"),
        controller.xds_port,
        "delta",
        envoy_env,
    )
    .await;
    Pod {
        _signer: signer,
        _controller: controller,
        _envoy: envoy,
        egress: format!("127.0.0.1:{egress_port}").parse().unwrap(),
    }
}

/// The first access log line of the pod's Envoy for `authority` answered with `code`.
async fn access_log_line(pod: &Pod, authority: &str, code: u16) -> serde_json::Value {
    let wanted =
        |line: &serde_json::Value| line["authority"] == authority && line["response_code"] == code;
    pod._envoy.access_log_line(authority, wanted).await
}

/// The greeter's answer to a pod's health check (`lattice-xds grpc-health check`: HTTP/2 in
/// clear text to the sidecar, which signs the call and sends it over TLS with ALPN h2), once
/// the sidecar routes the host (before, it answers 404, which gRPC reports as UNIMPLEMENTED).
async fn greeter_answer(pod: &Pod) -> Result<ServingStatus, tonic::Status> {
    let target = pod.egress.to_string();
    eventually("a gRPC answer from greeter", WAIT, || async {
        let answer = grpc_health::check(&target, "greeter.example.com", "greeter").await;
        match answer.map_err(|error| error.downcast::<CheckError>()) {
            Ok(status) => Some(Ok(status)),
            Err(Ok(CheckError { status, .. })) => match status.code() {
                tonic::Code::Unimplemented | tonic::Code::Unavailable => None,
                _ => Some(Err(status)),
            },
            Err(Err(error)) => panic!("no gRPC call: {error:#}"),
        }
    })
    .await
}

/// `curl http://host/` from a pod: through its Envoy's egress listener.
async fn call(pod: &Pod, host: &str) -> http::HttpResponse {
    eventually(&format!("an answer for {host}"), WAIT, || async {
        http::get(pod.egress, host, "/")
            .await
            .filter(|response| response.status != 503 && response.status != 404)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster1_reaches_cluster2_and_is_refused_by_its_own_service() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(dir.path()).await;
    let pca = moto.client().await;
    let ca_arn = create_root_ca(&pca, "demo private CA").await;
    let (chain, key) = issue_leaf(&pca, &ca_arn, &["*.example.com"]).await;
    std::fs::write(dir.path().join("tls.crt"), chain).unwrap();
    std::fs::write(dir.path().join("tls.key"), pem_key(&key)).unwrap();
    std::fs::write(dir.path().join("identities.yaml"), identities()).unwrap();

    let app1 = demo_app("demo-cluster1-v1").await;
    let app2 = demo_app("demo-cluster2-v1").await;
    let greeter = greeter_app().await;
    let dns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = std::process::Command::new(lattice_xds());
    command.args([
        "emulate-lattice",
        "--manifests=examples/cluster1",
        "--manifests=examples/cluster2",
        &format!(
            "--identities={}",
            dir.path().join("identities.yaml").display()
        ),
        &format!("--tls-cert={}", dir.path().join("tls.crt").display()),
        &format!("--tls-key={}", dir.path().join("tls.key").display()),
        "--listen=127.0.0.1:443",
        &format!("--backend=demo-cluster1-v1=http://127.0.0.1:{app1}"),
        &format!("--backend=demo-cluster2-v1=http://127.0.0.1:{app2}"),
        &format!("--backend=greeter-v1=http://127.0.0.1:{greeter}"),
        &format!("--region={REGION}"),
        &format!("--account={ACCOUNT}"),
        &format!("--dns-listen={dns}"),
        &format!("--pod-identity-listen={agent}"),
    ]);
    isolate_aws(&mut command, dir.path());
    let emulator = Running::spawn(&mut command, &dir.path().join("emulator.log"));
    eventually("the Lattice emulator", WAIT, || async {
        let log = emulator.log_text();
        assert!(
            !log.contains("cannot listen on 127.0.0.1:443"),
            "port 443 is taken or needs root:\n{log}"
        );
        log.contains("VPC Lattice emulator ready").then_some(())
    })
    .await;

    let cloud = Cloud {
        dir: dir.path(),
        agent,
        dns,
        moto: &moto,
        ca_arn: &ca_arn,
    };
    let cluster1 = pod(&cloud, "eks-cluster1", "1111", "ext-proc").await;
    let cluster2 = pod(&cloud, "eks-cluster2", "2222", "ext-proc").await;

    // The walkthrough's two calls from eks-cluster1's pod.
    let allowed = call(&cluster1, "demo-cluster2.example.com").await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        allowed.body,
        "Requesting to Pod(demo-cluster2-v1): Hello from demo-cluster2-v1\n"
    );
    let denied = call(&cluster1, "demo-cluster1.example.com").await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(
        denied.body,
        format!(
            "AccessDeniedException: User: arn:aws:sts::{ACCOUNT}:assumed-role/vpc-lattice-sigv4-client/eks-eks-cluster1-demo-1111 \
             is not authorized to perform: vpc-lattice-svcs:Invoke on resource: \
             arn:aws:vpc-lattice:{REGION}:{ACCOUNT}:service/svc-05a011bb3aacd80e4/ because no service-based policy \
             allows the vpc-lattice-svcs:Invoke action"
        )
    );

    // The pod's access log says which route was taken and why Lattice refused.
    let line = access_log_line(&cluster1, "demo-cluster1.example.com", 403).await;
    let route = line["route"].as_str().unwrap_or_default();
    assert!(
        route.starts_with("destination demo-cluster1.example.com:443; route apps/demo-cluster1")
            && route.contains("auth policy apps/demo-cluster1-iam-auth-policy (service)"),
        "{line}"
    );
    assert_eq!(line["lattice_error"], "AccessDeniedException", "{line}");
    assert_eq!(line["signing"], "ext-proc", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["path"], "/", "{line}");
    assert!(
        line["upstream_host"]
            .as_str()
            .is_some_and(|host| host.ends_with(":443")),
        "{line}"
    );
    // cluster1 has no route for demo-cluster2 and no domain is listed: it is a Lattice service
    // all the same, reached through the default forward (its certificate chains to the private
    // CA, trusted with the system roots).
    let line = access_log_line(&cluster1, "demo-cluster2.example.com", 200).await;
    assert_eq!(
        line["route"],
        lattice_xds::translate::DEFAULT_FORWARD,
        "{line}"
    );
    assert!(line["lattice_error"].is_null(), "{line}");

    // And the other way round: eks-cluster2's pod may call demo-cluster1.
    let reverse = call(&cluster2, "demo-cluster1.example.com").await;
    assert_eq!(reverse.status, 200, "{}", reverse.body);
    assert_eq!(
        reverse.body,
        "Requesting to Pod(demo-cluster1-v1): Hello from demo-cluster1-v1\n"
    );
    // Its access log keeps the path of a call, not its query.
    let private = http::get(
        cluster2.egress,
        "demo-cluster1.example.com",
        "/private?token=hunter2",
    )
    .await
    .expect("an answer");
    eventually("the access log line of /private", WAIT, || async {
        let log = cluster2._envoy.process.log_text();
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| line["path"] == "/private" && line["response_code"] == private.status)
    })
    .await;
    let log = cluster2._envoy.process.log_text();
    assert!(!log.contains("hunter2"), "{log}");

    // gRPC to eks-cluster1's GRPCRoute, signed in every mode: its policy admits eks-cluster1's
    // apps namespace.
    let serving = ServingStatus::Serving;
    assert_eq!(
        greeter_answer(&cluster1).await.unwrap(),
        serving,
        "ext-proc"
    );
    for signing in ["lua", "native"] {
        let pod = pod(&cloud, "eks-cluster1", "1111", signing).await;
        let status = greeter_answer(&pod).await;
        assert_eq!(status.unwrap(), serving, "{signing}");
    }
    // A caller of eks-cluster1's batch namespace is refused by the GRPCRoute's policy.
    let batch = pod(&cloud, "eks-cluster1", "3333", "ext-proc").await;
    let refused = greeter_answer(&batch).await.unwrap_err();
    // Lattice answers a plain HTTP 403 (no grpc-status); tonic reports it as such.
    assert!(refused.message().contains("403 Forbidden"), "{refused}");
    let line = access_log_line(&batch, "greeter.example.com", 403).await;
    let route = line["route"].as_str().unwrap_or_default();
    assert!(
        route.contains("route apps/greeter; ")
            && route.contains("auth policy apps/greeter-iam-auth-policy (service)"),
        "{line}"
    );
    assert_eq!(line["lattice_error"], "AccessDeniedException", "{line}");
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["path"], "/grpc.health.v1.Health/Check", "{line}");

    // A sidecar that does not sign: the anonymous caller, refused by the service network's
    // policy before the service's is consulted.
    let unsigned = pod(&cloud, "eks-cluster1", "1111", "none").await;
    let anonymous = call(&unsigned, "demo-cluster2.example.com").await;
    assert_eq!(anonymous.status, 403, "{}", anonymous.body);
    assert_eq!(
        anonymous.body,
        format!(
            "AccessDeniedException: User: anonymous is not authorized to perform: vpc-lattice-svcs:Invoke on resource: \
             arn:aws:vpc-lattice:{REGION}:{ACCOUNT}:service/svc-0c2b8a7f5e1d94a36/ because no network-based policy \
             allows the vpc-lattice-svcs:Invoke action"
        )
    );
    // Its gRPC call goes out unsigned too, and is refused the same way.
    let refused = greeter_answer(&unsigned).await.unwrap_err();
    assert!(refused.message().contains("403 Forbidden"), "{refused}");
    let line = access_log_line(&unsigned, "greeter.example.com", 403).await;
    assert_eq!(line["signing"], "none", "{line}");
    assert_eq!(line["lattice_error"], "AccessDeniedException", "{line}");
}
