//! An HTTPS server standing in for a VPC Lattice service: a certificate for the given host
//! names signed by a CA made in the test, and a record of the SNI of every connection and of
//! every request. It answers `200 hello from <sni>`, but for these paths:
//!
//! - `/status/<code>`: that status, every time;
//! - `/fail-first/<anything>`: 503 the first time the path is asked, 200 after;
//! - `/delay/<milliseconds>`: 200 after that long;
//!
//! and every request is answered 503 while it is told to fail.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A server certificate for some host names, signed by a CA made for it, written as PEM files.
pub struct ServerCert {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl ServerCert {
    /// Makes a CA and a certificate for `hosts`; files are named `<name>-ca.pem`, …
    pub fn write(dir: &Path, name: &str, hosts: &[&str]) -> ServerCert {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lattice-xds test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("server key");
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let cert = CertificateParams::new(names)
            .expect("server params")
            .signed_by(&key, &issuer)
            .expect("sign");
        let files = ServerCert {
            ca_file: dir.join(format!("{name}-ca.pem")),
            cert_file: dir.join(format!("{name}-cert.pem")),
            key_file: dir.join(format!("{name}-key.pem")),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        };
        std::fs::write(&files.ca_file, ca_cert.pem()).expect("write CA");
        std::fs::write(&files.cert_file, cert.pem()).expect("write certificate");
        std::fs::write(&files.key_file, key.serialize_pem()).expect("write key");
        files
    }
}

pub struct TlsUpstream {
    pub address: SocketAddr,
    /// The CA certificate (PEM file) that signed the server certificate.
    pub ca_file: PathBuf,
    /// The SNI of every TLS connection accepted so far.
    pub server_names: Arc<Mutex<Vec<String>>>,
    /// Every request so far: `METHOD /path`.
    pub requests: Arc<Mutex<Vec<String>>>,
    certificate: Arc<Swappable>,
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// The served certificate, replaceable while serving.
#[derive(Debug)]
struct Swappable {
    key: RwLock<Arc<CertifiedKey>>,
    /// Bumped on every replacement.
    generation: AtomicU64,
}

impl ResolvesServerCert for Swappable {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.key.read().unwrap()))
    }
}

fn certified_key(chain: Vec<CertificateDer<'static>>, key: Vec<u8>) -> Arc<CertifiedKey> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).expect("a supported key");
    Arc::new(CertifiedKey::new(chain, signing))
}

fn pem_chain(chain_pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificate chain")
}

impl TlsUpstream {
    /// Serves `200 hello from <sni>` for each request, with a certificate for `hosts`.
    pub async fn start(dir: &Path, hosts: &[&str]) -> TlsUpstream {
        let files = ServerCert::write(dir, "upstream", hosts);
        Self::serve(
            vec![CertificateDer::from(files.cert_der)],
            files.key_der,
            files.ca_file,
        )
        .await
    }

    /// The same with a given certificate chain (PEM, leaf first) and PKCS#8 key.
    pub async fn start_with(chain_pem: &str, key_der: Vec<u8>, ca_file: PathBuf) -> TlsUpstream {
        Self::serve(pem_chain(chain_pem), key_der, ca_file).await
    }

    /// Serves a new certificate from now on; open connections close after their current
    /// request, so that every later request makes a new TLS handshake.
    pub fn replace_certificate(&self, chain_pem: &str, key_der: Vec<u8>) {
        *self.certificate.key.write().unwrap() = certified_key(pem_chain(chain_pem), key_der);
        self.certificate.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Another address of the same service: the same certificate, on a port of its own, with
    /// its own record of requests.
    pub async fn beside(&self) -> TlsUpstream {
        Self::serve_certificate(Arc::clone(&self.certificate), self.ca_file.clone()).await
    }

    /// Answers every request 503 from now on (`true`), or as usual again (`false`).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    async fn serve(
        chain: Vec<CertificateDer<'static>>,
        key: Vec<u8>,
        ca_file: PathBuf,
    ) -> TlsUpstream {
        let certificate = Arc::new(Swappable {
            key: RwLock::new(certified_key(chain, key)),
            generation: AtomicU64::new(0),
        });
        Self::serve_certificate(certificate, ca_file).await
    }

    async fn serve_certificate(certificate: Arc<Swappable>, ca_file: PathBuf) -> TlsUpstream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let failing = Arc::new(AtomicBool::new(false));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let address = listener.local_addr().expect("address");
        let server_names = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&server_names);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::clone(&requests);
        let accepted_with = Arc::clone(&certificate);
        let failing_now = Arc::clone(&failing);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&seen);
                let asked = Arc::clone(&asked);
                let certificate = Arc::clone(&accepted_with);
                let failing = Arc::clone(&failing_now);
                tokio::spawn(async move {
                    let generation = certificate.generation.load(Ordering::SeqCst);
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let sni = tls
                        .get_ref()
                        .1
                        .server_name()
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push(sni.clone());
                    let current = || certificate.generation.load(Ordering::SeqCst) == generation;
                    serve(&mut tls, &sni, &asked, &failing, current).await;
                });
            }
        });
        TlsUpstream {
            address,
            ca_file,
            server_names,
            requests,
            certificate,
            failing,
            task,
        }
    }

    pub fn server_names(&self) -> Vec<String> {
        self.server_names.lock().unwrap().clone()
    }

    /// The controller flags of a sidecar whose pod calls `hosts` here, on its egress port:
    /// the manifests' routes, no signing, this upstream's CA, and the sidecar's own 404 for
    /// any other host.
    pub fn controller_args(
        &self,
        manifests: &Path,
        hosts: &[&str],
        egress_port: u16,
    ) -> Vec<String> {
        let mut args = vec![
            format!("--manifests={}", manifests.display()),
            "--signing=none".to_string(),
            "--unknown-hosts=deny".to_string(),
            format!("--ca-file={}", self.ca_file.display()),
            "--egress-address=127.0.0.1".to_string(),
            format!("--egress-port={egress_port}"),
        ];
        args.extend((hosts.iter()).map(|host| format!("--resolve={host}={}", self.address)));
        args
    }

    /// How many requests asked for `method path`.
    pub fn asked(&self, method: &str, path: &str) -> usize {
        let request = format!("{method} {path}");
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|asked| **asked == request).count()
    }
}

/// Answers every request on the connection until the client closes it, or `current` turns
/// false (the certificate was replaced).
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    sni: &str,
    requests: &Mutex<Vec<String>>,
    failing: &AtomicBool,
    current: impl Fn() -> bool,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while current() {
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buffer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(0)
            + 4;
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        let mut words = head.split_whitespace();
        let request = format!(
            "{} {}",
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default()
        );
        let path = request
            .split_once(' ')
            .map_or("", |(_, path)| path)
            .to_string();
        let asked_before = {
            let mut requests = requests.lock().unwrap();
            let before = requests.iter().filter(|asked| **asked == request).count();
            requests.push(request);
            before
        };
        let status = if failing.load(Ordering::SeqCst) {
            503
        } else if let Some(code) = path.strip_prefix("/status/") {
            code.parse().unwrap_or(400)
        } else if path.starts_with("/fail-first/") && asked_before == 0 {
            503
        } else {
            if let Some(millis) = path.strip_prefix("/delay/") {
                let millis = millis.parse().unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            }
            200
        };
        let body = format!("hello from {sni}\n");
        let response = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
