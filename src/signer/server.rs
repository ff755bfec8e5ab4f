//! The signer process: its listeners, the credential refresher, and shutdown on a signal.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::credentials::{self, CredentialStore};
use super::metrics::Metrics;
use super::{Defaults, Signer, ext_proc, http};

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
}

impl SignerConfig {
    /// The signing listeners hand out signatures made with the pod's credentials; anything
    /// that can reach them can act as the pod.
    pub fn check_listeners(&self) -> anyhow::Result<()> {
        for (flag, address) in [
            ("--grpc-listen", self.grpc_listen),
            ("--http-listen", self.http_listen),
        ] {
            if !address.ip().is_loopback() && !self.allow_remote {
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
    let grpc_listener = bind(config.grpc_listen, "ext_proc").await?;
    let http_listener = bind(config.http_listen, "HTTP signing").await?;
    let admin_listener = match config.admin_listen {
        Some(address) => Some(bind(address, "admin").await?),
        None => None,
    };

    let metrics = Arc::new(Metrics::default());
    let store = CredentialStore::default();
    let shutdown = CancellationToken::new();
    let provider = default_chain(config.defaults.region.clone()).await;
    tokio::spawn(credentials::refresh(
        provider,
        store.clone(),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    let signer = Arc::new(Signer::new(
        config.defaults.clone(),
        store.clone(),
        Arc::clone(&metrics),
    ));

    let grpc = ext_proc::serve(grpc_listener, Arc::clone(&signer), shutdown.clone());
    let state = http::State {
        signer,
        metrics,
        credentials: store,
    };
    let http = http::serve(http_listener, state.clone(), true, shutdown.clone());
    let admin = async {
        match admin_listener {
            Some(listener) => http::serve(listener, state, false, shutdown.clone()).await,
            None => Ok(()),
        }
    };
    tracing::info!(
        grpc = %config.grpc_listen,
        http = %config.http_listen,
        admin = ?config.admin_listen,
        region = ?config.defaults.region,
        service = %config.defaults.service,
        algorithm = %config.defaults.algorithm,
        "signer started"
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::controller::wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    let (grpc, http, admin) = tokio::join!(grpc, http, admin);
    grpc.context("ext_proc server failed")?;
    http.context("HTTP signing server failed")?;
    admin.context("admin server failed")?;
    Ok(())
}

/// The AWS SDK's default credential chain.
async fn default_chain(region: Option<String>) -> SharedCredentialsProvider {
    let mut chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder();
    if let Some(region) = region {
        chain = chain.region(aws_config::Region::new(region));
    }
    SharedCredentialsProvider::new(chain.build().await)
}
