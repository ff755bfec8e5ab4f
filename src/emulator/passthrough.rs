//! TLS passthrough listeners: a connection whose TLS ClientHello names a TLS passthrough
//! service is relayed to the service's backend as it came, bytes untouched, so that the
//! backend terminates TLS with its own certificate. Lattice admits only anonymous callers on
//! such listeners, so nothing is authorized.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::rustls::server::Acceptor;

use super::Table;

/// A ClientHello larger than this is not looked into.
const MAX_HELLO: usize = 16 * 1024;
/// How long to wait between looks while a ClientHello is arriving.
const LOOK_AGAIN: Duration = Duration::from_millis(5);

/// `stream` back when it is for the terminating listener; `None` when a TLS passthrough service
/// took it.
pub(super) async fn divert(
    services: watch::Receiver<Arc<Table>>,
    stream: TcpStream,
) -> Option<TcpStream> {
    let Some(name) = server_name(&stream).await else {
        return Some(stream);
    };
    let service = services.borrow().get(&name).cloned();
    let service = match service {
        Some(service) if service.passthrough => service,
        _ => return Some(stream),
    };
    let Some(backend) = service.backend.clone() else {
        tracing::info!(%name, source = %service.source, "no backend for a TLS passthrough service (emulate-lattice --backend); closed");
        return None;
    };
    tokio::spawn(relay(stream, name, backend));
    None
}

/// The server name of the TLS ClientHello at the start of `stream`, read without consuming it;
/// `None` for what is not TLS or names no server.
async fn server_name(stream: &TcpStream) -> Option<String> {
    let mut buffer = vec![0u8; MAX_HELLO];
    let mut seen = 0;
    loop {
        let length = stream.peek(&mut buffer).await.ok()?;
        if length == 0 {
            return None;
        }
        let mut acceptor = Acceptor::default();
        let mut bytes = &buffer[..length];
        while !bytes.is_empty() {
            if acceptor.read_tls(&mut bytes).ok()? == 0 {
                break;
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return accepted.client_hello().server_name().map(str::to_string),
            Err(_) => return None,
            // Not all of it yet.
            Ok(None) if length == buffer.len() => return None,
            Ok(None) => {
                if length == seen {
                    tokio::time::sleep(LOOK_AGAIN).await;
                }
                seen = length;
            }
        }
    }
}

async fn relay(mut stream: TcpStream, name: String, backend: String) {
    let address = backend
        .split_once("://")
        .map_or(backend.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    match TcpStream::connect(address).await {
        Ok(mut upstream) => {
            tracing::info!(%name, %backend, "TLS passthrough");
            if let Err(error) = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await {
                tracing::debug!(%name, %error, "TLS passthrough connection ended with an error");
            }
        }
        Err(error) => {
            tracing::warn!(%name, %backend, %error, "the backend of a TLS passthrough service is unreachable");
        }
    }
}
