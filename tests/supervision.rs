//! A process runs whole or not at all: when one of its long-lived tasks stops (here made to
//! panic by the test-only fault hook, compiled with the `fault-injection` feature that
//! `make test` turns on: the pipeline, the ADS certificate's rotation, the signer's
//! credentials), the controller and the signer stop being ready, close their streams, name the
//! task and the reason, and exit non-zero within seconds for Kubernetes to restart them.
#![cfg(feature = "fault-injection")]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use lattice_xds::xds::type_url;
use support::process::{Controller, Running};
use support::signing::Signer;
use support::{eventually, http};

const WAIT: Duration = Duration::from_secs(20);

/// Waits for `process` to exit; its status.
async fn exit_of(process: &mut Running) -> std::process::ExitStatus {
    eventually("the process to exit", WAIT, || {
        let exited = process.exited();
        async move { exited }
    })
    .await
}

/// A controller on the examples whose task `task` panics `after` it starts.
async fn faulty_controller(dir: &Path, task: &str, after: &str, extra: &[String]) -> Controller {
    let fault = [
        ("LATTICE_XDS_FAULT_TASK", task.to_string()),
        ("LATTICE_XDS_FAULT_AFTER", after.to_string()),
    ];
    let mut args = vec![
        "--manifests=examples".to_string(),
        "--signing=none".to_string(),
    ];
    args.extend_from_slice(extra);
    let (xds_port, admin_port) = (support::free_port(), support::free_port());
    Controller::start_on(dir, xds_port, admin_port, "controller", &args, &fault).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_pipeline_panics_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut controller = faulty_controller(dir.path(), "pipeline", "3s", &[]).await;
    let xds_port = controller.xds_port;
    let started = Instant::now();

    // A proxy is connected and served when the fault strikes.
    let mut client =
        AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{xds_port}"))
            .await
            .unwrap();
    let request = DiscoveryRequest {
        type_url: type_url::LISTENER.to_string(),
        node: Some(Node {
            id: "watcher".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut responses = client
        .stream_aggregated_resources(futures::StreamExt::chain(
            futures::stream::iter([request]),
            futures::stream::pending(),
        ))
        .await
        .unwrap()
        .into_inner();
    responses.message().await.unwrap().expect("listeners");

    // Readiness goes away, the stream is closed, and the process exits non-zero.
    let url = controller.admin_url("/readyz");
    eventually("the controller to stop being ready", WAIT, || async {
        match http::get_url(&url).await {
            Some(answer) if answer.status == 200 => None,
            _ => Some(()),
        }
    })
    .await;
    let ended = tokio::time::timeout(WAIT, responses.message()).await;
    assert!(
        matches!(ended, Ok(Ok(None)) | Ok(Err(_))),
        "the ADS stream stayed open: {ended:?}"
    );
    let status = exit_of(&mut controller.process).await;
    assert!(!status.success(), "the controller exited with {status}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it took {:?} to exit",
        started.elapsed()
    );
    let log = controller.process.log_text();
    assert!(
        log.contains("a controller task stopped")
            && log.contains("the pipeline task panicked: fault injected into the pipeline task"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_whose_credential_refresh_panics_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIASTATIC".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "static/secret+KEY".to_string()),
        ("AWS_REGION", "ap-northeast-2".to_string()),
        ("LATTICE_XDS_FAULT_TASK", "credentials".to_string()),
        ("LATTICE_XDS_FAULT_AFTER", "2s".to_string()),
    ];
    let mut signer = Signer::start(dir.path(), "signer", &[], &env).await;
    let status = exit_of(&mut signer.process).await;
    assert!(!status.success(), "the signer exited with {status}");
    let log = signer.process.log_text();
    assert!(
        log.contains("a signer task stopped")
            && log.contains(
                "the credentials task panicked: fault injected into the credentials task"
            ),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_xds_certificate_task_panics_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = support::self_signed(dir.path(), "tls", "127.0.0.1");
    let tls = [
        format!("--xds-tls-cert={}", certificate.display()),
        format!("--xds-tls-key={}", key.display()),
    ];
    let mut controller = faulty_controller(dir.path(), "xds-certificate", "3s", &tls).await;
    let status = exit_of(&mut controller.process).await;
    assert!(!status.success(), "the controller exited with {status}");
    let log = controller.process.log_text();
    assert!(
        log.contains("a controller task stopped")
            && log.contains(
                "the xds-certificate task panicked: fault injected into the xds-certificate task"
            ),
        "{log}"
    );
}
