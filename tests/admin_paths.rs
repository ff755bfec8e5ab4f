//! The admin listener answers a path it does not serve with a 404 that lists what it serves,
//! while gRPC calls still reach their services on the same port.

mod support;

use support::http;
use support::process::Controller;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_admin_path_is_a_404_that_lists_the_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(dir.path(), &["--manifests=examples".to_string()]).await;

    let missing = http::get_url(&controller.admin_url("/debug/proxy"))
        .await
        .expect("an answer");
    assert_eq!(missing.status, 404, "{missing:?}");
    for endpoint in [
        "/readyz",
        "/metrics",
        "/debug/proxies",
        "ProxyStatusService",
    ] {
        assert!(missing.body.contains(endpoint), "{}", missing.body);
    }

    // The gRPC service on the same port still answers.
    let table = std::process::Command::new(support::lattice_xds())
        .args(["proxy-status", "--admin", &controller.admin_url("")])
        .output()
        .expect("proxy-status");
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(String::from_utf8_lossy(&table.stdout).contains("NODE"));
}
