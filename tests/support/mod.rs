//! Helpers for the integration tests: real processes (the controller, stock Envoy), a TLS
//! upstream with a CA made in the test, and plain HTTP on loopback. Every process is killed
//! when its handle drops; every wait is on a readiness condition, with a deadline.

#![allow(dead_code)]

pub mod envoy;
pub mod http;
pub mod pca;
pub mod process;
pub mod python;
pub mod signing;
pub mod upstream;

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
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
