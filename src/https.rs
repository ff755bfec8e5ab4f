//! HTTPS serving for the webhook and the Lattice emulator: TLS from rustls with a certificate
//! resolver (so certificates can change while serving), HTTP/1.1 and HTTP/2 from hyper, and an
//! axum router.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Serves `app` over TLS on `listener` until `shutdown`; each connection on its own task.
pub async fn serve(
    listener: TcpListener,
    certificates: Arc<dyn ResolvesServerCert>,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS configuration")?
    .with_no_client_auth()
    .with_cert_resolver(certificates);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
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

/// The serving certificate the TLS listener presents, swapped in place on rotation.
#[derive(Debug)]
pub struct ServingCertificate {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    loaded: watch::Sender<bool>,
}

impl Default for ServingCertificate {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
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
        *self.current.write().expect("lock") = Some(Arc::new(CertifiedKey::new(chain, key)));
        self.loaded.send_replace(true);
        Ok(())
    }

    /// Resolves once a certificate is in place.
    pub async fn loaded(&self) {
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = self.loaded.subscribe().wait_for(|loaded| *loaded).await;
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().expect("lock").clone()
    }
}
