//! An HTTPS server standing in for a VPC Lattice service: a certificate for the given host
//! names signed by a CA made in the test, and a record of the SNI of every connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
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
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    /// Serves `200 hello from <sni>` for each request, with a certificate for `hosts`.
    pub async fn start(dir: &Path, hosts: &[&str]) -> TlsUpstream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let files = ServerCert::write(dir, "upstream", hosts);
        let cert = files.cert_der;
        let key = files.key_der;
        let ca_file = files.ca_file;
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let address = listener.local_addr().expect("address");
        let server_names = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&server_names);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
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
                    serve(&mut tls, &sni).await;
                });
            }
        });
        TlsUpstream {
            address,
            ca_file,
            server_names,
            task,
        }
    }

    pub fn server_names(&self) -> Vec<String> {
        self.server_names.lock().unwrap().clone()
    }
}

/// Answers every request on the connection until the client closes it.
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S, sni: &str) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
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
        buffer.drain(..end);
        let body = format!("hello from {sni}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
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
