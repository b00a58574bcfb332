//! A [`Link`] over any byte stream (TCP, TLS), framed by a [`StreamCodec`].

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::{Error, Frame, Link, LinkInfo, StreamCodec};

/// A link over a byte stream: reads are cut into frames by the codec, each written frame is
/// encoded by it. Control frames (ping, pong, close) have no meaning on a byte stream and are
/// dropped when written; text is written as its UTF-8 bytes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::{SinkExt, StreamExt};
/// use nkp_core::{Frame, LinkInfo, TransportKind, StreamLink, StreamCodec, Framing};
///
/// let (a, b) = tokio::io::duplex(1024);
/// let addr = "127.0.0.1:1".parse().unwrap();
/// let info = LinkInfo::new(TransportKind::Tcp, addr, addr);
/// let mut left = StreamLink::new(a, StreamCodec::new(&Framing::Prefix4, 1 << 20), info.clone());
/// let mut right = StreamLink::new(b, StreamCodec::new(&Framing::Prefix4, 1 << 20), info);
/// left.send(Frame::binary(&b"hello"[..])).await.unwrap();
/// assert_eq!(right.next().await.unwrap().unwrap(), Frame::binary(&b"hello"[..]));
/// # }
/// ```
pub struct StreamLink<S> {
    framed: Framed<S, StreamCodec>,
    info: LinkInfo,
    /// Held for the link's lifetime (a listener's connection-slot permit, ...).
    _guard: Option<Box<dyn Any + Send>>,
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> StreamLink<S> {
    /// Wraps `io` with `codec`.
    pub fn new(io: S, codec: StreamCodec, info: LinkInfo) -> Self {
        StreamLink {
            framed: Framed::new(io, codec),
            info,
            _guard: None,
        }
    }

    /// Keeps `guard` alive as long as the link (e.g. a semaphore permit counting the
    /// listener's connections).
    pub fn with_guard(mut self, guard: impl Any + Send) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        self.framed.get_ref()
    }

    /// Mutable access to the link metadata (for transports that learn it late).
    pub fn info_mut(&mut self) -> &mut LinkInfo {
        &mut self.info
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for StreamLink<S> {
    type Item = Result<Frame, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.framed)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map(Frame::Binary)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Frame> for StreamLink<S> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.framed).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Frame) -> Result<(), Error> {
        let data: Bytes = match item.into_data() {
            Some(d) => d,
            None => return Ok(()),
        };
        Pin::new(&mut self.framed).start_send(data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.framed).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.framed).poll_close(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Link for StreamLink<S> {
    fn info(&self) -> &LinkInfo {
        &self.info
    }
}
