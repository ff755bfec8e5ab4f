//! TLS serving for the webhook, the Lattice emulator and the xDS server: rustls with a
//! certificate resolver (so certificates can change while serving); HTTP/1.1 and HTTP/2 from
//! hyper with an axum router, or a stream of TLS connections for tonic.

use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
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

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once on the gRPC listener; more connections wait in the
/// listen backlog.
const MAX_HANDSHAKES: usize = 1024;

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

/// Serves `app` over TLS on `listener` until `shutdown`; each connection on its own task.
pub async fn serve(
    listener: TcpListener,
    certificates: Arc<dyn ResolvesServerCert>,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let acceptor = acceptor(certificates, &[b"h2", b"http/1.1"])?;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted.context("the HTTPS listener failed")?,
            () = shutdown.cancelled() => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(error) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
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

/// The HTTP/2 connections that complete a TLS handshake on `listener`, for a gRPC server.
/// Handshakes run on their own tasks, so a client that stalls in one delays no one else; a
/// plain-text or failed handshake is logged and dropped. Ends at `shutdown`.
pub fn grpc_incoming(
    listener: TcpListener,
    certificates: Arc<dyn ResolvesServerCert>,
    shutdown: CancellationToken,
) -> anyhow::Result<ReceiverStream<std::io::Result<TlsConnection>>> {
    let acceptor = acceptor(certificates, &[b"h2"])?;
    let (connections, incoming) = mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait, then accept again.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
                () = connections.closed() => return,
            };
            // xDS is a few small messages at a time: Nagle's algorithm would only delay them.
            let _ = stream.set_nodelay(true);
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = connections.send(Ok(TlsConnection(stream))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(ReceiverStream::new(incoming))
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
