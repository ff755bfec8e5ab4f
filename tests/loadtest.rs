//! `lattice-xds loadtest ext-proc` against the signer sidecar's binary: every request of a run
//! is counted and answered (signed with credentials, refused with 503 without), the table
//! reports the signer's CPU and memory when given its PID, and bad arguments are refused.

mod support;

use std::process::Command;
use std::time::Duration;

use support::signing::Signer;
use support::{eventually, lattice_xds};

const WAIT: Duration = Duration::from_secs(30);

fn loadtest(signer: &Signer, extra: &[&str]) -> std::process::Output {
    Command::new(lattice_xds())
        .args(["loadtest", "ext-proc", "--duration", "60s"])
        .arg(format!("--target={}", signer.grpc))
        .args(extra)
        .output()
        .expect("run the load test")
}

/// The value of `column` in the first row of the Markdown table that has it.
fn cell(table: &str, column: &str) -> String {
    let mut lines = table.lines();
    while let Some(header) = lines.next() {
        let names: Vec<&str> = header.split('|').map(str::trim).collect();
        if let Some(index) = names.iter().position(|name| *name == column) {
            let row = lines.nth(1).unwrap_or_default();
            return row
                .split('|')
                .map(str::trim)
                .nth(index)
                .unwrap_or_default()
                .to_string();
        }
    }
    panic!("no column {column:?} in\n{table}");
}

/// The count of `answer` in the table of answers.
fn answered(table: &str, answer: &str) -> Option<u64> {
    table.lines().find_map(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        (cells.get(1) == Some(&answer)).then(|| cells[2].parse().unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_counts_every_request_and_reports_the_signers_cost() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIALOADTEST".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "load/secret+KEY".to_string()),
        ("AWS_REGION", "eu-west-1".to_string()),
    ];
    let signer = Signer::start(dir.path(), "signer", &[], &env).await;
    eventually("the signer to be ready", WAIT, || async {
        support::http::get_url(&signer.url("/readyz"))
            .await
            .filter(|ready| ready.status == 200)
    })
    .await;
    let pid = signer.process.pid().to_string();
    let output = loadtest(
        &signer,
        &["--requests=400", "--concurrency=8", "--pid", &pid],
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(cell(&table, "requests"), "400", "{table}");
    assert_eq!(answered(&table, "signed"), Some(400), "{table}");
    assert!(cell(&table, "signer RSS").ends_with(" MB"), "{table}");
    let cpu: f64 = cell(&table, "signer CPU/request (µs)").parse().unwrap();
    assert!(cpu > 0.0, "{table}");
    let p50: f64 = cell(&table, "p50 (ms)").parse().unwrap();
    let p99: f64 = cell(&table, "p99 (ms)").parse().unwrap();
    assert!(p50 > 0.0 && p50 <= p99, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_every_request_is_a_refusal_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::start(dir.path(), "signer", &["--region=eu-west-1"], &[]).await;
    let output = loadtest(&signer, &["--requests=50", "--concurrency=4"]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    assert_eq!(
        answered(&table, "refused with HTTP 503"),
        Some(50),
        "{table}"
    );
    assert_eq!(answered(&table, "signed"), None, "{table}");
    assert_eq!(cell(&table, "signer CPU/request (µs)"), "–", "{table}");
}

#[test]
fn no_signer_at_the_target_is_a_clear_error() {
    let output = Command::new(lattice_xds())
        .args([
            "loadtest",
            "ext-proc",
            "--target=127.0.0.1:9",
            "--requests=1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to the signer's ext_proc at 127.0.0.1:9"),
        "{stderr}"
    );
}
