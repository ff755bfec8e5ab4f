//! The VPC Lattice control-plane API for the tests: `moto_server`'s, set up through botocore
//! (`tests/peers/lattice_services.py`), behind a front that can play an outage (every
//! connection dropped) or throttling (every request answered `429 ThrottlingException`, as the
//! API does when a caller exceeds its rate), and that counts the requests it sees.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{http, python};

pub const REGION: &str = "us-east-1";

/// What the front does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward = 0,
    Drop = 1,
    Throttle = 2,
}

pub struct Front {
    pub port: u16,
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    /// A front on a free loopback port for moto on `moto_port`.
    pub async fn start(moto_port: u16) -> Front {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(Mode::Forward as u8));
        let requests = Arc::new(AtomicU64::new(0));
        let (shared_mode, counted) = (Arc::clone(&mode), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if shared_mode.load(Ordering::SeqCst) == Mode::Drop as u8 {
                    continue;
                }
                let (mode, counted) = (Arc::clone(&shared_mode), Arc::clone(&counted));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let throttled = mode.load(Ordering::SeqCst) == Mode::Throttle as u8;
                        async move {
                            Ok::<_, Infallible>(match throttled {
                                true => throttle(),
                                false => forward(moto_port, request).await,
                            })
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Front {
            port,
            mode,
            requests,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests seen so far (dropped connections carry none).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer VPC Lattice gives a caller beyond its request rate.
fn throttle() -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(429)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", "ThrottlingException")
        .body(Full::new(Bytes::from_static(
            b"{\"message\":\"Rate exceeded\"}",
        )))
        .unwrap()
}

async fn forward(
    moto_port: u16,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let failed = |why: String| {
        hyper::Response::builder()
            .status(502)
            .body(Full::new(Bytes::from(why)))
            .unwrap()
    };
    let stream = match tokio::net::TcpStream::connect(("127.0.0.1", moto_port)).await {
        Ok(stream) => stream,
        Err(error) => return failed(error.to_string()),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(error) => return failed(error.to_string()),
        };
    tokio::spawn(connection);
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match sender
        .send_request(hyper::Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            hyper::Response::from_parts(parts, Full::new(body))
        }
        Err(error) => failed(error.to_string()),
    }
}

/// Registers networks and services in moto at `endpoint` (see `lattice_services.py` for the
/// shape of `spec`) and returns what was created.
pub fn register(endpoint: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut job = spec;
    job["endpoint"] = endpoint.into();
    job["region"] = REGION.into();
    let output = python::run("lattice_services.py", job.to_string().as_bytes());
    serde_json::from_slice(&output).expect("lattice_services.py prints JSON")
}

/// Empties moto: it has no call that removes a service association, so a test that removes a
/// service resets moto and registers the rest again.
pub async fn reset(moto_port: u16) {
    let moto = ([127, 0, 0, 1], moto_port).into();
    let response = http::request(moto, "POST", "127.0.0.1", "/moto-api/reset", &[], "")
        .await
        .expect("moto answers");
    assert_eq!(response.status, 200, "moto reset");
}
