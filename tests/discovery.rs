//! Services discovered from the VPC Lattice API (moto's) reach stock Envoy with no local route:
//! by custom domain and by Lattice-assigned name, through the VPC's service networks and a
//! network named on the command line. A service added to moto appears within a poll and one
//! removed leaves; an outage and throttling keep every destination served, and polls back off.

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
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let egress_port = free_port();
    let mut args = vec![
        format!("--manifests={}", manifests.display()),
        "--signing=none".to_string(),
        // A removed service gets the sidecar's own 404, which this test reads.
        "--unknown-hosts=deny".to_string(),
        format!("--ca-file={}", upstream.ca_file.display()),
        // Lattice-assigned names carry public certificates; here the test CA plays the roots.
        format!("--system-ca-file={}", upstream.ca_file.display()),
        "--egress-address=127.0.0.1".to_string(),
        format!("--egress-port={egress_port}"),
        format!("--vpc-id={vpc}"),
        "--service-network=demo-network".to_string(),
        "--discovery-interval=1s".to_string(),
        format!("--aws-endpoint-url={}", front.endpoint()),
        format!("--region={}", lattice_api::REGION),
    ];
    args.extend(
        hosts
            .iter()
            .map(|host| format!("--resolve={host}={}", upstream.address)),
    );
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ];
    let controller = Controller::start_on(
        dir.path(),
        free_port(),
        free_port(),
        "controller",
        &args,
        &credentials,
    )
    .await;
    let envoy = Envoy::start(dir.path(), "demo-pod", controller.xds_port, "delta").await;
    let egress = format!("127.0.0.1:{egress_port}").parse().unwrap();
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
