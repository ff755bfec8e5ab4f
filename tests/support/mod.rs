//! Helpers for the integration tests: real processes (the controller, stock Envoy), a TLS
//! upstream with a CA made in the test, and plain HTTP on loopback. Every process is killed
//! when its handle drops; every wait is on a readiness condition, with a deadline.

#![allow(dead_code)]

pub mod ads;
pub mod collector;
pub mod emulated;
pub mod envoy;
pub mod helm;
pub mod http;
pub mod kube;
pub mod lattice_api;
pub mod pca;
pub mod process;
pub mod python;
pub mod service;
pub mod signing;
pub mod upstream;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago and that no other test in this process has been
/// given. Ports come from below the kernel's ephemeral range (32768 and up), so neither an
/// outgoing connection nor another `bind(0)` can take one between this call and the process that
/// listens on it.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    let mut handed_out = HANDED_OUT.lock().unwrap();
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    for offset in 0..COUNT {
        let port = (FIRST + (start + offset * 97) % COUNT) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + COUNT
    );
}

/// Polls `check` every 25 ms until it yields a value or `timeout` passes; panics with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The lattice-xds binary built for these tests.
pub fn lattice_xds() -> &'static str {
    env!("CARGO_BIN_EXE_lattice-xds")
}

/// Runs `lattice-xds` with `args` as a user would: its exit code, stdout and stderr.
pub fn run_lattice_xds(args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(lattice_xds())
        .args(args)
        .output()
        .expect("run lattice-xds");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A manifest directory under `dir` with the walkthrough's gateway and, when `host` is given,
/// an HTTPRoute for it on the gateway's custom-domain listener.
pub fn gateway_manifests(dir: &std::path::Path, host: Option<&str>) -> std::path::PathBuf {
    let manifests = dir.join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("gateway.yaml"),
        include_str!("../../examples/cluster1/gateway.yaml"),
    )
    .unwrap();
    if let Some(host) = host {
        let route = format!(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata:\n  name: demo-cluster2\n  namespace: apps\n\
             spec:\n  hostnames: [{host}]\n  parentRefs:\n  - name: lattice-gateway\n    namespace: lattice-gateway\n\
             \x20   sectionName: https-listener-with-custom-domain\n"
        );
        std::fs::write(manifests.join("route.yaml"), route).unwrap();
    }
    manifests
}

/// A copy of `examples/` under `dir`, for a test that changes the manifests.
pub fn copy_examples(dir: &std::path::Path) -> std::path::PathBuf {
    let manifests = dir.join("manifests");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg("examples")
        .arg(&manifests)
        .status()
        .expect("cp");
    assert!(copied.success(), "cannot copy examples/");
    manifests
}

/// A self-signed P-256 certificate for `name` (its subject and its one subject alternative
/// name, an IP address or a DNS name), made with openssl: the certificate's and the key's
/// paths in `dir`, named after `file`.
pub fn self_signed(
    dir: &std::path::Path,
    file: &str,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (certificate, key) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    let san = match name.parse::<std::net::IpAddr>() {
        Ok(_) => format!("subjectAltName=IP:{name}"),
        Err(_) => format!("subjectAltName=DNS:{name}"),
    };
    let output = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &san,
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (certificate, key)
}
