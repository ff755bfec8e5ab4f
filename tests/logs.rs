//! Log lines as a pod's log file holds them: plain text without terminal colour codes, or one
//! JSON object per line with `--log-format json`, from the controller and the signer alike, and
//! in the same shape from an injected Envoy.

mod support;

use lattice_xds::inject::ENVOY_JSON_LOG_FORMAT;
use support::process::{Controller, Running};
use support::signing::Signer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_in_a_file_carry_no_colour_and_can_be_json() {
    let dir = tempfile::tempdir().unwrap();
    let text = Controller::start(dir.path(), &["--manifests=examples".to_string()]).await;
    let log = text.process.log_text();
    assert!(log.contains("controller started"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");

    let json_dir = tempfile::tempdir().unwrap();
    let json = Controller::start(
        json_dir.path(),
        &[
            "--manifests=examples".to_string(),
            "--log-format=json".to_string(),
        ],
    )
    .await;
    let log = json.process.log_text();
    let lines: Vec<serde_json::Value> = (log.lines())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let started = (lines.iter())
        .find(|line| line["fields"]["message"] == "controller started")
        .unwrap_or_else(|| panic!("no start line:\n{log}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "lattice_xds::controller");

    let signer = Signer::start(dir.path(), "signer", &["--log-format=json"], &[]).await;
    let log = signer.process.log_text();
    assert!(!log.contains('\u{1b}'), "{log}");
    for line in log.lines() {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
    assert!(log.contains("signer started"), "{log}");
}

/// What the webhook gives an injected Envoy with `--inject-log-format json`: every line an
/// object a log pipeline reads as it reads the controller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_envoy_logs_json_in_the_controllers_shape() {
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(dir.path(), &["--manifests=examples".to_string()]).await;
    let admin_port = support::free_port();
    let bootstrap = support::envoy::write_bootstrap(
        dir.path(),
        "json.apps",
        controller.xds_port,
        admin_port,
        "delta",
    );
    let mut command = std::process::Command::new(support::envoy::binary());
    command.arg("-c").arg(&bootstrap).args([
        "--disable-hot-restart",
        "--concurrency",
        "1",
        "--log-level",
        "info",
        "--log-format",
        ENVOY_JSON_LOG_FORMAT,
    ]);
    let envoy = Running::spawn(&mut command, &dir.path().join("envoy.log"));
    support::eventually(
        "Envoy to log its start",
        std::time::Duration::from_secs(20),
        || async {
            envoy
                .log_text()
                .contains("starting main dispatch loop")
                .then_some(())
        },
    )
    .await;
    let log = envoy.log_text();
    // Lines still being written are left for another time.
    let complete = &log[..log.rfind('\n').map_or(0, |end| end + 1)];
    for line in complete.lines() {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(parsed["fields"]["message"].is_string(), "{line}");
        assert!(parsed["level"].is_string(), "{line}");
        assert!(
            parsed["target"].as_str().unwrap().starts_with("envoy."),
            "{line}"
        );
    }
}
