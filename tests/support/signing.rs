//! The signer sidecar as a process, a local EKS Pod Identity agent, and the botocore-based
//! upstream that verifies signatures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::process::Running;
use super::upstream::ServerCert;
use super::{eventually, free_port, http, python};

/// Environment that keeps the AWS SDK away from anything outside the test: no shared config
/// files, no instance metadata, no inherited credentials.
pub fn isolate_aws(command: &mut Command, dir: &Path) {
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ] {
        command.env_remove(name);
    }
    command.envs(no_aws_sources(dir));
}

/// The variables that leave the AWS SDK nothing but what a test gives it: no shared config
/// files, no instance metadata.
pub fn no_aws_sources(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        (
            "AWS_CONFIG_FILE",
            dir.join("no-aws-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials").display().to_string(),
        ),
    ]
}

/// `lattice-xds signer` on free loopback ports.
pub struct Signer {
    pub process: Running,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Signer {
    /// Starts the signer with `env` (credentials) and waits until it answers `/healthz`.
    pub async fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, String)]) -> Signer {
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_on(dir, name, grpc, http, args, env).await
    }

    /// The same, on given addresses (to restart a signer where Envoy expects it).
    pub async fn start_on(
        dir: &Path,
        name: &str,
        grpc: SocketAddr,
        http: SocketAddr,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Signer {
        // The binary the signer sidecar runs: the signer alone, on one thread.
        let mut command = Command::new(env!("CARGO_BIN_EXE_lattice-xds-signer"));
        command
            .arg(format!("--grpc-listen={grpc}"))
            .arg(format!("--http-listen={http}"))
            .args(args)
            .env("LATTICE_XDS_LOG", "debug");
        isolate_aws(&mut command, dir);
        for (key, value) in env {
            command.env(key, value);
        }
        let process = Running::spawn(&mut command, &dir.join(format!("{name}.log")));
        let signer = Signer {
            process,
            grpc,
            http,
        };
        let url = signer.url("/healthz");
        eventually("the signer to listen", Duration::from_secs(20), || async {
            http::get_url(&url).await.filter(|r| r.status == 200)
        })
        .await;
        signer
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Asks `POST /v1/sign` to sign a GET of `path` on `host`.
    pub async fn sign(&self, host: &str, path: &str) -> http::HttpResponse {
        let description = format!("GET\n{path}\nhost: {host}\naccept: */*\n");
        http::request(self.http, "POST", "signer", "/v1/sign", &[], &description)
            .await
            .expect("the signer answers")
    }

    pub async fn metrics(&self) -> String {
        http::get_url(&self.url("/metrics"))
            .await
            .expect("metrics")
            .body
    }
}

/// What the local Pod Identity agent hands out.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    pub expiration: SystemTime,
}

#[derive(Debug, Default)]
struct AgentState {
    /// The token the agent accepts (the projected service-account token).
    expected_token: String,
    issued: Option<Issued>,
    /// Answer 500 to every request.
    failing: bool,
    /// The Authorization header of every request, in order.
    seen_tokens: Vec<String>,
}

/// A local EKS Pod Identity agent: `GET /v1/credentials` with `Authorization: <token>`
/// answers the documented JSON (`AccessKeyId`, `SecretAccessKey`, `Token`, `AccountId`,
/// `Expiration`); a missing token is 400, a wrong one 403, and `fail` makes it answer 500.
pub struct PodIdentityAgent {
    pub address: SocketAddr,
    state: Arc<Mutex<AgentState>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodIdentityAgent {
    pub async fn start(expected_token: &str, issued: Issued) -> PodIdentityAgent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, expected_token, issued)
    }

    /// The same, on the address of an agent that was stopped (as a restarted agent is).
    pub async fn restart_at(
        address: SocketAddr,
        expected_token: &str,
        issued: Issued,
    ) -> PodIdentityAgent {
        let listener = eventually(
            "the agent's port to be free again",
            Duration::from_secs(10),
            || async { tokio::net::TcpListener::bind(address).await.ok() },
        )
        .await;
        Self::serve(listener, expected_token, issued)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        expected_token: &str,
        issued: Issued,
    ) -> PodIdentityAgent {
        let state = Arc::new(Mutex::new(AgentState {
            expected_token: expected_token.to_string(),
            issued: Some(issued),
            ..AgentState::default()
        }));
        let app = axum::Router::new()
            .route("/v1/credentials", get(credentials))
            .with_state(Arc::clone(&state));
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PodIdentityAgent {
            address,
            state,
            task,
        }
    }

    /// The environment EKS gives a pod, pointing at this agent and `token_file`.
    pub fn pod_env(&self, token_file: &Path) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{}/v1/credentials", self.address),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ]
    }

    pub fn issue(&self, issued: Issued) {
        self.state.lock().unwrap().issued = Some(issued);
    }

    pub fn expect_token(&self, token: &str) {
        self.state.lock().unwrap().expected_token = token.to_string();
    }

    pub fn fail(&self, failing: bool) {
        self.state.lock().unwrap().failing = failing;
    }

    /// Kills the agent: its port refuses connections from now on.
    pub async fn stop(mut self) -> SocketAddr {
        self.task.abort();
        // Cancelled: the listener and every connection are closed once it returns.
        let _ = (&mut self.task).await;
        self.address
    }

    pub fn seen_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().seen_tokens.clone()
    }
}

impl Drop for PodIdentityAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn credentials(State(state): State<Arc<Mutex<AgentState>>>, headers: HeaderMap) -> Response {
    let mut state = state.lock().unwrap();
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    state.seen_tokens.push(token.clone());
    if state.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "agent failure (test)").into_response();
    }
    if token.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "Service account token cannot be empty",
        )
            .into_response();
    }
    if token != state.expected_token {
        return (StatusCode::FORBIDDEN, "invalid service account token").into_response();
    }
    let Some(issued) = state.issued.clone() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let body = serde_json::json!({
        "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key,
        "Token": issued.token,
        "AccountId": "111122223333",
        "Expiration": rfc3339(issued.expiration),
    });
    axum::Json(body).into_response()
}

/// RFC 3339 in UTC, through the product's own calendar code.
fn rfc3339(time: SystemTime) -> String {
    let amz = lattice_xds::signer::time::AmzDate::new(time);
    let s = amz.as_str();
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
}

/// The botocore-based HTTPS upstream (`tests/peers/sigv4_upstream.py`).
pub struct VerifyingUpstream {
    pub process: Running,
    pub address: SocketAddr,
    pub ca_file: PathBuf,
}

impl VerifyingUpstream {
    /// Serves `hosts` with a certificate from a fresh CA, accepting the keys in `keys`.
    pub async fn start(
        dir: &Path,
        hosts: &[&str],
        keys: &HashMap<&str, &str>,
        region: &str,
    ) -> Self {
        Self::start_with(dir, hosts, keys, &serde_json::json!({}), region).await
    }

    /// The same, also accepting SigV4A signatures made with the keys whose public halves
    /// `public_keys` gives (`{access key id: {"X": hex, "Y": hex}}`).
    pub async fn start_with(
        dir: &Path,
        hosts: &[&str],
        keys: &HashMap<&str, &str>,
        public_keys: &serde_json::Value,
        region: &str,
    ) -> Self {
        let cert = ServerCert::write(dir, "verifier", hosts);
        let keys_file = dir.join("verifier-keys.json");
        std::fs::write(&keys_file, serde_json::to_string(keys).unwrap()).unwrap();
        let public_keys_file = dir.join("verifier-public-keys.json");
        std::fs::write(&public_keys_file, public_keys.to_string()).unwrap();
        let port = free_port();
        let mut command = Command::new(python::binary());
        command
            .arg(python::peer("sigv4_upstream.py"))
            .arg(port.to_string())
            .arg(&cert.cert_file)
            .arg(&cert.key_file)
            .arg(&keys_file)
            .arg(region)
            .arg("vpc-lattice-svcs")
            .arg(&public_keys_file)
            .stdin(Stdio::null());
        let process = Running::spawn(&mut command, &dir.join("verifier.log"));
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        eventually(
            "the verifying upstream to listen",
            Duration::from_secs(20),
            || async { tokio::net::TcpStream::connect(address).await.ok() },
        )
        .await;
        VerifyingUpstream {
            process,
            address,
            ca_file: cert.ca_file,
        }
    }
}
