//! Trust from ACM PCA, against `moto_server`, which issues real X.509 certificates: a root CA
//! signed with the `RootCACertificate/V1` template and imported, a leaf for `*.example.com`
//! issued from a CSR made here, served by a local TLS upstream. Envoy reaches it only when the
//! controller fetches that CA; a second CA is picked up by restarting the controller alone; an
//! outage and bad certificates keep the last good bundle served, reported in `/metrics` and
//! `/debug/trust`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::envoy::Envoy;
use support::pca::{self, Gate, Moto};
use support::process::{Controller, synced};
use support::upstream::TlsUpstream;
use support::{eventually, free_port, http};

const GATEWAY: &str = include_str!("../examples/cluster1/gateway.yaml");
const HOST: &str = "demo-cluster2.example.com";
const REFRESH: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(30);

fn manifests(dir: &Path) -> String {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("gateway.yaml"), GATEWAY).unwrap();
    let route = format!(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata:\n  name: demo-cluster2\n  namespace: apps\n\
         spec:\n  hostnames: [{HOST}]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
         \x20   sectionName: https-listener-with-custom-domain\n"
    );
    std::fs::write(manifests.join("route.yaml"), route).unwrap();
    format!("--manifests={}", manifests.display())
}

async fn trust(controller: &Controller) -> serde_json::Value {
    let answer = http::get_url(&controller.admin_url("/debug/trust"))
        .await
        .expect("/debug/trust");
    serde_json::from_str(&answer.body).expect("trust JSON")
}

fn ca<'a>(trust: &'a serde_json::Value, arn: &str) -> &'a serde_json::Value {
    trust["cas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ca| ca["arn"] == arn)
        .expect("the CA is listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_trusts_pca_certificates_through_rotation_outage_and_bad_data() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let manifests = manifests(dir);
    let moto = Moto::start(dir).await;
    let gate = Gate::start(moto.port).await;
    let client = moto.client().await;
    let env = pca::controller_env(dir);

    let first_ca = pca::create_root_ca(&client, "Lattice Demo Root CA 1").await;
    let (leaf, key) = pca::issue_leaf(&client, &first_ca, &["*.example.com"]).await;
    let first_upstream = TlsUpstream::start_with(&leaf, key, dir.join("unused-ca.pem")).await;

    // Without the CA, the upstream's certificate is not trusted.
    let egress_port = free_port();
    let egress = format!("127.0.0.1:{egress_port}").parse().unwrap();
    let common = |upstream: &TlsUpstream| {
        vec![
            manifests.clone(),
            "--signing=none".to_string(),
            "--egress-address=127.0.0.1".to_string(),
            format!("--egress-port={egress_port}"),
            format!("--resolve={HOST}={}", upstream.address),
            format!("--aws-endpoint-url={}", gate.endpoint()),
            format!("--trust-refresh={}s", REFRESH.as_secs()),
        ]
    };
    let (xds_port, admin_port) = (free_port(), free_port());
    let untrusting = Controller::start_on(
        dir,
        xds_port,
        admin_port,
        "controller-without-ca",
        &common(&first_upstream),
        &env,
    )
    .await;
    let envoy = Envoy::start(dir, "demo-pod", xds_port, "delta").await;
    eventually("Envoy to accept the configuration", WAIT, || async {
        synced(
            &untrusting.proxies().await,
            "demo-pod",
            &["CDS", "LDS", "RDS"],
        )
        .then_some(())
    })
    .await;
    let refused = http::get(egress, HOST, "/").await.expect("egress answers");
    assert_eq!(refused.status, 503, "{refused:?}");
    let stats = http::get_url(&envoy.admin_url("/stats?filter=ssl.fail_verify_error"))
        .await
        .unwrap()
        .body;
    let failed_verifications: u64 = stats
        .lines()
        .filter(|line| line.contains(HOST))
        .filter_map(|line| line.rsplit(": ").next()?.parse::<u64>().ok())
        .sum();
    assert!(
        failed_verifications > 0,
        "the TLS handshake failed verification: {stats}"
    );
    drop(untrusting);

    // With the CA fetched from ACM PCA, the same Envoy reaches it.
    let mut args = common(&first_upstream);
    args.push(format!("--ca-arn={first_ca}"));
    let controller =
        Controller::start_on(dir, xds_port, admin_port, "controller-one-ca", &args, &env).await;
    let answer = eventually("Envoy to trust the PCA's leaf", WAIT, || async {
        http::get(egress, HOST, "/")
            .await
            .filter(|answer| answer.status == 200)
    })
    .await;
    assert_eq!(answer.body, format!("hello from {HOST}\n"));
    let state = trust(&controller).await;
    let first = ca(&state, &first_ca);
    assert_eq!(first["certificate"]["subject"], "CN=Lattice Demo Root CA 1");
    assert_eq!(first["last_fetch"]["error"], serde_json::Value::Null);
    assert_eq!(
        first["certificate"]["fingerprint_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(!state.to_string().contains("PRIVATE KEY"));

    // Rotation: the upstream moves to a leaf of a second CA; only the controller restarts.
    let second_ca = pca::create_root_ca(&client, "Lattice Demo Root CA 2").await;
    let (leaf, key) = pca::issue_leaf(&client, &second_ca, &["*.example.com"]).await;
    let second_upstream = TlsUpstream::start_with(&leaf, key, dir.join("unused-ca.pem")).await;
    drop(controller);
    let mut args = common(&second_upstream);
    args.push(format!("--ca-arn={first_ca}"));
    args.push(format!("--ca-arn={second_ca}"));
    let restarted = Instant::now();
    let controller =
        Controller::start_on(dir, xds_port, admin_port, "controller-two-cas", &args, &env).await;
    eventually(
        "Envoy to reach the second upstream and trust its leaf",
        WAIT,
        || async {
            let answer = http::get(egress, HOST, "/").await?;
            (answer.status == 200 && !second_upstream.server_names().is_empty()).then_some(())
        },
    )
    .await;
    let rotation = restarted.elapsed();
    eprintln!("controller restart with a second CA to Envoy trusting it: {rotation:?}");
    assert!(
        rotation < REFRESH,
        "took {rotation:?}, more than one refresh period"
    );
    assert!(
        second_upstream
            .server_names()
            .iter()
            .all(|name| name == HOST)
    );

    // Renewal: the second CA's certificate changes in ACM PCA and the upstream moves to a leaf
    // it signed. Nothing restarts: the next refresh pushes the new bundle over SDS and Envoy's
    // new connections trust it.
    let renewed_ca = pca::create_root_ca(&client, "Lattice Demo Root CA 2 (renewed)").await;
    let renewed_certificate = client
        .get_certificate_authority_certificate()
        .certificate_authority_arn(&renewed_ca)
        .send()
        .await
        .unwrap()
        .certificate
        .unwrap();
    let (leaf, key) = pca::issue_leaf(&client, &renewed_ca, &["*.example.com"]).await;
    pca::import(&client, &second_ca, &renewed_certificate).await;
    second_upstream.replace_certificate(&leaf, key);
    let renewed = Instant::now();
    let state = eventually(
        "Envoy to trust the renewed CA without a restart",
        WAIT,
        || async {
            let answer = http::get(egress, HOST, "/").await?;
            if answer.status != 200 {
                return None;
            }
            let state = trust(&controller).await;
            (ca(&state, &second_ca)["certificate"]["subject"]
                == "CN=Lattice Demo Root CA 2 (renewed)")
                .then_some(state)
        },
    )
    .await;
    let renewal = renewed.elapsed();
    eprintln!(
        "CA renewal in ACM PCA to Envoy trusting it: {renewal:?} (refresh period {REFRESH:?})"
    );
    assert!(
        renewal < REFRESH + Duration::from_secs(1),
        "took {renewal:?}"
    );
    assert_eq!(
        ca(&state, &second_ca)["last_fetch"]["error"],
        serde_json::Value::Null
    );

    // Outage: ACM PCA cannot be reached; the last good bundles stay served.
    gate.set_open(false);
    let state = eventually("the outage to be reported", WAIT, || async {
        let state = trust(&controller).await;
        ca(&state, &first_ca)["last_fetch"]["error"]
            .is_string()
            .then_some(state)
    })
    .await;
    assert_eq!(
        ca(&state, &first_ca)["certificate"]["subject"],
        "CN=Lattice Demo Root CA 1"
    );
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains(&format!(
            "lattice_xds_trust_fetch_ok{{ca=\"{first_ca}\"}} 0"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "lattice_xds_trust_fetch_failures_total{{ca=\"{first_ca}\"}}"
        )),
        "{metrics}"
    );
    let during = http::get(egress, HOST, "/").await.expect("egress answers");
    assert_eq!(during.status, 200, "served during the outage: {during:?}");
    gate.set_open(true);
    eventually("recovery once ACM PCA is back", WAIT, || async {
        let state = trust(&controller).await;
        ca(&state, &first_ca)["last_fetch"]["error"]
            .is_null()
            .then_some(())
    })
    .await;
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains(&format!(
            "lattice_xds_trust_fetch_ok{{ca=\"{first_ca}\"}} 1"
        )),
        "{metrics}"
    );

    // Bad data: the CA's certificate is replaced by a leaf, then by an expired CA. Each is
    // refused with a clear error and the last good certificate stays served.
    let (not_a_ca, _) = pca::issue_leaf(&client, &second_ca, &["not-a-ca.example.com"]).await;
    let not_a_ca = not_a_ca
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_string();
    let expired = expired_ca();
    for (bad, expected) in [(not_a_ca, "is not a CA certificate"), (expired, "expired")] {
        pca::import(&client, &first_ca, &bad).await;
        let state = eventually("the bad certificate to be refused", WAIT, || async {
            let state = trust(&controller).await;
            let error = ca(&state, &first_ca)["last_fetch"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            error.contains(expected).then_some(state)
        })
        .await;
        let first = ca(&state, &first_ca);
        assert_eq!(
            first["certificate"]["subject"], "CN=Lattice Demo Root CA 1",
            "the good one stays"
        );
        let still = http::get(egress, HOST, "/").await.expect("egress answers");
        assert_eq!(still.status, 200);
    }
    let log = controller.process.log_text();
    assert!(
        log.contains("could not refresh CA certificate; the last good one stays served"),
        "{log}"
    );
    drop(envoy);
}

/// A self-signed CA certificate that expired yesterday.
fn expired_ca() -> String {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Expired CA");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    params.self_signed(&key).unwrap().pem()
}
