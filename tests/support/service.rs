//! A Kubernetes Service in front of controller replicas, as kube-proxy makes one: one address,
//! and each new connection goes to one of the ready endpoints in turn. The test changes the
//! endpoints as the endpoints controller would when a pod becomes ready or goes away. A
//! connection to an endpoint that refuses is closed, as the kernel would close it; the client
//! retries. Established connections are left alone when their endpoint is removed, as conntrack
//! leaves them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Service {
    pub port: u16,
    endpoints: Arc<Mutex<Vec<u16>>>,
    accept: JoinHandle<()>,
}

impl Service {
    /// Listens on a free loopback port, forwarding to `endpoints` (loopback ports).
    pub async fn start(endpoints: &[u16]) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Mutex::new(endpoints.to_vec()));
        let chosen = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            let turn = AtomicUsize::new(0);
            while let Ok((client, _)) = listener.accept().await {
                let endpoint = {
                    let endpoints = chosen.lock().expect("endpoints");
                    if endpoints.is_empty() {
                        continue;
                    }
                    endpoints[turn.fetch_add(1, Ordering::Relaxed) % endpoints.len()]
                };
                tokio::spawn(forward(
                    client,
                    SocketAddr::from(([127, 0, 0, 1], endpoint)),
                ));
            }
        });
        Service {
            port,
            endpoints: shared,
            accept,
        }
    }

    /// The ready endpoints from now on.
    pub fn set_endpoints(&self, endpoints: &[u16]) {
        *self.endpoints.lock().expect("endpoints") = endpoints.to_vec();
    }
}

async fn forward(mut client: TcpStream, endpoint: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(endpoint).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

impl Drop for Service {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
