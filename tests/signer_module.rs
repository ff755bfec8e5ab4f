//! The signer module (`--signing=module`) is pinned to Envoy 1.40's dynamic-module ABI, and any
//! other Envoy refuses it when it loads, with the reason, instead of misbehaving at request
//! time: the pinned Envoy has exactly the callbacks the module was written for; Envoy 1.39
//! stops at start naming the callback it lacks; a release with another set of callbacks is
//! told apart by the module's own check. Served over xDS to an Envoy that cannot load it, the
//! listener is rejected with the reason, which the controller shows, and nothing is sent. A
//! filter configuration the module cannot read fails the configuration, naming the field,
//! rather than signing with defaults; one it can read is signed only within the scope of
//! Envoy's environment, and with no credentials at all the answer is a 503 that says so.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lattice_xds::signer::module;
use support::envoy::{binary, release, signer_module_env, write_bootstrap};
use support::eventually;
use support::process::{Controller, Running, type_status};
use support::signing::isolate_aws;

#[test]
fn the_pinned_envoy_has_the_callbacks_the_module_was_written_for() {
    assert_eq!(module::check(&binary()), Ok(()));
}

#[test]
fn another_release_is_told_apart_by_its_callbacks() {
    let error = module::check(&release("1.39.3")).unwrap_err();
    assert!(
        error.contains("not Envoy 1.40's")
            && error.contains("607 callbacks exported where Envoy 1.40.0 exports 781"),
        "{error}"
    );
}

#[tokio::test]
async fn envoy_1_39_refuses_the_module_at_start_naming_what_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (status, log) = start_static(
        dir.path(),
        &release("1.39.3"),
        r#"{"service":"vpc-lattice-svcs"}"#,
    )
    .await;
    assert!(
        !status.success(),
        "Envoy 1.39 started with the module:\n{log}"
    );
    assert!(
        log.contains("Failed to load dynamic module")
            && log.contains("undefined symbol: envoy_dynamic_module_callback_"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_that_cannot_load_the_module_rejects_the_listener_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = support::gateway_manifests(dir.path(), None);
    let egress_port = support::free_port();
    let controller = Controller::start(
        dir.path(),
        &[
            format!("--manifests={}", manifests.display()),
            "--signing=module".to_string(),
            "--region=eu-west-1".to_string(),
            "--egress-address=127.0.0.1".to_string(),
            format!("--egress-port={egress_port}"),
        ],
    )
    .await;
    let admin_port = support::free_port();
    let bootstrap = write_bootstrap(
        dir.path(),
        "old-envoy",
        controller.xds_port,
        admin_port,
        "delta",
    );
    let mut command = Command::new(release("1.39.3"));
    command
        .arg("-c")
        .arg(&bootstrap)
        .args(["--disable-hot-restart", "--log-level", "info"])
        .env("AWS_REGION", "eu-west-1");
    for (key, value) in signer_module_env() {
        command.env(key, value);
    }
    let envoy = Running::spawn(&mut command, &dir.path().join("envoy-1.39.log"));

    let rejected = eventually(
        "the listener's rejection",
        Duration::from_secs(20),
        || async {
            let proxies = controller.proxies().await;
            type_status(&proxies, "old-envoy", "LDS")
                .filter(|lds| lds["nacked_version"] != "")
                .cloned()
        },
    )
    .await;
    assert!(
        rejected
            .to_string()
            .contains("undefined symbol: envoy_dynamic_module_callback_"),
        "{rejected}"
    );
    // No listener, so no request leaves the pod: the egress port refuses.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", egress_port)).is_err(),
        "the egress port accepted a connection"
    );
    assert!(envoy.log_text().contains("Failed to load dynamic module"));
}

#[tokio::test]
async fn the_module_signs_only_within_its_scope_and_never_without_credentials() {
    let port = support::free_port();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let answer = |path: &'static str| async move {
        eventually("the static listener", Duration::from_secs(20), || async {
            support::http::request(address, "GET", "svc.example.com", path, &[], "").await
        })
        .await
    };
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    // (the filter's configuration, whether Envoy has credentials, the status and the start of
    // the reason)
    let cases = [
        // Another service than the one the environment allows (vpc-lattice-svcs, by default).
        (
            r#"{"service":"s3"}"#,
            true,
            403,
            r#"lattice-xds signer: service "s3" is not one this signer signs for (LATTICE_XDS_ALLOW_SERVICE: vpc-lattice-svcs)"#,
        ),
        // Another region than AWS_REGION.
        (
            r#"{"region":"us-east-1"}"#,
            true,
            403,
            r#"lattice-xds signer: region "us-east-1" is not one this signer signs for (LATTICE_XDS_ALLOW_REGION: eu-west-1)"#,
        ),
        // No credentials anywhere in the chain: a 503 that says so, never the route's 200.
        ("{}", false, 503, "lattice-xds signer: no AWS credentials"),
    ];
    for (config, with_credentials, status, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let credentials: &[(&str, &str)] = if with_credentials { &credentials } else { &[] };
        let _envoy = spawn_static(dir.path(), &binary(), config, port, credentials);
        let refused = answer("/").await;
        assert_eq!(refused.status, status, "{config}: {}", refused.body);
        assert!(
            refused.body.starts_with(reason),
            "{config}: {}",
            refused.body
        );
    }
}

#[tokio::test]
async fn a_configuration_the_module_cannot_read_fails_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (status, log) = start_static(
        dir.path(),
        &binary(),
        r#"{"service":"vpc-lattice-svcs","regoin":"eu-west-1"}"#,
    )
    .await;
    assert!(
        !status.success(),
        "Envoy started with the bad configuration:\n{log}"
    );
    assert!(
        log.contains(
            "lattice-xds signer filter rejected: its configuration: unknown field `regoin`"
        ),
        "{log}"
    );
    // The module itself loaded, and said for which Envoy.
    assert!(
        log.contains("lattice-xds signer module loaded for Envoy 1.40"),
        "{log}"
    );
}

/// Starts `envoy` on a static listener whose signing filter has `config`, expecting it to stop
/// at start: its exit status and its log.
async fn start_static(
    dir: &Path,
    envoy: &Path,
    config: &str,
) -> (std::process::ExitStatus, String) {
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    let mut process = spawn_static(dir, envoy, config, 0, &credentials);
    let status = eventually("Envoy to stop", Duration::from_secs(20), || {
        let exited = process.exited();
        async move { exited }
    })
    .await;
    (status, process.log_text())
}

/// `envoy` on a static listener at `port` (0: any) whose signing filter has `config` and whose
/// every route answers 200 itself, so an unsigned request would be a 200; with `credentials`
/// (environment variables) and nothing else of the AWS SDK's chain.
fn spawn_static(
    dir: &Path,
    envoy: &Path,
    config: &str,
    port: u16,
    credentials: &[(&str, &str)],
) -> Running {
    let bootstrap = dir.join("envoy.yaml");
    std::fs::write(&bootstrap, static_config(config, port)).unwrap();
    let mut command = Command::new(envoy);
    command
        .arg("-c")
        .arg(&bootstrap)
        .args(["--disable-hot-restart", "--log-level", "info"])
        .env("AWS_REGION", "eu-west-1");
    isolate_aws(&mut command, dir);
    for (key, value) in credentials {
        command.env(key, value);
    }
    for (key, value) in signer_module_env() {
        command.env(key, value);
    }
    Running::spawn(&mut command, &dir.join("envoy.log"))
}

fn static_config(filter_config: &str, port: u16) -> String {
    let config = serde_json::Value::from(filter_config);
    format!(
        r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
static_resources:
  listeners:
  - name: egress
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: egress
          route_config: {{virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200}}}}]}}]}}
          http_filters:
          - name: sign
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: lattice_xds_signer, do_not_close: true}}
              filter_name: sigv4
              filter_config: {{"@type": type.googleapis.com/google.protobuf.StringValue, value: {config}}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}
