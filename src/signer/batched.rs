//! A connection whose writes leave together at the end of the runtime's tick.
//!
//! h2 writes each frame larger than 256 bytes with a `writev` of its own and flushes after
//! each, and every signing answer is larger (it carries the session token): one system call
//! per request, about a fifth of the signer's CPU. Here h2's writes only fill a buffer. The
//! first flush of a batch asks the runtime for a wake-up once every task that is ready has
//! run (`yield_now`'s deferred wake); until then flushes return at once, and the flush after
//! it sends every answer those tasks produced in one write. Nothing waits on a timer: the
//! batch leaves as soon as the runtime has nothing else ready.

use std::io::IoSlice;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Past this many bytes waiting, a write sends them first.
const CAPACITY: usize = 64 * 1024;

pub struct Batched<T> {
    io: T,
    /// Bytes h2 wrote that are not sent yet; `sent` of them have been.
    waiting: Vec<u8>,
    sent: usize,
    /// The end of the tick the waiting bytes wait for, once asked.
    tick: Option<Arc<EndOfTick>>,
}

/// Wakes the connection's task at the end of the runtime's current tick, and remembers it did.
struct EndOfTick {
    passed: AtomicBool,
    task: Waker,
}

impl Wake for EndOfTick {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.passed.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl<T> Batched<T> {
    pub fn new(io: T) -> Self {
        Self {
            io,
            waiting: Vec::new(),
            sent: 0,
            tick: None,
        }
    }

    fn tick_passed(&self) -> bool {
        self.tick
            .as_ref()
            .is_some_and(|tick| tick.passed.load(Ordering::Acquire))
    }
}

impl<T: AsyncWrite + Unpin> Batched<T> {
    /// Sends every waiting byte.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.waiting.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.waiting[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.waiting.clear();
        self.sent = 0;
        self.tick = None;
        Poll::Ready(Ok(()))
    }

    fn make_room(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.waiting.len() >= CAPACITY {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Batched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // A poll after the tick sends what waits, whichever call comes first.
        if self.tick_passed()
            && let Poll::Ready(Err(error)) = self.poll_send(cx)
        {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.make_room(cx))?;
        self.waiting.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.make_room(cx))?;
        let mut written = 0;
        for buf in bufs {
            self.waiting.extend_from_slice(buf);
            written += buf.len();
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.waiting.is_empty() || self.tick_passed() {
            ready!(self.poll_send(cx))?;
            return Pin::new(&mut self.io).poll_flush(cx);
        }
        if self.tick.is_none() {
            let tick = Arc::new(EndOfTick {
                passed: AtomicBool::new(false),
                task: cx.waker().clone(),
            });
            let waker = Waker::from(Arc::clone(&tick));
            // Its first poll hands the waker to the runtime, to wake once the tick ends (at
            // once outside a runtime).
            let _ = pin!(tokio::task::yield_now()).poll(&mut Context::from_waker(&waker));
            self.tick = Some(tick);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for Batched<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Counted(AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_flush_sends_what_waits_once_the_tick_has_ended() {
        let (near, mut far) = tokio::io::duplex(4096);
        let mut batched = Batched::new(near);
        let wakes = Arc::new(Counted(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);

        for answer in [&b"one "[..], b"two "] {
            batched.write_all(answer).await.unwrap();
            let flushed = Pin::new(&mut batched).poll_flush(&mut cx);
            assert!(matches!(flushed, Poll::Ready(Ok(()))));
        }
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            0,
            "woken before the tick ended"
        );
        let mut nothing = [0; 1];
        let early = tokio::time::timeout(Duration::from_millis(50), far.read(&mut nothing)).await;
        assert!(early.is_err(), "sent before the tick ended");

        // Every ready task has run: the connection is woken, and its next flush sends both.
        tokio::task::yield_now().await;
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        batched.write_all(b"three").await.unwrap();
        let flushed = Pin::new(&mut batched).poll_flush(&mut cx);
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        let mut sent = [0; 13];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"one two three");
    }

    #[tokio::test]
    async fn shutdown_sends_what_waits() {
        let (near, mut far) = tokio::io::duplex(4096);
        let mut batched = Batched::new(near);
        batched.write_all(b"last answer").await.unwrap();
        batched.flush().await.unwrap();
        batched.shutdown().await.unwrap();
        let mut sent = Vec::new();
        far.read_to_end(&mut sent).await.unwrap();
        assert_eq!(sent, b"last answer");
    }

    #[tokio::test]
    async fn a_full_buffer_is_sent_before_more_is_taken() {
        let (near, mut far) = tokio::io::duplex(4 * CAPACITY);
        let mut batched = Batched::new(near);
        batched.write_all(&vec![7; CAPACITY]).await.unwrap();
        batched.write_all(b"more").await.unwrap();
        let mut sent = vec![0; CAPACITY];
        far.read_exact(&mut sent).await.unwrap();
        assert!(sent.iter().all(|byte| *byte == 7));
    }
}
