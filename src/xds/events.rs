//! What the serving layer reports of its streams, through one interface that the layers above
//! implement ([`Callbacks`]): the proxy registry keeps what each proxy holds and accepted, the
//! metrics count. The state machines only say what happened, to their stream's
//! [`StreamEvents`]; they know nothing of who listens. (go-control-plane's
//! `server.Callbacks`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use envoy_types::pb::envoy::config::core::v3::Node;

use super::auth::Identity;
use super::holdings::{Holdings, Names};

/// A stream's number, unique within the process.
pub type StreamId = u64;

/// A response as it left a stream.
#[derive(Clone, Copy, Debug)]
pub struct Sent<'a> {
    pub type_url: &'a str,
    pub version: &'a str,
    /// What the proxy holds of the type once it applies the response.
    pub holdings: &'a Holdings,
    /// The encoded response's size.
    pub bytes: usize,
    /// When the snapshot the response was made from was published.
    pub snapshot_created: Instant,
}

/// Whether the proxy accepting `acked` ends its rejection of `rejected`, `sent` being the last
/// version sent: a rejected version is never sent again, so accepting it or anything sent since
/// means the proxy runs a good configuration again.
pub fn ends_rejection(rejected: &str, sent: &str, acked: &str) -> bool {
    acked == rejected || acked == sent
}

/// Receives the events of every stream. Each method has an empty default, so that an
/// implementation names only what it uses. Called from the stream's task: keep them quick.
pub trait Callbacks: Send + Sync {
    /// A stream opened, authenticated as `identity` when streams authenticate. `protocol` is
    /// `"sotw"` or `"delta"`.
    fn connected(&self, _stream: StreamId, _protocol: &'static str, _identity: Option<&Identity>) {}

    /// The stream's first request named its node.
    fn identified(&self, _stream: StreamId, _node: &Node) {}

    /// The stream subscribed to `names` of a type (`None`: every resource of it).
    fn subscribed(&self, _stream: StreamId, _type_url: &str, _names: Option<Arc<Names>>) {}

    /// A response left the stream.
    fn sent(&self, _stream: StreamId, _sent: &Sent<'_>) {}

    /// The proxy accepted `version` of a type.
    fn acked(&self, _stream: StreamId, _type_url: &str, _version: &str) {}

    /// The proxy rejected `version` of a type with `error`.
    fn nacked(&self, _stream: StreamId, _type_url: &str, _version: &str, _error: &str) {}

    /// The server refused a stream or closed it, for `reason`; `None` when it never opened
    /// (its credentials were refused).
    fn refused(&self, _stream: Option<StreamId>, _reason: &str) {}

    /// The stream ended.
    fn disconnected(&self, _stream: StreamId) {}
}

/// Every event to each of several callbacks, in order.
pub struct Fanout(pub Vec<Arc<dyn Callbacks>>);

impl Callbacks for Fanout {
    fn connected(&self, stream: StreamId, protocol: &'static str, identity: Option<&Identity>) {
        self.0
            .iter()
            .for_each(|c| c.connected(stream, protocol, identity));
    }

    fn identified(&self, stream: StreamId, node: &Node) {
        self.0.iter().for_each(|c| c.identified(stream, node));
    }

    fn subscribed(&self, stream: StreamId, type_url: &str, names: Option<Arc<Names>>) {
        (self.0.iter()).for_each(|c| c.subscribed(stream, type_url, names.clone()));
    }

    fn sent(&self, stream: StreamId, sent: &Sent<'_>) {
        self.0.iter().for_each(|c| c.sent(stream, sent));
    }

    fn acked(&self, stream: StreamId, type_url: &str, version: &str) {
        self.0
            .iter()
            .for_each(|c| c.acked(stream, type_url, version));
    }

    fn nacked(&self, stream: StreamId, type_url: &str, version: &str, error: &str) {
        (self.0.iter()).for_each(|c| c.nacked(stream, type_url, version, error));
    }

    fn refused(&self, stream: Option<StreamId>, reason: &str) {
        self.0.iter().for_each(|c| c.refused(stream, reason));
    }

    fn disconnected(&self, stream: StreamId) {
        self.0.iter().for_each(|c| c.disconnected(stream));
    }
}

/// One stream's events, to the callbacks; its end is reported when it is dropped.
pub struct StreamEvents {
    id: StreamId,
    callbacks: Arc<dyn Callbacks>,
}

impl StreamEvents {
    /// Reports a new stream and returns its reporter.
    pub fn open(
        callbacks: Arc<dyn Callbacks>,
        protocol: &'static str,
        identity: Option<&Identity>,
    ) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        callbacks.connected(id, protocol, identity);
        Self { id, callbacks }
    }

    pub fn identified(&self, node: &Node) {
        self.callbacks.identified(self.id, node);
    }

    pub fn subscribed(&self, type_url: &str, names: Option<Arc<Names>>) {
        self.callbacks.subscribed(self.id, type_url, names);
    }

    pub fn sent(&self, sent: &Sent<'_>) {
        self.callbacks.sent(self.id, sent);
    }

    pub fn acked(&self, type_url: &str, version: &str) {
        self.callbacks.acked(self.id, type_url, version);
    }

    pub fn nacked(&self, type_url: &str, version: &str, error: &str) {
        self.callbacks.nacked(self.id, type_url, version, error);
    }

    pub fn refused(&self, reason: &str) {
        self.callbacks.refused(Some(self.id), reason);
    }
}

impl Drop for StreamEvents {
    fn drop(&mut self) {
        self.callbacks.disconnected(self.id);
    }
}

impl std::fmt::Debug for StreamEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEvents")
            .field("id", &self.id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Writes down every event it gets, as `<name> <stream>`.
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Log {
        fn note(&self, event: String) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl Callbacks for Log {
        fn connected(&self, stream: StreamId, protocol: &'static str, _: Option<&Identity>) {
            self.note(format!("connected {stream} {protocol}"));
        }

        fn acked(&self, stream: StreamId, type_url: &str, version: &str) {
            self.note(format!("acked {stream} {type_url} {version}"));
        }

        fn disconnected(&self, stream: StreamId) {
            self.note(format!("disconnected {stream}"));
        }
    }

    #[test]
    fn each_callback_hears_a_stream_from_its_start_to_its_end() {
        let (first, second) = (Arc::new(Log::default()), Arc::new(Log::default()));
        let fanout = Fanout(vec![first.clone(), second.clone()]);
        let events = StreamEvents::open(Arc::new(fanout), "delta", None);
        let id = events.id;
        events.acked("CDS", "7");
        events.nacked("CDS", "8", "ignored by both");
        drop(events);
        let expected = [
            format!("connected {id} delta"),
            format!("acked {id} CDS 7"),
            format!("disconnected {id}"),
        ];
        assert_eq!(*first.0.lock().unwrap(), expected);
        assert_eq!(*second.0.lock().unwrap(), expected);
    }
}

/// What tests of the callbacks report with.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Callbacks, Sent};
    use crate::xds::holdings::Holdings;

    /// Stream 1 was sent the listeners at `version`.
    pub fn sent_listeners(callbacks: &dyn Callbacks, version: &str) {
        let sent = Sent {
            type_url: crate::xds::type_url::LISTENER,
            version,
            holdings: &Holdings::default(),
            bytes: 10,
            snapshot_created: std::time::Instant::now(),
        };
        callbacks.sent(1, &sent);
    }
}
