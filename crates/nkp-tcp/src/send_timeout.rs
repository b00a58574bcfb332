//! The `send_timeout` / `send_timeout_close` options: a write that makes no progress for the
//! timeout fails.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use nkp_core::Options;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A byte stream whose writes fail with [`io::ErrorKind::TimedOut`] when the socket accepts
/// no data for `send_timeout` (the peer stopped reading and the kernel buffers are full): the
/// Rust form of the original's socket `send_timeout` option.
///
/// The clock starts when a write or flush first finds the socket full and is reset by any
/// progress, so a slow but moving peer never times out. With `send_timeout_close`, the stream
/// is unusable after a timeout: every later read or write fails, so the link ends and its
/// socket is closed when dropped. Without it, the write may be retried.
///
/// With no timeout configured the wrapper only forwards calls.
///
/// ```
/// use std::time::Duration;
/// use nkp_tcp::SendTimeoutStream;
///
/// let (a, _b) = tokio::io::duplex(16);
/// let s = SendTimeoutStream::new(a, Some(Duration::from_millis(100)), true);
/// assert_eq!(s.timeout(), Some(Duration::from_millis(100)));
/// ```
pub struct SendTimeoutStream<S> {
    inner: S,
    timeout: Option<Duration>,
    close_on_timeout: bool,
    deadline: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl<S> SendTimeoutStream<S> {
    /// Wraps `inner`: writes fail after `timeout` without progress (`None`: never); with
    /// `close_on_timeout`, the stream fails for good after the first timeout.
    pub fn new(inner: S, timeout: Option<Duration>, close_on_timeout: bool) -> Self {
        SendTimeoutStream {
            inner,
            timeout,
            close_on_timeout,
            deadline: None,
            failed: false,
        }
    }

    /// Wraps `inner` with the `send_timeout` and `send_timeout_close` of `options`.
    pub fn from_options(inner: S, options: &Options) -> Self {
        SendTimeoutStream::new(
            inner,
            options.send_timeout,
            options.send_timeout_close.unwrap_or(false),
        )
    }

    /// The send timeout in force.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn closed_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "stream closed after a send timeout (send_timeout_close)",
        )
    }

    /// Called when a write or flush is pending: arms the deadline, and fails once it passed.
    fn pending_write<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(timeout) = self.timeout else {
            return Poll::Pending;
        };
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.deadline = None;
        if self.close_on_timeout {
            self.failed = true;
        }
        tracing::debug!(timeout_ms = timeout.as_millis() as u64, "send timed out");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("send timed out after {} ms", timeout.as_millis()),
        )))
    }

    fn progress<T>(&mut self, r: io::Result<T>) -> Poll<io::Result<T>> {
        self.deadline = None;
        Poll::Ready(r)
    }
}

impl<S> fmt::Debug for SendTimeoutStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendTimeoutStream")
            .field("timeout", &self.timeout)
            .field("close_on_timeout", &self.close_on_timeout)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeoutStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(Self::closed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeoutStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(Self::closed_error()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => this.progress(r),
            Poll::Pending => this.pending_write(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(Self::closed_error()));
        }
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => this.progress(r),
            Poll::Pending => this.pending_write(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(Self::closed_error()));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => this.progress(r),
            Poll::Pending => this.pending_write(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn stalled_writes_time_out_and_close() {
        let (a, mut b) = tokio::io::duplex(8);
        let mut s = SendTimeoutStream::new(a, Some(Duration::from_millis(20)), true);
        // 8 bytes fit; the rest stalls because nobody reads `b`.
        let err = s.write_all(&[1u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let err = s.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let mut got = [0u8; 8];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [1u8; 8]);
        let mut one = [0u8; 1];
        assert!(s.read(&mut one).await.is_err());
    }

    #[tokio::test]
    async fn without_close_the_stream_stays_usable() {
        let (a, mut b) = tokio::io::duplex(8);
        let mut s = SendTimeoutStream::new(a, Some(Duration::from_millis(20)), false);
        let err = s.write_all(&[1u8; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let mut got = [0u8; 8];
        b.read_exact(&mut got).await.unwrap();
        s.write_all(b"ok").await.unwrap();
        let mut two = [0u8; 2];
        b.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ok");
    }

    #[tokio::test]
    async fn no_timeout_waits_for_the_reader() {
        let (a, mut b) = tokio::io::duplex(8);
        let mut s = SendTimeoutStream::new(a, None, true);
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut all = vec![0u8; 64];
            b.read_exact(&mut all).await.map(|_| all)
        });
        s.write_all(&[3u8; 64]).await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), vec![3u8; 64]);
    }
}
