//! Log lines as a pod's log file holds them: plain text without terminal colour codes, or one
//! JSON object per line with `--log-format json`, from the controller and the signer alike.

mod support;

use support::process::Controller;
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
