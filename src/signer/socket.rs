//! Signing over a Unix socket that serves one uid: Envoy's. A loopback port can be reached by
//! every process in the pod's network namespace; a socket's peer is known (`SO_PEERCRED`), so a
//! connection from any other uid is closed before a byte is read, logged and counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures::Stream;
use tokio::net::{UnixListener, UnixStream};

use super::metrics::Metrics;

/// A Unix socket listener that hands out only connections from `uid`.
pub struct PeerListener {
    listener: UnixListener,
    path: PathBuf,
    uid: u32,
    metrics: Arc<Metrics>,
}

impl PeerListener {
    /// Binds `path`, replacing a socket left by an earlier run. The file is open to everyone:
    /// the peer's uid, not the file mode, decides who is served, so Envoy needs no shared group.
    pub fn bind(path: &Path, uid: u32, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        if let Ok(existing) = std::fs::symlink_metadata(path) {
            anyhow::ensure!(
                existing.file_type().is_socket(),
                "{} exists and is not a socket",
                path.display()
            );
            std::fs::remove_file(path)
                .with_context(|| format!("cannot replace the old socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on the Unix socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .with_context(|| format!("cannot open {} to the proxy", path.display()))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            uid,
            metrics,
        })
    }

    /// The next connection from the allowed uid; others are closed and counted.
    async fn next(&self) -> UnixStream {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(socket = %self.path.display(), %error, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(peer) if peer.uid() == self.uid => return stream,
                Ok(peer) => {
                    tracing::warn!(socket = %self.path.display(), uid = peer.uid(), pid = ?peer.pid(), allowed = self.uid, "refused a connection from another uid");
                    self.metrics.refuse("peer_not_allowed");
                }
                Err(error) => {
                    tracing::warn!(socket = %self.path.display(), %error, "cannot tell who connected; refused");
                    self.metrics.refuse("peer_not_allowed");
                }
            }
        }
    }

    /// The allowed connections as a stream, for a tonic server.
    pub fn incoming(self) -> impl Stream<Item = std::io::Result<UnixStream>> + Send + 'static {
        futures::stream::unfold(self, |listener| async move {
            let stream = listener.next().await;
            Some((Ok(stream), listener))
        })
    }
}

impl axum::serve::Listener for PeerListener {
    type Io = UnixStream;
    type Addr = PathBuf;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        (self.next().await, self.path.clone())
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.path.clone())
    }
}
