//! The controller process: the provider feeds the pipeline, the pipeline publishes snapshots,
//! and the ADS and admin servers serve them until SIGTERM or SIGINT.

mod pipeline;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, status::StatusService};
use crate::certificates::{self, CertificateSource, ServingCertificate};
use crate::connections::{ConnectionLimits, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::inject::{InjectConfig, webhook};
use crate::metrics::Metrics;
use crate::model::Settings;
use crate::provider::discovery::{self, DiscoverySettings, DiscoveryState};
use crate::provider::file;
use crate::provider::kubernetes::token_review::TokenReviews;
use crate::provider::kubernetes::{
    self, KubernetesConfig, ca_bundle, events, leader, proxy_events,
};
use crate::supervise::Tasks;
use crate::trust::fetch::{self as trust, TrustSettings, TrustState};
use crate::xds::auth::{Authenticate, Open};
use crate::xds::events::{Callbacks, Fanout};
use crate::xds::limits::Limits;
use crate::xds::registry::Registry;
use crate::xds::server::AdsServer;

/// Where the Gateway API objects come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A directory of manifests, watched for changes (the embedded default).
    Manifests(PathBuf),
    /// The Kubernetes API server.
    Kubernetes(KubernetesConfig),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Manifests(dir) => write!(f, "manifests {}", dir.display()),
            Self::Kubernetes(_) => write!(f, "kubernetes"),
        }
    }
}

/// The sidecar injection webhook.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub certificate: CertificateSource,
    pub inject: InjectConfig,
    pub connections: ConnectionLimits,
}

/// How ADS streams authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XdsAuth {
    /// Anyone who reaches the port is served.
    None,
    /// Each stream carries a pod's projected service account token for `audience`.
    Kubernetes { audience: String },
}

/// Everything `lattice-xds controller` needs, parsed from flags and environment.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub source: Source,
    pub webhook: Option<WebhookConfig>,
    /// Where the ADS server's TLS certificate comes from; `None` serves plain text.
    pub xds_tls: Option<CertificateSource>,
    /// A ConfigMap (in the lease namespace) the leader keeps holding the ADS certificate's CA.
    pub xds_ca_config_map: Option<String>,
    pub xds_auth: XdsAuth,
    pub xds_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` alone are served, when given.
    pub probe_listen: Option<SocketAddr>,
    pub settings: Settings,
    /// Private CAs to fetch from ACM PCA.
    pub trust: TrustSettings,
    /// Where to discover VPC Lattice services (off unless a VPC or service network is given).
    pub discovery: DiscoverySettings,
    /// How long input changes settle before a rebuild.
    pub debounce: Duration,
    /// What one ADS stream may ask of the controller.
    pub xds_limits: Limits,
    /// The connections the ADS listener takes.
    pub xds_connections: ConnectionLimits,
    /// The connections every other listener (webhook, admin, probes) takes.
    pub connections: ConnectionLimits,
}

/// How long connections may take to close after a termination signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Connections waiting to be accepted on the xDS port. When the controller restarts, every
/// sidecar of the cluster reconnects at once; the kernel caps this at `net.core.somaxconn`.
const XDS_BACKLOG: u32 = 4096;

/// The xDS listener, with room for a whole fleet reconnecting at once (the default backlog of
/// 1,024 drops connection attempts of larger fleets, which then wait seconds to retry).
fn listen_for_sidecars(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(XDS_BACKLOG)
}

/// Runs the controller until a termination signal; streams are closed cleanly on the way out.
pub async fn run(config: ControllerConfig) -> anyhow::Result<()> {
    crate::memory::return_large_blocks();
    let xds_listener = listen_for_sidecars(config.xds_listen)
        .with_context(|| format!("cannot listen for xDS on {}", config.xds_listen))?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen for admin on {}", config.admin_listen))?;
    let probe_listener = match config.probe_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen for probes on {address}"))?,
        ),
        None => None,
    };
    if !config.admin_listen.ip().is_loopback() {
        tracing::warn!(admin = %config.admin_listen, "the admin listener is not on loopback: whoever reaches it can read every proxy's configuration (--probe-listen serves only health and metrics)");
    }

    let metrics = Arc::new(Metrics::default());
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let (observed_tx, observed_rx) = watch::channel(None);
    let (snapshot_tx, snapshot_rx) = watch::channel(None);

    let pipeline = pipeline::Pipeline::new(
        config.settings.clone(),
        Arc::clone(&metrics),
        config.debounce,
    );
    let meshes = pipeline.meshes();
    // The Kubernetes source's settings and its client, made once for every task that needs it.
    let cluster = match &config.source {
        Source::Kubernetes(kube) => Some((kube, kubernetes::client(kube).await?)),
        Source::Manifests(_) => None,
    };
    let client = cluster.as_ref().map(|(_, client)| client.clone());
    let mut tasks = Tasks::default();
    let xds_certificate = match &config.xds_tls {
        Some(source) => {
            let kept = xds_certificate(source, client.clone(), &metrics, &shutdown, &mut tasks);
            Some(kept.await?)
        }
        None => None,
    };
    let authenticator: Arc<dyn Authenticate> = match (&config.xds_auth, &client) {
        (XdsAuth::None, _) => {
            if !config.xds_listen.ip().is_loopback() {
                tracing::warn!(xds = %config.xds_listen, "ADS streams are not authenticated (--xds-auth none): anyone who reaches this address can read the configuration of every sidecar under any node id");
            }
            Arc::new(Open)
        }
        (XdsAuth::Kubernetes { audience }, Some(client)) => Arc::new(TokenReviews::new(
            client.clone(),
            audience.clone(),
            Arc::clone(&metrics),
        )),
        (XdsAuth::Kubernetes { .. }, None) => {
            anyhow::bail!("--xds-auth kubernetes needs --kubernetes")
        }
    };
    // `cluster` is there exactly when the source is Kubernetes.
    if let Some((kube, client)) = &cluster {
        let client = client.clone();
        let (stores_tx, stores_rx) = watch::channel(None);
        let (leader_tx, leader_rx) = watch::channel(false);
        tasks.spawn(
            "leader",
            leader::run(
                client.clone(),
                kube.lease.clone(),
                kube.instance.clone(),
                leader_tx,
                Arc::clone(&metrics),
                shutdown.clone(),
            ),
        );
        tasks.spawn(
            "events",
            events::run(
                client.clone(),
                kube.instance.clone(),
                pipeline.reports(),
                stores_rx,
                leader_rx.clone(),
                Arc::clone(&metrics),
                shutdown.clone(),
            ),
        );
        // An Event names a pod: only a stream that proved it is that pod may have one written.
        if matches!(config.xds_auth, XdsAuth::None) {
            tracing::info!(
                "no Events on pods for rejected configurations: they need authenticated streams (--xds-auth kubernetes)"
            );
        } else {
            tasks.spawn(
                "proxy-events",
                proxy_events::run(
                    client.clone(),
                    kube.instance.clone(),
                    Arc::clone(&registry),
                    Arc::clone(&metrics),
                    shutdown.clone(),
                ),
            );
        }
        tasks.spawn(
            "ca-bundle",
            ca_bundle::run(
                client.clone(),
                kube.ca_bundle_namespaces.clone(),
                pipeline.ca_bundle(),
                leader_rx.clone(),
                Arc::clone(&metrics),
                shutdown.clone(),
            ),
        );
        if let (Some(name), Some(certificate)) = (&config.xds_ca_config_map, &xds_certificate) {
            tasks.spawn(
                "xds-ca-configmap",
                ca_bundle::publish_xds_ca(
                    client.clone(),
                    kube.lease.namespace.clone(),
                    name.clone(),
                    Arc::clone(certificate),
                    leader_rx.clone(),
                    Arc::clone(&metrics),
                    shutdown.clone(),
                ),
            );
        }
        if let Some(config) = &config.webhook {
            let xds_ca = xds_certificate.clone();
            start_webhook(
                config,
                client.clone(),
                xds_ca,
                leader_rx,
                &metrics,
                &shutdown,
                &mut tasks,
            )
            .await?;
        }
        let metrics = Arc::clone(&metrics);
        tasks.spawn("provider", async move {
            kubernetes::watch(client, observed_tx, stores_tx, metrics)
                .await
                .map_err(anyhow::Error::from)
        });
    } else if let Source::Manifests(dir) = &config.source {
        let dir = dir.clone();
        tasks.spawn("provider", async move {
            file::watch(dir, observed_tx)
                .await
                .map_err(anyhow::Error::from)
        });
    }
    let (discovery_tx, discovery_rx) = watch::channel(DiscoveryState::default());
    tasks.spawn(
        "discovery",
        discovery::run(
            config.discovery.clone(),
            discovery_tx,
            Arc::clone(&metrics),
            shutdown.clone(),
        ),
    );
    let (trust_tx, trust_rx) = watch::channel(TrustState::new(&config.trust));
    tasks.spawn(
        "trust",
        trust::run(
            config.trust.clone(),
            trust_tx,
            Arc::clone(&metrics),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "pipeline",
        pipeline.run(observed_rx, trust_rx.clone(), discovery_rx, snapshot_tx),
    );

    let callbacks = Fanout(vec![
        Arc::clone(&registry) as Arc<dyn Callbacks>,
        Arc::clone(&metrics) as Arc<dyn Callbacks>,
    ]);
    let ads = AdsServer::new(
        snapshot_rx.clone(),
        Arc::new(callbacks),
        shutdown.clone(),
        config.xds_limits.clone(),
        authenticator,
    );
    let xds_server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(KEEPALIVE_INTERVAL))
        .max_concurrent_streams(Some(config.xds_connections.max_streams))
        .add_service(crate::xds::AdsService::new(ads));
    let stopped = shutdown.clone().cancelled_owned();
    let xds = match &xds_certificate {
        Some(serving) => {
            let incoming = crate::https::grpc_incoming(
                xds_listener,
                serving.clone(),
                config.xds_connections,
                shutdown.clone(),
            )?;
            xds_server
                .serve_with_incoming_shutdown(incoming, stopped)
                .boxed()
        }
        None => {
            let incoming = crate::https::plain_grpc_incoming(
                xds_listener,
                config.xds_connections,
                shutdown.clone(),
            );
            xds_server
                .serve_with_incoming_shutdown(incoming, stopped)
                .boxed()
        }
    };
    let status = StatusService::new(
        registry,
        Arc::clone(&metrics),
        snapshot_rx,
        meshes,
        trust_rx,
    );
    let unready = status.unready();
    let probes = match probe_listener {
        Some(listener) => admin::serve_probes(
            listener,
            status.clone(),
            config.connections,
            shutdown.clone(),
        )
        .boxed(),
        None => async { Ok(()) }.boxed(),
    };
    let admin = admin::serve(admin_listener, status, config.connections, shutdown.clone());
    tracing::info!(
        xds = %config.xds_listen,
        xds_tls = xds_certificate.is_some(),
        xds_auth = ?config.xds_auth,
        admin = %config.admin_listen,
        probes = ?config.probe_listen,
        source = %config.source,
        "controller started"
    );

    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::supervise::wait_for_signal().await;
        tracing::info!("shutting down: closing ADS streams");
        stop.cancel();
    });
    // A task that stops takes the whole process down: unready at once, streams closed, and a
    // non-zero exit for Kubernetes to restart it.
    let supervised = async {
        tokio::select! {
            // Tasks end after a shutdown too; only an end before it is a failure.
            biased;
            () = shutdown.cancelled() => {}
            stopped = tasks.stopped() => {
                tracing::error!(task = stopped.task, reason = %stopped.reason, "a controller task stopped; shutting down so that the pod is restarted");
                let _ = unready.set(stopped.to_string());
                shutdown.cancel();
            }
        }
    };
    let served = async { tokio::join!(xds, admin, probes, supervised) };
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        (xds, admin, probes, ()) = served => {
            xds.context("xDS server failed")?;
            admin.context("admin server failed")?;
            probes.context("probe server failed")?;
        }
        () = grace => {
            tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after shutdown; exiting anyway");
        }
    }
    match unready.get() {
        Some(failure) => anyhow::bail!("{failure}"),
        None => Ok(()),
    }
}

/// How long the controller waits for its first ADS certificate before giving up.
const CERTIFICATE_WAIT: Duration = Duration::from_secs(60);

/// The ADS server's certificate, kept current from `source` by a supervised task (a rotation
/// that fails or panics later stops the process, like any other task). Serving waits for the
/// first one: a controller that cannot get it exits with the reason instead of failing every
/// handshake.
async fn xds_certificate(
    source: &CertificateSource,
    client: Option<kube::Client>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
) -> anyhow::Result<Arc<ServingCertificate>> {
    let serving = Arc::new(ServingCertificate::default());
    let (_, not_leading) = watch::channel(false);
    tasks.spawn(
        "xds-certificate",
        certificates::run(
            source.clone(),
            client,
            Arc::clone(&serving),
            not_leading,
            Arc::clone(metrics),
            shutdown.clone(),
        ),
    );
    tokio::select! {
        () = serving.loaded() => {}
        stopped = tasks.stopped() => {
            anyhow::bail!("cannot get the xDS serving certificate: {stopped}");
        }
        () = tokio::time::sleep(CERTIFICATE_WAIT) => {
            anyhow::bail!("no xDS serving certificate after {CERTIFICATE_WAIT:?} (see the errors above)");
        }
    }
    Ok(serving)
}

/// Binds the injection webhook and keeps its certificate current; serving starts once a
/// certificate is in place.
async fn start_webhook(
    config: &WebhookConfig,
    client: kube::Client,
    xds_ca: Option<Arc<ServingCertificate>>,
    leader: watch::Receiver<bool>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    tasks: &mut Tasks,
) -> anyhow::Result<()> {
    let listener = webhook::bind(config.listen).await?;
    let serving = Arc::new(ServingCertificate::default());
    tasks.spawn(
        "webhook-certificate",
        certificates::run(
            config.certificate.clone(),
            Some(client),
            Arc::clone(&serving),
            leader,
            Arc::clone(metrics),
            shutdown.clone(),
        ),
    );
    let inject = config.inject.clone();
    let limits = config.connections;
    let metrics = Arc::clone(metrics);
    let shutdown = shutdown.clone();
    // Serving starts once a certificate is in place.
    tasks.spawn("webhook", async move {
        serving.loaded().await;
        webhook::serve(listener, serving, inject, xds_ca, limits, metrics, shutdown).await
    });
    tracing::info!(listen = %config.listen, "injection webhook started");
    Ok(())
}
