//! Bounds on the connections each listener of the controller takes, so that clients that
//! connect and say nothing, or connect by the thousand, cannot hold its sockets, tasks or
//! memory: at most `max_connections` at once (more wait in the listen backlog until one
//! closes), and a deadline by which a new connection must have finished its TLS handshake and
//! sent the first bytes of a request (the HTTP/2 preface, an HTTP/1.1 request line). After
//! that, HTTP/2 keepalive pings find peers that went away, and the number of concurrent
//! streams on one connection is capped by the server that speaks on it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// How often an idle HTTP/2 connection is pinged (as istiod does), and how long the answer
/// may take before the connection is closed; the same for every listener.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Streams (HTTP/2) one connection may have open at once.
    pub max_streams: u32,
    /// How long a new connection may take to finish its TLS handshake and send its first bytes.
    pub first_bytes: Duration,
}

impl ConnectionLimits {
    /// For the listeners that serve a handful of clients: probes, metrics, the webhook.
    pub const SMALL: ConnectionLimits = ConnectionLimits {
        max_connections: 1024,
        max_streams: 100,
        first_bytes: Duration::from_secs(10),
    };
}

/// Accepts connections on a listener while it has room for them.
pub struct Gate {
    listener: TcpListener,
    places: Arc<Semaphore>,
    pub limits: ConnectionLimits,
}

/// A connection just accepted, with its place among the listener's connections.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub place: Place,
}

/// A connection's place on its listener, given back when the connection closes, and when it
/// was accepted (its first-bytes deadline counts from then, handshake included).
pub struct Place {
    _held: OwnedSemaphorePermit,
    accepted: Instant,
}

impl Gate {
    pub fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        Self {
            listener,
            places: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }

    /// The next connection once a place is free; `None` at `shutdown`. A failed accept (out of
    /// file descriptors and the like) is logged and tried again shortly.
    pub async fn accept(&self, shutdown: &CancellationToken) -> Option<Accepted> {
        let place = tokio::select! {
            place = Arc::clone(&self.places).acquire_owned() => place.ok()?,
            () = shutdown.cancelled() => return None,
        };
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = shutdown.cancelled() => return None,
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Requests and answers are small and interactive: no Nagle delay.
                    let _ = stream.set_nodelay(true);
                    return Some(Accepted {
                        stream,
                        peer,
                        place: Place {
                            _held: place,
                            accepted: Instant::now(),
                        },
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Runs `handshake` on the connection holding `place` within its first-bytes deadline.
    pub async fn within_deadline<F, T>(&self, place: &Place, handshake: F) -> Option<T>
    where
        F: Future<Output = io::Result<T>>,
    {
        let deadline = place.accepted + self.limits.first_bytes;
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(done)) => Some(done),
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                None
            }
        }
    }

    /// `stream` (a connection, or its TLS session) holding `place`, failing its first read when
    /// nothing has arrived by the first-bytes deadline.
    pub fn guard<S>(&self, place: Place, stream: S) -> Guarded<S> {
        let deadline = place.accepted + self.limits.first_bytes;
        Guarded {
            inner: stream,
            _place: place,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
}

/// A connection that holds its listener's place until it closes, and whose first read fails
/// with `TimedOut` if no byte has arrived by the deadline.
pub struct Guarded<S> {
    inner: S,
    _place: Place,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.deadline = None,
            Poll::Pending => {
                if let Some(deadline) = self.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request before the connection's deadline",
                    )));
                }
            }
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
