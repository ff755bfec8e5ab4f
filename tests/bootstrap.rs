//! The rendered bootstrap is accepted by `envoy --mode validate`, for both ADS flavours.

mod support;

use std::process::Command;

#[test]
fn envoy_validates_the_rendered_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    for protocol in ["delta", "sotw"] {
        let path = support::envoy::write_bootstrap(
            dir.path(),
            &format!("validate-{protocol}"),
            18000,
            9901,
            protocol,
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let api_type = if protocol == "delta" {
            "DELTA_GRPC"
        } else {
            "GRPC"
        };
        assert!(text.contains(&format!("api_type: {api_type}")), "{text}");
        let output = Command::new(support::envoy::binary())
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&path)
            .output()
            .expect("run envoy --mode validate");
        assert!(
            output.status.success(),
            "Envoy rejected the {protocol} bootstrap:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn bootstrap_refuses_an_address_without_port() {
    let output = Command::new(support::lattice_xds())
        .args([
            "bootstrap",
            "--node-id",
            "n",
            "--cluster",
            "c",
            "--xds-address",
            "controller.example",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not HOST:PORT"));
}
