//! The signer process: its listeners, the credential refresher, and shutdown on a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::credentials::{self, CredentialStore};
use super::metrics::Metrics;
use super::socket::PeerListener;
use super::{Defaults, Signer, ext_proc, http};
use crate::supervise::Tasks;

/// Everything `lattice-xds signer` needs, parsed from flags and environment.
#[derive(Clone, Debug)]
pub struct SignerConfig {
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are also served, for probes and scrapers
    /// outside the pod. They are always served on `http_listen` too.
    pub admin_listen: Option<SocketAddr>,
    pub defaults: Defaults,
    /// Allow the signing listeners on non-loopback addresses.
    pub allow_remote: bool,
    /// Serve ext_proc on this Unix socket instead of `grpc_listen`.
    pub grpc_socket: Option<PathBuf>,
    /// Serve `POST /v1/sign` (and health) on this Unix socket instead of `http_listen`.
    pub http_socket: Option<PathBuf>,
    /// The only uid served on the sockets (the proxy's).
    pub socket_peer_uid: u32,
}

impl SignerConfig {
    /// The signing listeners hand out signatures made with the pod's credentials; anything
    /// that can reach them can act as the pod.
    pub fn check_listeners(&self) -> anyhow::Result<()> {
        for (flag, address, on_socket) in [
            (
                "--grpc-listen",
                self.grpc_listen,
                self.grpc_socket.is_some(),
            ),
            (
                "--http-listen",
                self.http_listen,
                self.http_socket.is_some(),
            ),
        ] {
            if !on_socket && !address.ip().is_loopback() && !self.allow_remote {
                anyhow::bail!(
                    "refusing to listen on {address} ({flag}): the signer signs with this pod's \
                     AWS credentials, so it listens on loopback only; pass --allow-remote to \
                     override"
                );
            }
        }
        Ok(())
    }
}

/// Runs the signer until a termination signal.
pub async fn run(config: SignerConfig) -> anyhow::Result<()> {
    config.check_listeners()?;
    let bind = |address: SocketAddr, what: &'static str| async move {
        TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for {what} on {address}"))
    };
    let metrics = Arc::new(Metrics::default());
    let uid = config.socket_peer_uid;
    let grpc_listener = match &config.grpc_socket {
        Some(path) => Signing::Unix(PeerListener::bind(path, uid, Arc::clone(&metrics))?),
        None => Signing::Tcp(bind(config.grpc_listen, "ext_proc").await?),
    };
    let http_listener = match &config.http_socket {
        Some(path) => Signing::Unix(PeerListener::bind(path, uid, Arc::clone(&metrics))?),
        None => Signing::Tcp(bind(config.http_listen, "HTTP signing").await?),
    };
    let admin_listener = match config.admin_listen {
        Some(address) => Some(bind(address, "admin").await?),
        None => None,
    };

    let store = CredentialStore::default();
    let shutdown = CancellationToken::new();
    let provider = default_chain(config.defaults.region.clone()).await;
    let mut tasks = Tasks::default();
    tasks.spawn(
        "credentials",
        credentials::refresh(
            provider,
            store.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        ),
    );
    let signer = Arc::new(Signer::new(
        config.defaults.clone(),
        store.clone(),
        Arc::clone(&metrics),
    ));

    match grpc_listener {
        Signing::Tcp(listener) => tasks.spawn(
            "ext_proc",
            ext_proc::serve(listener, Arc::clone(&signer), shutdown.clone()),
        ),
        Signing::Unix(listener) => tasks.spawn(
            "ext_proc",
            ext_proc::serve_unix(listener, Arc::clone(&signer), shutdown.clone()),
        ),
    }
    let unready: Arc<std::sync::OnceLock<String>> = Arc::default();
    let state = http::State {
        signer,
        metrics,
        credentials: store,
        unready: Arc::clone(&unready),
    };
    match http_listener {
        Signing::Tcp(listener) => tasks.spawn(
            "http",
            http::serve(listener, state.clone(), true, shutdown.clone()),
        ),
        Signing::Unix(listener) => tasks.spawn(
            "http",
            http::serve_on(listener, state.clone(), true, shutdown.clone()),
        ),
    }
    if let Some(listener) = admin_listener {
        tasks.spawn(
            "admin",
            http::serve(listener, state, false, shutdown.clone()),
        );
    }
    let described = |socket: &Option<PathBuf>, address: SocketAddr| match socket {
        Some(path) => format!("unix:{} (uid {uid} only)", path.display()),
        None => address.to_string(),
    };
    tracing::info!(
        grpc = %described(&config.grpc_socket, config.grpc_listen),
        http = %described(&config.http_socket, config.http_listen),
        admin = ?config.admin_listen,
        region = ?config.defaults.region,
        service = %config.defaults.service,
        algorithm = %config.defaults.algorithm,
        "signer started"
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::supervise::wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    // A task that stops takes the signer down: unready at once, and a non-zero exit for the
    // kubelet to restart the sidecar (Envoy answers 503 meanwhile, never sends unsigned).
    let stopped = tokio::select! {
        // Tasks end after a shutdown too; only an end before it is a failure.
        biased;
        () = shutdown.cancelled() => None,
        stopped = tasks.stopped() => Some(stopped),
    };
    if let Some(stopped) = &stopped {
        tracing::error!(task = stopped.task, reason = %stopped.reason, "a signer task stopped; exiting so that the sidecar is restarted");
        let _ = unready.set(stopped.to_string());
        shutdown.cancel();
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.ended())
        .await
        .is_err()
    {
        tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after shutdown; exiting anyway");
    }
    match stopped {
        Some(stopped) => Err(stopped.into()),
        None => Ok(()),
    }
}

/// How long connections may take to close after a termination signal or a failure.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a signing server listens.
enum Signing {
    Tcp(TcpListener),
    Unix(PeerListener),
}

/// The AWS SDK's default credential chain.
pub async fn default_chain(region: Option<String>) -> SharedCredentialsProvider {
    let http = aws_config::provider_config::ProviderConfig::default()
        .with_http_client(crate::aws::https_client());
    let mut chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .configure(http);
    if let Some(region) = region {
        chain = chain.region(aws_config::Region::new(region));
    }
    SharedCredentialsProvider::new(chain.build().await)
}
