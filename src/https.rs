//! TLS serving for the webhook, the Lattice emulator and the xDS server: rustls with a
//! certificate resolver (so certificates can change while serving); HTTP/1.1 and HTTP/2 from
//! hyper with an axum router, or a stream of TLS connections for tonic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower::ServiceExt;

use crate::connections::{
    Accepted, ConnectionLimits, Gate, Guarded, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT,
};

/// A TLS acceptor presenting `certificates`, offering `alpn` protocols.
fn acceptor(
    certificates: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> anyhow::Result<TlsAcceptor> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS configuration")?
    .with_no_client_auth()
    .with_cert_resolver(certificates);
    tls.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

/// Serves `app` over TLS on `listener` until `shutdown`, within `limits`; each connection on
/// its own task.
pub async fn serve(
    listener: TcpListener,
    certificates: Arc<dyn ResolvesServerCert>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let keep = |stream| async move { Some(stream) };
    serve_diverting(listener, certificates, app, limits, shutdown, keep).await
}

/// As [`serve`], but `divert` sees each connection before its TLS handshake and may take it
/// (answering `None`), as a listener that relays some TLS connections untouched does.
pub async fn serve_diverting<D, F>(
    listener: TcpListener,
    certificates: Arc<dyn ResolvesServerCert>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    divert: D,
) -> anyhow::Result<()>
where
    D: Fn(TcpStream) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Option<TcpStream>> + Send,
{
    let acceptor = acceptor(certificates, &[b"h2", b"http/1.1"])?;
    let handshake = move |stream| {
        let (acceptor, divert) = (acceptor.clone(), divert.clone());
        async move {
            match divert(stream).await {
                Some(stream) => acceptor.accept(stream).await,
                None => Err(std::io::Error::other("relayed before the TLS handshake")),
            }
        }
    };
    serve_each(Gate::new(listener, limits), app, handshake, shutdown).await;
    Ok(())
}

/// Serves `app` in plain HTTP on `listener` until `shutdown`, within `limits`.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let handshake = |stream| async move { Ok(stream) };
    serve_each(Gate::new(listener, limits), app, handshake, shutdown).await;
    Ok(())
}

/// Serves `app` on every connection `gate` admits, once `handshake` has made it ready (within
/// the first-bytes deadline), each on its own task, until `shutdown`.
async fn serve_each<H, F, I>(gate: Gate, app: Router, handshake: H, shutdown: CancellationToken)
where
    H: Fn(TcpStream) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = std::io::Result<I>> + Send,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let gate = Arc::new(gate);
    while let Some(Accepted {
        stream,
        peer,
        place,
    }) = gate.accept(&shutdown).await
    {
        let (gate, app, handshake) = (Arc::clone(&gate), app.clone(), handshake.clone());
        tokio::spawn(async move {
            let Some(ready) = gate.within_deadline(&place, handshake(stream)).await else {
                return;
            };
            serve_connection(gate.guard(place, ready), app, gate.limits, peer).await;
        });
    }
}

/// An answer that is no answer: a response carrying it in its extensions resets its stream
/// before anything of it is sent (HTTP/1.1 closes the connection, HTTP/2 resets the stream), as
/// a peer that fails mid-request does.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("reset before the response, as the handler asked")]
pub struct ResetStream;

impl From<Infallible> for ResetStream {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// Serves `app` on one connection, HTTP/1.1 or HTTP/2: a request's headers within the
/// first-bytes deadline, keepalive pings on HTTP/2, and at most `limits.max_streams` streams.
async fn serve_connection<I>(io: I, app: Router, limits: ConnectionLimits, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answered = |result: Result<axum::response::Response, Infallible>| match result {
        Ok(response) if response.extensions().get::<ResetStream>().is_some() => Err(ResetStream),
        Ok(response) => Ok(response),
        Err(never) => match never {},
    };
    let app = ServiceExt::<http::Request<hyper::body::Incoming>>::map_result(app, answered);
    let service = TowerToHyperService::new(app);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.first_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(limits.max_streams);
    if let Err(error) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// A TLS connection accepted for a gRPC server.
pub struct TlsConnection(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// The HTTP/2 connections that complete a TLS handshake on `listener`, for a gRPC server,
/// within `limits`. Handshakes run on their own tasks, so a client that stalls in one delays no
/// one else; a plain-text or failed handshake is logged and dropped. Ends at `shutdown`.
pub fn grpc_incoming(
    listener: TcpListener,
    certificates: Arc<dyn ResolvesServerCert>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<ReceiverStream<std::io::Result<Guarded<TlsConnection>>>> {
    let acceptor = acceptor(certificates, &[b"h2"])?;
    let (connections, incoming) = mpsc::channel(64);
    let gate = Arc::new(Gate::new(listener, limits));
    tokio::spawn(async move {
        while let Some(Accepted { stream, place, .. }) = gate.accept(&shutdown).await {
            let (gate, acceptor, connections) =
                (Arc::clone(&gate), acceptor.clone(), connections.clone());
            tokio::spawn(async move {
                if let Some(tls) = gate.within_deadline(&place, acceptor.accept(stream)).await {
                    let connection = gate.guard(place, TlsConnection(tls));
                    let _ = connections.send(Ok(connection)).await;
                }
            });
        }
    });
    Ok(ReceiverStream::new(incoming))
}

/// The plain-text connections on `listener`, for a gRPC server, within `limits`.
pub fn plain_grpc_incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> ReceiverStream<std::io::Result<Guarded<TcpStream>>> {
    let (connections, incoming) = mpsc::channel(64);
    let gate = Gate::new(listener, limits);
    tokio::spawn(async move {
        while let Some(Accepted { stream, place, .. }) = gate.accept(&shutdown).await {
            if connections
                .send(Ok(gate.guard(place, stream)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    ReceiverStream::new(incoming)
}

/// The serving certificate the TLS listener presents, swapped in place on rotation.
#[derive(Debug)]
pub struct ServingCertificate {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// The CA that issued it, PEM, when known: what clients are told to trust.
    ca: RwLock<Option<String>>,
    loaded: watch::Sender<bool>,
}

impl Default for ServingCertificate {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
            ca: RwLock::default(),
            loaded: watch::Sender::new(false),
        }
    }
}

impl ServingCertificate {
    /// Replaces the certificate from PEM chain and key.
    pub fn set_pem(&self, chain_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        let chain: Vec<_> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("the certificate is not PEM")?;
        anyhow::ensure!(
            !chain.is_empty(),
            "the certificate file holds no certificate"
        );
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .context("the key is not a PEM private key")?;
        let key = rustls::crypto::ring::sign::any_supported_type(&key)
            .context("the key type is not supported")?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::new(CertifiedKey::new(chain, key)));
        self.loaded.send_replace(true);
        Ok(())
    }

    /// Records the CA that issued the certificate (PEM).
    pub fn set_ca_pem(&self, ca_pem: &str) {
        *self.ca.write().unwrap_or_else(PoisonError::into_inner) = Some(ca_pem.to_string());
    }

    /// The issuing CA (PEM), once known.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Resolves once a certificate is in place.
    pub async fn loaded(&self) {
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = self.loaded.subscribe().wait_for(|loaded| *loaded).await;
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A TLS client configuration for HTTP/2: trusting `ca_pem`, or, without one, any certificate
/// (for a check that sends no credential and only asks whether a server answers).
pub fn client_config(ca_pem: Option<&str>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS configuration")?;
    let mut config = match ca_pem {
        Some(ca_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                roots
                    .add(certificate.context("the CA is not PEM")?)
                    .context("the CA certificate is not usable")?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts any server certificate, still checking that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
