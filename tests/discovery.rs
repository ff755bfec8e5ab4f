//! Services discovered from the VPC Lattice API (moto's) reach stock Envoy with no local route:
//! by custom domain and by Lattice-assigned name, through the VPC's service networks and a
//! network named on the command line. A service added to moto appears within a poll and one
//! removed leaves; an outage and throttling keep every destination served, and polls back off.
//! With the Lattice emulator reading the same API as the data plane, the services are called:
//! signed and judged by the auth policies moto holds, by custom domain, by assigned name,
//! through a second network of the VPC, and over gRPC without a local GRPCRoute.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::envoy::Envoy;
use support::lattice_api::{self, Front, Mode};
use support::pca::Moto;
use support::process::Controller;
use support::upstream::TlsUpstream;
use support::{eventually, free_port, http};

const WAIT: Duration = Duration::from_secs(30);

fn https_service(name: &str, domain: Option<&str>, network: &str) -> serde_json::Value {
    json!({"name": name, "custom_domain": domain, "auth": "AWS_IAM",
           "policy": {"Version": "2012-10-17", "Statement": []},
           "listeners": [["HTTPS", 443]], "networks": [network]})
}

/// The named network, with the services given; the shared network, associated with the VPC.
fn networks(vpc: Option<&str>, services: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"vpc": vpc,
           "networks": [{"name": "demo-network", "auth": "AWS_IAM",
                         "policy": {"Version": "2012-10-17", "Statement": []}}],
           "services": services})
}

/// A pod whose controller discovers the VPC's networks every second from `endpoint`, with no
/// route of its own, and its Envoy. Hosts nothing names get the sidecar's own 404 (which the
/// tests read); `ca` is trusted for custom domains and, standing in for the system roots, for
/// assigned names; every host in `hosts` is pinned to `lattice`.
struct Pod {
    controller: Controller,
    envoy: Envoy,
    egress: std::net::SocketAddr,
}

async fn pod(
    dir: &std::path::Path,
    vpc: &str,
    endpoint: &str,
    ca: &std::path::Path,
    (hosts, lattice): (&[&str], std::net::SocketAddr),
    extra: &[String],
) -> Pod {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let egress_port = free_port();
    let mut args = vec![
        format!("--manifests={}", manifests.display()),
        "--unknown-hosts=deny".to_string(),
        format!("--ca-file={}", ca.display()),
        format!("--system-ca-file={}", ca.display()),
        "--egress-address=127.0.0.1".to_string(),
        format!("--egress-port={egress_port}"),
        format!("--vpc-id={vpc}"),
        "--discovery-interval=1s".to_string(),
        format!("--aws-endpoint-url={endpoint}"),
        format!("--region={}", lattice_api::REGION),
    ];
    args.extend(
        hosts
            .iter()
            .map(|host| format!("--resolve={host}={lattice}")),
    );
    args.extend(extra.iter().cloned());
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ];
    let controller = Controller::start_on(
        dir,
        free_port(),
        free_port(),
        "controller",
        &args,
        &credentials,
    )
    .await;
    let envoy = Envoy::start(dir, "apps-pod", controller.xds_port, "delta").await;
    let egress = format!("127.0.0.1:{egress_port}").parse().unwrap();
    Pod {
        controller,
        envoy,
        egress,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_of_the_service_networks_reach_envoy_and_follow_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moto = Moto::start(dir.path()).await;
    let front = Front::start(moto.port).await;
    // The VPC's own network holds a partner's service; the named network the cluster's.
    let shared = lattice_api::register(
        &moto.endpoint(),
        json!({"vpc": "10.0.0.0/16",
               "networks": [{"name": "partner-network", "auth": "NONE"}],
               "services": [https_service("payments-partner", Some("payments.partner.example"), "partner-network")]}),
    );
    let vpc = shared["vpc"].as_str().unwrap().to_string();
    let created = lattice_api::register(
        &moto.endpoint(),
        networks(
            None,
            vec![
                https_service("billing-apps", Some("billing.example.com"), "demo-network"),
                https_service("orders-apps", None, "demo-network"),
            ],
        ),
    );
    let orders_name = created["services"]["orders-apps"]["dns"]
        .as_str()
        .unwrap()
        .to_string();

    let hosts = [
        "billing.example.com",
        "payments.partner.example",
        "added.example.com",
        orders_name.as_str(),
    ];
    let upstream = TlsUpstream::start(dir.path(), &hosts).await;
    let Pod {
        controller,
        envoy,
        egress,
    } = pod(
        dir.path(),
        &vpc,
        &front.endpoint(),
        &upstream.ca_file,
        (&hosts, upstream.address),
        &[
            "--signing=none".to_string(),
            "--service-network=demo-network".to_string(),
        ],
    )
    .await;
    let served = |host: &'static str| async move {
        http::get(egress, host, "/")
            .await
            .filter(|response| response.status == 200)
    };

    // Every service of both networks, with no local route: by custom domain and by assigned
    // name, each checked against its own name.
    for host in ["billing.example.com", "payments.partner.example"] {
        let response = eventually(&format!("{host} to be served"), WAIT, || served(host)).await;
        assert_eq!(response.body, format!("hello from {host}\n"));
    }
    let orders = eventually("the assigned name to be served", WAIT, || async {
        http::get(egress, &orders_name, "/")
            .await
            .filter(|response| response.status == 200)
    })
    .await;
    assert_eq!(orders.body, format!("hello from {orders_name}\n"));
    // Where each destination came from shows in what Envoy holds.
    let dump = envoy.config_dump().await.to_string();
    let billing_arn = created["services"]["billing-apps"]["arn"].as_str().unwrap();
    for expected in [
        format!("service billing-apps ({billing_arn})"),
        "account 123456789012".to_string(),
        "service network demo-network (AWS_IAM with an auth policy)".to_string(),
        "service network partner-network (NONE)".to_string(),
        "service auth AWS_IAM with an auth policy".to_string(),
    ] {
        assert!(
            dump.contains(&expected),
            "Envoy's config lacks {expected:?}"
        );
    }
    let table = std::process::Command::new(support::lattice_xds())
        .args(["proxy-status", "--admin", &controller.admin_url("")])
        .output()
        .expect("proxy-status");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let row = table
        .lines()
        .find(|line| line.starts_with("billing.example.com:443"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains(&format!("billing-apps ({billing_arn})")),
        "{table}"
    );
    let calls = controller.metrics().await;
    assert!(
        calls.contains("lattice_xds_discovered_services 3"),
        "{calls}"
    );

    // A poll that changes nothing pushes nothing.
    let pushes = |metrics: &str| -> u64 {
        metrics
            .lines()
            .filter(|line| line.starts_with("lattice_xds_pushes_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let polls = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|line| line.starts_with("lattice_xds_discovery_polls_total{result=\"ok\"}"))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = controller.metrics().await;
    eventually("three more polls", WAIT, || async {
        (polls(&controller.metrics().await) >= polls(&before) + 3).then_some(())
    })
    .await;
    assert_eq!(
        pushes(&controller.metrics().await),
        pushes(&before),
        "an unchanged poll pushed"
    );

    // A service added to the network appears within a poll.
    let added = Instant::now();
    lattice_api::register(
        &moto.endpoint(),
        networks(
            None,
            vec![https_service(
                "added-apps",
                Some("added.example.com"),
                "demo-network",
            )],
        ),
    );
    eventually("the added service to be served", WAIT, || {
        served("added.example.com")
    })
    .await;
    eprintln!(
        "service added in moto to served by Envoy: {:?}",
        added.elapsed()
    );

    // The API unreachable: every destination stays; one warning for the whole outage.
    front.set(Mode::Drop);
    eventually("a failed poll", WAIT, || async {
        controller
            .metrics()
            .await
            .contains("lattice_xds_discovery_failures_total{reason=\"unreachable\"}")
            .then_some(())
    })
    .await;
    for host in [
        "billing.example.com",
        "payments.partner.example",
        "added.example.com",
    ] {
        assert!(
            served(host).await.is_some(),
            "{host} was dropped during the outage"
        );
    }
    let ok_before = polls(&controller.metrics().await);
    front.set(Mode::Forward);
    eventually("the controller to poll again", WAIT, || async {
        (polls(&controller.metrics().await) > ok_before).then_some(())
    })
    .await;
    let log = controller.process.log_text();
    assert_eq!(
        log.matches("cannot poll the VPC Lattice API").count(),
        1,
        "one warning per outage"
    );
    assert!(log.contains("VPC Lattice API answering again"));

    // Throttled: fewer and fewer requests while it lasts, every destination kept.
    front.set(Mode::Throttle);
    let throttled_from = front.requests();
    let throttled_at = Instant::now();
    eventually("a throttled poll", WAIT, || async {
        controller
            .metrics()
            .await
            .contains("lattice_xds_discovery_failures_total{reason=\"throttled\"}")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(throttled_at.elapsed())).await;
    let during = front.requests() - throttled_from;
    eprintln!("requests in 8 s of throttling: {during}");
    // A throttled poll stops at its first request. Polling every second would send about 8;
    // backing off (1 s, 2 s, 4 s between polls) sends 4.
    assert!(during <= 5, "{during} requests in 8 s of throttling");
    assert!(served("billing.example.com").await.is_some());
    front.set(Mode::Forward);

    // Removed from the network (moto cannot delete an association: it is emptied and the rest
    // registered again): orders and added leave, billing stays; the VPC's network is gone too.
    lattice_api::reset(moto.port).await;
    lattice_api::register(
        &moto.endpoint(),
        networks(
            None,
            vec![https_service(
                "billing-apps",
                Some("billing.example.com"),
                "demo-network",
            )],
        ),
    );
    let removed = Instant::now();
    eventually("the removed services to leave", WAIT, || async {
        let gone = http::get(egress, "added.example.com", "/").await?;
        (gone.status == 404).then_some(())
    })
    .await;
    eprintln!(
        "service removed in moto to gone from Envoy: {:?}",
        removed.elapsed()
    );
    for host in [orders_name.as_str(), "payments.partner.example"] {
        assert_eq!(
            http::get(egress, host, "/").await.unwrap().status,
            404,
            "{host}"
        );
    }
    assert!(served("billing.example.com").await.is_some());
}

/// The caller of the emulated data plane: what Pod Identity gives eks-cluster1's apps pods.
const CALLER_KEY: &str = "ASIADISCOVERYCALLER1";
const CALLER_ARN: &str =
    "arn:aws:sts::123456789012:assumed-role/vpc-lattice-sigv4-client/eks-eks-cluster1-apps";

/// An auth policy admitting the account's callers tagged with `namespace`.
fn admits(namespace: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "vpc-lattice-svcs:Invoke", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/kubernetes-namespace": namespace}}}]})
}

/// A service with one listener, guarded by `policy` (auth type AWS_IAM) or not (NONE).
fn service(
    name: &str,
    domain: Option<&str>,
    policy: Option<serde_json::Value>,
    network: &str,
) -> serde_json::Value {
    json!({"name": name, "custom_domain": domain,
           "auth": if policy.is_some() { "AWS_IAM" } else { "NONE" }, "policy": policy,
           "listeners": [["HTTPS", 443]], "networks": [network]})
}

/// An HTTP backend answering with its name.
async fn app(name: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router =
        axum::Router::new().fallback(move || async move { format!("hello from {name}\n") });
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

/// Envoy's first access log line for `authority`.
async fn access_log_line(envoy: &Envoy, authority: &str) -> serde_json::Value {
    (envoy.access_log_line(authority, |line| line["authority"] == authority)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_registered_in_moto_are_called_through_the_emulated_data_plane() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moto = Moto::start(dir.path()).await;
    // The cluster's network guards with IAM; a partner's second network, also associated with
    // the VPC, does not. Auth policies, names and listeners are all the API's.
    let created = lattice_api::register(
        &moto.endpoint(),
        json!({"vpc": "10.0.0.0/16",
        "networks": [{"name": "demo-network", "auth": "AWS_IAM", "policy": admits("apps")},
                     {"name": "partner-network", "auth": "NONE"}],
        "services": [
            service("billing-apps", Some("billing.example.com"), Some(admits("apps")), "demo-network"),
            service("orders-apps", None, None, "demo-network"),
            service("greeter-apps", Some("greeter.example.com"), Some(admits("apps")), "demo-network"),
            service("audit-apps", Some("audit.example.com"), Some(admits("audit")), "demo-network"),
            service("payments-partner", Some("payments.partner.example"), None, "partner-network"),
        ]}),
    );
    let vpc = created["vpc"].as_str().unwrap().to_string();
    let orders_name = created["services"]["orders-apps"]["dns"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        orders_name.ends_with(".vpclattice.amazonaws.com"),
        "{orders_name}"
    );

    // The services' backends: HTTP apps answering with their names, a gRPC health server.
    let (billing, orders, payments, audit) = (
        app("billing").await,
        app("orders").await,
        app("payments").await,
        app("audit").await,
    );
    let greeter = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let services = ["greeter".to_string()];
            lattice_xds::grpc_health::serve_on(listener, &services, Default::default()).await
        });
        port
    };

    // The emulated data plane, reading the same API. One certificate covers the custom domains
    // and the assigned names (Amazon's public certificate in AWS: here the test CA plays the
    // system roots).
    let cert = support::upstream::ServerCert::write(
        dir.path(),
        "lattice",
        &[
            "*.example.com",
            "payments.partner.example",
            &format!("*.{}.vpclattice.amazonaws.com", lattice_api::REGION),
        ],
    );
    std::fs::write(
        dir.path().join("identities.yaml"),
        format!(
            "- name: eks-cluster1/apps/demo\n  accessKeyId: {CALLER_KEY}\n  secretAccessKey: discovery-secret\n  \
             sessionToken: discovery-token\n  arn: {CALLER_ARN}\n  \
             tags: {{eks-cluster-name: eks-cluster1, kubernetes-namespace: apps}}\n"
        ),
    )
    .unwrap();
    let lattice: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = std::process::Command::new(support::lattice_xds());
    command.args([
        "emulate-lattice".to_string(),
        format!("--vpc-id={vpc}"),
        format!("--aws-endpoint-url={}", moto.endpoint()),
        format!("--region={}", lattice_api::REGION),
        format!(
            "--identities={}",
            dir.path().join("identities.yaml").display()
        ),
        format!("--tls-cert={}", cert.cert_file.display()),
        format!("--tls-key={}", cert.key_file.display()),
        format!("--listen={lattice}"),
        format!("--backend=billing-apps=http://127.0.0.1:{billing}"),
        format!("--backend=orders-apps=http://127.0.0.1:{orders}"),
        format!("--backend=payments-partner=http://127.0.0.1:{payments}"),
        format!("--backend=audit-apps=http://127.0.0.1:{audit}"),
        format!("--backend=greeter-apps=http://127.0.0.1:{greeter}"),
    ]);
    support::signing::isolate_aws(&mut command, dir.path());
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    let emulator = support::process::Running::spawn(&mut command, &dir.path().join("emulator.log"));
    eventually("the Lattice emulator", WAIT, || async {
        emulator
            .log_text()
            .contains("VPC Lattice emulator ready")
            .then_some(())
    })
    .await;

    // The pod: its signer with the caller's credentials, its controller discovering the VPC's
    // networks, its Envoy.
    let signer = support::signing::Signer::start(
        dir.path(),
        "signer",
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", CALLER_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", "discovery-secret".to_string()),
            ("AWS_SESSION_TOKEN", "discovery-token".to_string()),
            ("AWS_REGION", lattice_api::REGION.to_string()),
        ],
    )
    .await;
    let hosts = [
        "billing.example.com",
        "greeter.example.com",
        "audit.example.com",
        "payments.partner.example",
        orders_name.as_str(),
    ];
    let Pod {
        controller: _controller,
        envoy,
        egress,
    } = pod(
        dir.path(),
        &vpc,
        &moto.endpoint(),
        &cert.ca_file,
        (&hosts, lattice),
        &[
            "--signing=ext-proc".to_string(),
            format!("--signer-grpc-address={}", signer.grpc),
            format!("--signer-http-address={}", signer.http),
        ],
    )
    .await;
    let answered = |host: String| async move {
        eventually(&format!("an answer from {host}"), WAIT, || async {
            http::get(egress, &host, "/")
                .await
                .filter(|response| response.status != 404 && response.status != 503)
        })
        .await
    };

    // Signed, admitted by the network's and the service's policies, forwarded by the emulator.
    let response = answered("billing.example.com".to_string()).await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "hello from billing\n")
    );
    // By the Lattice-assigned name alone (auth NONE on the service, IAM on the network).
    let response = answered(orders_name.clone()).await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "hello from orders\n")
    );
    // Through the VPC's second network.
    let response = answered("payments.partner.example".to_string()).await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (200, "hello from payments\n")
    );
    // Refused by the service's own policy, as Lattice refuses: the resource is moto's ARN.
    let response = answered("audit.example.com".to_string()).await;
    let audit_arn = created["services"]["audit-apps"]["arn"].as_str().unwrap();
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(
        response.body,
        format!(
            "AccessDeniedException: User: {CALLER_ARN} is not authorized to perform: vpc-lattice-svcs:Invoke on \
             resource: {audit_arn}/ because no service-based policy allows the vpc-lattice-svcs:Invoke action"
        )
    );
    // gRPC with no local GRPCRoute: HTTP/2 negotiated by ALPN to the emulator, signed.
    let target = egress.to_string();
    let status = eventually("a gRPC answer from greeter", WAIT, || async {
        lattice_xds::grpc_health::check(&target, "greeter.example.com", "greeter")
            .await
            .ok()
    })
    .await;
    assert_eq!(status, lattice_xds::grpc_health::ServingStatus::Serving);

    // The sidecar knew each host by its discovered service, and signed each call.
    let billing_arn = created["services"]["billing-apps"]["arn"].as_str().unwrap();
    let billing_line = access_log_line(&envoy, "billing.example.com").await;
    assert!(
        billing_line["route"]
            .as_str()
            .is_some_and(|route| route.contains(&format!("service billing-apps ({billing_arn})"))),
        "{billing_line}"
    );
    assert_eq!(billing_line["signing"], "ext-proc", "{billing_line}");
    let audit_line = access_log_line(&envoy, "audit.example.com").await;
    assert_eq!(
        audit_line["lattice_error"], "AccessDeniedException",
        "{audit_line}"
    );
}
