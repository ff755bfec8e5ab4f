//! The rendered bootstrap is accepted by `envoy --mode validate`, for both ADS flavours and
//! with TLS and a token; a token is never configured without TLS.

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
        envoy_accepts(&path, protocol);
    }
}

fn envoy_accepts(bootstrap: &std::path::Path, what: &str) {
    let output = Command::new(support::envoy::binary())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(bootstrap)
        .output()
        .expect("run envoy --mode validate");
    assert!(
        output.status.success(),
        "Envoy rejected the {what} bootstrap:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `lattice-xds bootstrap` with `args`, expecting it to fail; its error output.
fn refused(args: &[&str]) -> String {
    let output = Command::new(support::lattice_xds())
        .args(["bootstrap", "--node-id", "n", "--cluster", "c"])
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success(), "bootstrap {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bootstrap_refuses_an_address_without_port() {
    let stderr = refused(&["--xds-address", "controller.example"]);
    assert!(stderr.contains("is not HOST:PORT"), "{stderr}");
}

#[test]
fn envoy_validates_the_tls_and_token_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = support::self_signed(dir.path(), "ca", "test-ca");
    let token = dir.path().join("xds-token");
    std::fs::write(&token, "a.b.c").unwrap();
    let path = support::envoy::write_bootstrap_with(
        dir.path(),
        "validate-tls",
        18000,
        9901,
        "delta",
        &[
            format!("--xds-ca-file={}", ca.display()),
            format!("--xds-token-file={}", token.display()),
        ],
    );
    let text = std::fs::read_to_string(&path).unwrap();
    for expected in [
        "envoy.transport_sockets.tls",
        "envoy.filters.http.credential_injector",
        "san_type: IP_ADDRESS",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    let sds = std::fs::read_to_string(dir.path().join("xds-token-sds.yaml")).unwrap();
    assert!(sds.contains(&token.display().to_string()), "{sds}");
    envoy_accepts(&path, "TLS");
}

#[test]
fn a_token_is_never_configured_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("envoy.yaml");
    let stderr = refused(&[
        "--xds-address",
        "127.0.0.1:18000",
        "--xds-token-file",
        "/var/run/secrets/lattice-xds/xds-token",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("the token is only sent over TLS"),
        "{stderr}"
    );
    assert!(!output.exists());
}
