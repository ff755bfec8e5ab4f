//! What an injected Envoy's startup probe sees. Envoy answers its own `/ready` LIVE once the
//! controller is late (half a second), configured or not, so the probe connects to the egress
//! port instead: the listener there comes from the controller, and until it exists the
//! application must not start.

mod support;

use std::time::Duration;

use support::envoy::Envoy;
use support::process::Controller;

async fn egress_takes_connections(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_port_opens_only_once_the_controller_has_configured_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::copy_examples(dir.path());
    let xds_port = support::free_port();
    let egress_port = support::free_port();

    // A new pod whose controller cannot be reached: Envoy says it is LIVE...
    let envoy = Envoy::start(dir.path(), "client.apps", xds_port, "delta").await;
    let listeners = support::http::get_url(&envoy.admin_url("/listeners"))
        .await
        .expect("Envoy's admin answers");
    assert!(
        !listeners.body.contains("egress"),
        "no egress listener yet: {}",
        listeners.body
    );
    // ...while the probe's port refuses.
    assert!(
        !egress_takes_connections(egress_port).await,
        "the egress port took a connection before the controller configured it"
    );

    let _controller = Controller::start_on(
        dir.path(),
        xds_port,
        support::free_port(),
        "controller",
        &[
            format!("--manifests={}", manifests.display()),
            "--egress-address=127.0.0.1".to_string(),
            format!("--egress-port={egress_port}"),
        ],
        &[],
    )
    .await;
    support::eventually(
        "the egress port to take connections",
        Duration::from_secs(20),
        || async { egress_takes_connections(egress_port).await.then_some(()) },
    )
    .await;
}
