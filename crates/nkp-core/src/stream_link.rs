//! A [`Link`] over any byte stream (TCP, TLS), framed by a [`StreamCodec`].

use std::any::Any;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};

use crate::{Error, Frame, Link, LinkInfo, StreamCodec};

/// Bytes read from the stream at a time into a scratch buffer on the stack.
const READ_CHUNK: usize = 16 * 1024;

/// Encoded bytes waiting in the write buffer before `poll_ready` writes them out.
const WRITE_BACKPRESSURE: usize = 32 * 1024;

/// A link over a byte stream: reads are cut into frames by the codec, each written frame is
/// encoded by it. Control frames (ping, pong, close) have no meaning on a byte stream and are
/// dropped when written; text is written as its UTF-8 bytes.
///
/// Memory: an idle link holds no buffer. Reads go through a scratch buffer on the stack, so
/// the read buffer is allocated only while a frame is incomplete (and sized to it), and
/// released once it is empty; the write buffer lives from the first frame fed to the end of
/// the flush. With raw framing, each chunk read becomes one exactly-sized frame.
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
    io: S,
    codec: StreamCodec,
    info: LinkInfo,
    /// Bytes read and not yet decoded (no allocation while empty).
    rbuf: BytesMut,
    /// Encoded bytes not yet written (no allocation while empty).
    wbuf: BytesMut,
    /// A lone frame fed since the last flush, written without copying (its length prefix,
    /// then the payload). A second frame moves it into `wbuf`.
    single: Option<Single>,
    /// New bytes arrived since the decoder last said "need more".
    readable: bool,
    /// The stream ended (0-byte read).
    eof: bool,
    /// The read side is finished (end of stream or error reported).
    done: bool,
    /// Held for the link's lifetime (a listener's connection-slot permit, ...).
    _guard: Option<Box<dyn Any + Send>>,
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> StreamLink<S> {
    /// Wraps `io` with `codec`.
    pub fn new(io: S, codec: StreamCodec, info: LinkInfo) -> Self {
        StreamLink {
            io,
            codec,
            info,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            single: None,
            readable: false,
            eof: false,
            done: false,
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
        &self.io
    }

    /// Mutable access to the link metadata (for transports that learn it late).
    pub fn info_mut(&mut self) -> &mut LinkInfo {
        &mut self.info
    }
}

impl<S> StreamLink<S> {
    /// Bytes of buffer memory the link holds now (read and write buffers' capacity).
    pub fn buffered_capacity(&self) -> usize {
        self.rbuf.capacity()
            + self.wbuf.capacity()
            + self.single.as_ref().map_or(0, |s| s.body.len())
    }

    /// Drops the read buffer's allocation once everything in it was decoded.
    fn release_rbuf(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
        }
    }
}

/// A frame waiting to be written as it is: `head[at..len]` (the rest of its length prefix),
/// then `body`.
struct Single {
    head: [u8; 4],
    at: usize,
    len: usize,
    body: Bytes,
}

impl Single {
    /// The frame for a raw or length-prefix `codec` (a custom codec encodes into the
    /// buffer instead). Errors as the codec's `encode` would.
    fn new(codec: &StreamCodec, body: Bytes) -> Result<Single, Error> {
        let (head, len) = match codec {
            StreamCodec::Prefix { len, max, .. } => {
                if body.len() > *max {
                    return Err(Error::MessageTooLarge {
                        size: body.len(),
                        max: *max,
                    });
                }
                let be = (body.len() as u32).to_be_bytes();
                let mut head = [0; 4];
                head[..*len].copy_from_slice(&be[4 - *len..]);
                (head, *len)
            }
            StreamCodec::Raw | StreamCodec::Custom(_) => ([0; 4], 0),
        };
        Ok(Single {
            head,
            at: 0,
            len,
            body,
        })
    }

    fn head(&self) -> &[u8] {
        &self.head[self.at..self.len]
    }

    fn is_empty(&self) -> bool {
        self.at == self.len && self.body.is_empty()
    }

    /// Marks `n` bytes written.
    fn consume(&mut self, mut n: usize) {
        let h = (self.len - self.at).min(n);
        self.at += h;
        n -= h;
        self.body.advance(n.min(self.body.len()));
    }
}

fn frame(data: Bytes) -> Poll<Option<Result<Frame, Error>>> {
    Poll::Ready(Some(Ok(Frame::Binary(data))))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for StreamLink<S> {
    type Item = Result<Frame, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.eof {
                return match this.codec.decode_eof(&mut this.rbuf) {
                    Ok(Some(data)) => frame(data),
                    Ok(None) => {
                        this.done = true;
                        this.rbuf = BytesMut::new();
                        Poll::Ready(None)
                    }
                    Err(e) => {
                        this.done = true;
                        Poll::Ready(Some(Err(e)))
                    }
                };
            }
            if this.readable {
                match this.codec.decode(&mut this.rbuf) {
                    Ok(Some(data)) => {
                        this.release_rbuf();
                        return frame(data);
                    }
                    Ok(None) => this.readable = false,
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    this.release_rbuf();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Ok(())) => {}
            }
            let got = rb.filled();
            if got.is_empty() {
                this.eof = true;
                continue;
            }
            if this.rbuf.is_empty() && matches!(this.codec, StreamCodec::Raw) {
                // Raw framing: the chunk is the frame, in an allocation of its own size.
                return frame(Bytes::copy_from_slice(got));
            }
            this.rbuf.extend_from_slice(got);
            this.readable = true;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamLink<S> {
    /// Writes the pending frame or the whole write buffer out, then releases the buffer.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(single) = &mut self.single {
            while !single.is_empty() {
                let io = Pin::new(&mut self.io);
                let n = if single.head().is_empty() {
                    ready!(io.poll_write(cx, &single.body))?
                } else if single.body.is_empty() || !io.is_write_vectored() {
                    ready!(io.poll_write(cx, single.head()))?
                } else {
                    let bufs = [
                        io::IoSlice::new(single.head()),
                        io::IoSlice::new(&single.body),
                    ];
                    ready!(io.poll_write_vectored(cx, &bufs))?
                };
                if n == 0 {
                    return Poll::Ready(Err(write_zero()));
                }
                single.consume(n);
            }
            self.single = None;
        }
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(write_zero()));
            }
            self.wbuf.advance(n);
        }
        if self.wbuf.capacity() > 0 {
            self.wbuf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

fn write_zero() -> Error {
    io::Error::new(
        io::ErrorKind::WriteZero,
        "failed to write frame to transport",
    )
    .into()
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Frame> for StreamLink<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.wbuf.len() >= WRITE_BACKPRESSURE
            || this
                .single
                .as_ref()
                .is_some_and(|s| s.body.len() >= WRITE_BACKPRESSURE)
        {
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), Error> {
        let this = self.get_mut();
        let Some(data) = item.into_data() else {
            return Ok(());
        };
        if this.single.is_none()
            && this.wbuf.is_empty()
            && !matches!(this.codec, StreamCodec::Custom(_))
        {
            this.single = Some(Single::new(&this.codec, data)?);
            return Ok(());
        }
        if let Some(single) = this.single.take() {
            // A second frame before the flush: both go through the buffer.
            this.wbuf
                .reserve(single.head().len() + single.body.len() + data.len() + 4);
            this.wbuf.extend_from_slice(single.head());
            this.wbuf.extend_from_slice(&single.body);
        }
        this.codec.encode(data, &mut this.wbuf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Poll::Ready(ready!(Pin::new(&mut this.io).poll_flush(cx)).map_err(Error::from))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(ready!(Pin::new(&mut this.io).poll_shutdown(cx)).map_err(Error::from))
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Link for StreamLink<S> {
    fn info(&self) -> &LinkInfo {
        &self.info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Framing, TransportKind};
    use futures_util::{FutureExt, SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;

    fn link<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
        io: S,
        framing: Framing,
    ) -> StreamLink<S> {
        let addr = "127.0.0.1:1".parse().unwrap();
        StreamLink::new(
            io,
            StreamCodec::new(&framing, 1 << 20),
            LinkInfo::new(TransportKind::Tcp, addr, addr),
        )
    }

    #[tokio::test]
    async fn idle_link_holds_no_buffer() {
        for framing in [Framing::Raw, Framing::Prefix4] {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let mut left = link(a, framing.clone());
            let mut right = link(b, framing.clone());
            assert_eq!(left.buffered_capacity(), 0);
            left.send(Frame::binary(vec![7u8; 1000])).await.unwrap();
            assert_eq!(left.buffered_capacity(), 0, "{framing:?} write side");
            let got = right.next().await.unwrap().unwrap();
            assert_eq!(got.len(), 1000);
            // Waiting for more: nothing held.
            assert!(right.next().now_or_never().is_none());
            assert_eq!(right.buffered_capacity(), 0, "{framing:?} read side");
        }
    }

    #[tokio::test]
    async fn frames_split_across_reads_and_glued_in_one() {
        let (mut a, b) = tokio::io::duplex(64 * 1024);
        let mut right = link(b, Framing::Prefix2);
        a.write_all(&[0, 3, b'a']).await.unwrap();
        assert!(right.next().now_or_never().is_none());
        assert!(
            right.buffered_capacity() > 0,
            "a partial frame stays buffered"
        );
        a.write_all(&[b'b', b'c', 0, 1, b'z', 0]).await.unwrap();
        assert_eq!(
            right.next().await.unwrap().unwrap(),
            Frame::binary(&b"abc"[..])
        );
        assert_eq!(
            right.next().await.unwrap().unwrap(),
            Frame::binary(&b"z"[..])
        );
        drop(a);
        // The stream ends after one byte of a prefix: a truncated frame.
        assert!(right.next().await.unwrap().is_err());
        assert!(right.next().await.is_none());
    }

    #[tokio::test]
    async fn large_frames_and_clean_end() {
        let (a, b) = tokio::io::duplex(8 * 1024);
        let mut left = link(a, Framing::Prefix4);
        let mut right = link(b, Framing::Prefix4);
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            left.send(Frame::binary(sent)).await.unwrap();
            left.send(Frame::binary(&b"tail"[..])).await.unwrap();
            left.close().await.unwrap();
        });
        assert_eq!(right.next().await.unwrap().unwrap(), Frame::binary(big));
        assert_eq!(
            right.next().await.unwrap().unwrap(),
            Frame::binary(&b"tail"[..])
        );
        assert!(right.next().await.is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn single_and_batched_frames_survive_partial_writes() {
        for framing in [Framing::Prefix1, Framing::Prefix2, Framing::Prefix4] {
            // A 7-byte pipe: every frame is written in pieces.
            let (a, b) = tokio::io::duplex(7);
            let mut left = link(a, framing.clone());
            let mut right = link(b, framing.clone());
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..4 {
                    got.push(right.next().await.unwrap().unwrap());
                }
                got
            });
            left.send(Frame::binary(&b"one frame"[..])).await.unwrap();
            left.feed(Frame::binary(&b"two"[..])).await.unwrap();
            left.feed(Frame::binary(&b""[..])).await.unwrap();
            left.feed(Frame::binary(vec![9u8; 200])).await.unwrap();
            left.flush().await.unwrap();
            let got = reader.await.unwrap();
            assert_eq!(got[0], Frame::binary(&b"one frame"[..]), "{framing:?}");
            assert_eq!(got[1], Frame::binary(&b"two"[..]));
            assert_eq!(got[2], Frame::binary(&b""[..]));
            assert_eq!(got[3], Frame::binary(vec![9u8; 200]));
        }
    }

    #[tokio::test]
    async fn too_large_single_frame_is_refused_without_writing() {
        let (a, _b) = tokio::io::duplex(64);
        let mut left = link(a, Framing::Prefix1);
        let err = Pin::new(&mut left).start_send(Frame::binary(vec![0u8; 300]));
        assert!(matches!(
            err,
            Err(Error::MessageTooLarge {
                size: 300,
                max: 255
            })
        ));
        assert_eq!(left.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn raw_chunks_and_control_frames() {
        let (a, b) = tokio::io::duplex(1024);
        let mut left = link(a, Framing::Raw);
        let mut right = link(b, Framing::Raw);
        left.feed(Frame::Ping(Bytes::new())).await.unwrap();
        left.feed(Frame::text("hi ")).await.unwrap();
        left.feed(Frame::binary(&b"there"[..])).await.unwrap();
        left.flush().await.unwrap();
        assert_eq!(
            right.next().await.unwrap().unwrap(),
            Frame::binary(&b"hi there"[..])
        );
    }
}
