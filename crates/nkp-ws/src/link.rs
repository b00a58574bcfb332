//! [`WsLink`]: a WebSocket session as an nkpacket [`Link`], the I/O shell around the pure
//! [`Decoder`] and [`Encoder`].

use std::any::Any;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

#[cfg(test)]
use bytes::Bytes;
use bytes::BytesMut;
use futures_core::Stream;
use futures_sink::Sink;
use nkp_core::{CloseReason, Error, Frame, Link, LinkInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::codec::{CodecError, Decoder, Encoder};
use crate::deflate::DeflateParams;
use crate::frame::{FrameHeader, MAX_HEADER_LEN, Role};

/// A byte stream a WebSocket runs on (TCP, TLS, or an upgraded HTTP connection).
pub trait WsIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> WsIo for T {}

/// A boxed [`WsIo`].
pub type BoxIo = Box<dyn WsIo>;

/// Above this many unsent bytes, `poll_ready` waits for the socket (backpressure), and so
/// does reading while automatic replies (pongs) pile up for a peer that does not read.
const HIGH_WATER: usize = 64 * 1024;

/// Bytes read at a time into a scratch buffer on the stack while nothing is buffered.
const READ_CHUNK: usize = 16 * 1024;

/// Smallest read into the read buffer (a frame in progress); it asks for up to
/// [`MAX_READ`] at once.
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 256 * 1024;

/// A WebSocket session (server or client side) as a [`Link`].
///
/// * Reading: text messages come as [`Frame::Text`], binary as [`Frame::Binary`]
///   (fragmented messages reassembled, compressed ones inflated), pongs as
///   [`Frame::Pong`], the peer's close as [`Frame::Close`] followed by the end of the
///   stream (the close reply is sent for us, at once). Pings are answered with exactly one
///   pong and not passed up. A message larger than `max_message_size` is answered with
///   close 1009 and reported as [`Error::MessageTooLarge`]; a protocol violation with
///   close 1002 (bad UTF-8: 1007) and [`Error::Protocol`].
/// * Writing: every frame kind is sent as such (client frames masked, data compressed when
///   permessage-deflate was negotiated); a written [`Frame::Close`] starts the close
///   handshake, after which data can no longer be written. Closing the sink sends close
///   1000 unless a close was already sent. `poll_ready` is pending while more than 64 KiB
///   wait to be written.
///
/// Polling is cancel-safe: all progress is kept in the link. An idle link holds no
/// buffers: the read buffer is released when it is empty and the socket has nothing to
/// read, the write buffer once it is written.
///
/// Costs: while nothing is buffered, reads go through a scratch buffer on the stack, and
/// a message that arrived whole is copied (unmasked) into an allocation of its own size;
/// only what follows it, or a frame still arriving, is kept in the read buffer. A data
/// frame a server sends alone (nothing else waiting to be written, not compressed) is
/// written from the frame itself, header and payload in one vectored write, when the
/// stream supports vectored writes; everything else is encoded into the write buffer.
pub struct WsLink {
    io: BoxIo,
    info: LinkInfo,
    decoder: Decoder,
    encoder: Encoder,
    deflate: Option<DeflateParams>,
    max_message_size: usize,
    rbuf: BytesMut,
    /// Encoded frames not yet written, from `wpos` on.
    wbuf: Vec<u8>,
    wpos: usize,
    /// A lone data frame written without copying; never set while `wbuf` holds unsent
    /// bytes (a second frame moves it into `wbuf`, to keep the order).
    single: Option<Single>,
    /// The write side failed: nothing more is written.
    write_dead: bool,
    /// A close frame to send because of a reading error, and the error to report after.
    failing: Option<(Option<Frame>, Error)>,
    /// The stream is over (after the peer's close, EOF or an error).
    ended: bool,
    close_sent: bool,
    _guard: Option<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for WsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsLink")
            .field("info", &self.info)
            .field("deflate", &self.deflate)
            .finish()
    }
}

impl WsLink {
    /// A link over `io` after a completed handshake; `read_ahead` are bytes already read
    /// past the handshake (the first frames).
    pub(crate) fn new(
        io: BoxIo,
        role: Role,
        info: LinkInfo,
        max_message_size: usize,
        deflate: Option<DeflateParams>,
        read_ahead: &[u8],
    ) -> Self {
        WsLink {
            io,
            info,
            decoder: Decoder::new(role, max_message_size, deflate),
            encoder: Encoder::new(role, deflate),
            deflate,
            max_message_size,
            rbuf: BytesMut::from(read_ahead),
            wbuf: Vec::new(),
            wpos: 0,
            single: None,
            write_dead: false,
            failing: None,
            ended: false,
            close_sent: false,
            _guard: None,
        }
    }

    /// Keeps `guard` alive as long as the link (the server's connection slot).
    pub(crate) fn with_guard(mut self, guard: impl Any + Send) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// Mutable access to the link metadata.
    pub fn info_mut(&mut self) -> &mut LinkInfo {
        &mut self.info
    }

    /// The permessage-deflate parameters negotiated in the handshake, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// The largest message accepted.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Bytes held in buffers by the link itself (read and write buffers' capacity, and the
    /// payload of a frame waiting to be written; not the compressor state): zero for an
    /// idle link.
    pub fn buffered_capacity(&self) -> usize {
        self.rbuf.capacity()
            + self.wbuf.capacity()
            + self.single.as_ref().map_or(0, |s| s.frame.payload().len())
    }

    /// Queues a frame the link sends by itself (pong, close reply); errors are dropped
    /// (only over-long control payloads, which a received frame cannot have).
    fn queue(&mut self, frame: &Frame) {
        if !self.write_dead {
            self.spill();
            self.compact();
            let _ = self.encoder.encode(frame, &mut self.wbuf);
        }
    }

    /// Moves what is left of the lone frame into the write buffer, before more is
    /// appended to it.
    fn spill(&mut self) {
        if let Some(s) = self.single.take() {
            self.compact();
            let (head, body) = s.rest();
            self.wbuf.reserve(head.len() + body.len());
            self.wbuf.extend_from_slice(head);
            self.wbuf.extend_from_slice(body);
        }
    }

    /// The write side failed: nothing more is written, nothing unsent is kept.
    fn kill_writes(&mut self) {
        self.write_dead = true;
        self.wbuf = Vec::new();
        self.wpos = 0;
        self.single = None;
    }

    /// Drops the written part of the write buffer before more is appended.
    fn compact(&mut self) {
        if self.wpos > 0 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }

    fn pending_write(&self) -> usize {
        self.wbuf.len() - self.wpos + self.single.as_ref().map_or(0, Single::remaining)
    }

    /// Writes the lone frame or the write buffer out; releases the buffer once empty.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(s) = &mut self.single {
            while s.remaining() > 0 {
                let (head, body) = s.rest();
                let io = Pin::new(&mut self.io);
                let r = if head.is_empty() {
                    ready!(io.poll_write(cx, body))
                } else {
                    let bufs = [io::IoSlice::new(head), io::IoSlice::new(body)];
                    ready!(io.poll_write_vectored(cx, &bufs))
                };
                match r {
                    Ok(0) => {
                        self.kill_writes();
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Ok(n) => s.written += n,
                    Err(e) => {
                        self.kill_writes();
                        return Poll::Ready(Err(e));
                    }
                }
            }
            self.single = None;
        }
        while self.wpos < self.wbuf.len() {
            let n = match ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..])) {
                Ok(0) => {
                    self.kill_writes();
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => n,
                Err(e) => {
                    self.kill_writes();
                    return Poll::Ready(Err(e));
                }
            };
            self.wpos += n;
        }
        self.wbuf = Vec::new();
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes everything and flushes the socket.
    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_dead {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        ready!(self.poll_write_buf(cx))?;
        Pin::new(&mut self.io).poll_flush(cx).map_err(|e| {
            self.write_dead = true;
            e
        })
    }

    /// Sends the close frame of a failure, then reports the failure.
    fn poll_fail(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        let close = self.failing.as_mut().and_then(|(c, _)| c.take());
        if let Some(frame) = close
            && !self.close_sent
        {
            self.close_sent = true;
            self.queue(&frame);
        }
        if !self.write_dead && self.poll_flush_all(cx).is_pending() {
            return Poll::Pending;
        }
        self.ended = true;
        self.rbuf = BytesMut::new();
        let (_, e) = self.failing.take().unwrap_or((None, Error::Closed(None)));
        Poll::Ready(e)
    }

    fn write_error(&self, e: io::Error) -> Error {
        Error::io("websocket write", Some(self.info.remote), e)
    }

    /// What a decoded message (or the decoder's error) means for `poll_next`.
    fn on_decoded(&mut self, cx: &mut Context<'_>, r: Result<Option<Frame>, CodecError>) -> Step {
        match r {
            Ok(Some(Frame::Ping(p))) => {
                if !self.close_sent {
                    self.queue(&Frame::Pong(p));
                }
                Step::Again
            }
            Ok(Some(Frame::Close(c))) => {
                if !self.close_sent {
                    self.close_sent = true;
                    // echo the code (RFC 6455 §5.5.1)
                    let reply = Frame::Close(c.as_ref().map(|r| CloseReason {
                        code: r.code,
                        reason: String::new(),
                    }));
                    self.queue(&reply);
                }
                self.ended = true;
                self.rbuf = BytesMut::new();
                if !self.write_dead {
                    // sent at once; if the socket is full, the next poll finishes it
                    let _ = self.poll_flush_all(cx);
                }
                Step::Return(Frame::Close(c))
            }
            // the read buffer stays for the next message; it is released when a read
            // finds nothing to read
            Ok(Some(frame)) => Step::Return(frame),
            Ok(None) => Step::Read,
            Err(e) => {
                let close = Frame::close(e.close_code(), e.close_reason());
                self.failing = Some((Some(close), e.into()));
                Step::Again
            }
        }
    }
}

/// The next step of `poll_next` after decoding.
enum Step {
    /// Pass this frame up.
    Return(Frame),
    /// Decode again (or report the failure).
    Again,
    /// More bytes are needed.
    Read,
}

/// A data frame written from the frame itself: `head`, then the frame's payload;
/// `written` bytes of both are out.
struct Single {
    head: [u8; MAX_HEADER_LEN],
    head_len: usize,
    frame: Frame,
    written: usize,
}

impl Single {
    fn new(header: FrameHeader, frame: Frame) -> Single {
        let mut head = [0; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        Single {
            head,
            head_len,
            frame,
            written: 0,
        }
    }

    /// What is left to write: the rest of the header, the rest of the payload.
    fn rest(&self) -> (&[u8], &[u8]) {
        let head = &self.head[self.written.min(self.head_len)..self.head_len];
        let body = self.frame.payload();
        (
            head,
            &body[self.written.saturating_sub(self.head_len).min(body.len())..],
        )
    }

    fn remaining(&self) -> usize {
        (self.head_len + self.frame.payload().len()).saturating_sub(self.written)
    }
}

impl Stream for WsLink {
    type Item = Result<Frame, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.failing.is_some() {
                let e = ready!(this.poll_fail(cx));
                return Poll::Ready(Some(Err(e)));
            }
            if this.ended {
                // the close reply goes out before the end is reported
                if this.pending_write() > 0 && !this.write_dead {
                    ready!(this.poll_flush_all(cx)).ok();
                }
                return Poll::Ready(None);
            }
            // automatic replies go out as soon as they can; a peer that sends pings
            // without reading our pongs stops being read
            if this.pending_write() > 0 && !this.write_dead {
                match this.poll_flush_all(cx) {
                    Poll::Pending if this.pending_write() > HIGH_WATER => return Poll::Pending,
                    _ => {}
                }
            }
            // (with nothing buffered the decoder can only ask for more)
            if !this.rbuf.is_empty() {
                let decoded = this.decoder.decode(&mut this.rbuf);
                match this.on_decoded(cx, decoded) {
                    Step::Return(frame) => return Poll::Ready(Some(Ok(frame))),
                    Step::Again => continue,
                    Step::Read => {}
                }
            }
            if this.rbuf.is_empty() {
                // nothing buffered: read into a scratch buffer on the stack, decode the
                // first message from it, and buffer only what follows
                let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
                let mut rb = ReadBuf::uninit(&mut scratch);
                match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                    Poll::Pending => {
                        // idle: hold no buffer while waiting
                        this.rbuf = BytesMut::new();
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => {
                        let e = Error::io("websocket read", Some(this.info.remote), e);
                        this.failing = Some((None, e));
                        continue;
                    }
                    Poll::Ready(Ok(())) => {}
                }
                let got = rb.filled();
                if got.is_empty() {
                    // the peer went away without a close frame: the stream just ends
                    this.ended = true;
                    this.rbuf = BytesMut::new();
                    return Poll::Ready(None);
                }
                let decoded = match this.decoder.decode_slice(got) {
                    Ok((frame, used)) => {
                        let rest = &got[used..];
                        if !rest.is_empty() {
                            let want = this.decoder.wanted(rest.len()).clamp(MIN_READ, MAX_READ);
                            this.rbuf.reserve(rest.len() + want);
                            this.rbuf.extend_from_slice(rest);
                        }
                        Ok(frame)
                    }
                    Err(e) => Err(e),
                };
                match this.on_decoded(cx, decoded) {
                    Step::Return(frame) => return Poll::Ready(Some(Ok(frame))),
                    Step::Again | Step::Read => continue,
                }
            }
            // read more: at least MIN_READ of room, more for a large frame in progress
            let want = this
                .decoder
                .wanted(this.rbuf.len())
                .clamp(MIN_READ, MAX_READ);
            if this.rbuf.capacity() - this.rbuf.len() < MIN_READ {
                this.rbuf.reserve(want);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.rbuf) {
                // (not idle: a frame is in progress)
                Poll::Pending => return Poll::Pending,
                // the peer went away without a close frame: the stream just ends
                Poll::Ready(Ok(0)) => {
                    this.ended = true;
                    this.rbuf = BytesMut::new();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    let e = Error::io("websocket read", Some(this.info.remote), e);
                    this.failing = Some((None, e));
                }
            }
        }
    }
}

impl Sink<Frame> for WsLink {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = &mut *self;
        if this.write_dead {
            return Poll::Ready(Err(Error::Closed(Some(
                "the websocket connection is closed".into(),
            ))));
        }
        if this.pending_write() > HIGH_WATER
            && let Err(e) = ready!(this.poll_write_buf(cx))
        {
            return Poll::Ready(Err(this.write_error(e)));
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), Error> {
        let this = &mut *self;
        if this.write_dead {
            return Err(Error::Closed(Some(
                "the websocket connection is closed".into(),
            )));
        }
        if this.close_sent {
            return match frame {
                // a second close is a no-op
                Frame::Close(_) => Ok(()),
                _ => Err(Error::Closed(Some(
                    "the websocket close handshake has started".into(),
                ))),
            };
        }
        if this.pending_write() == 0
            && this.io.is_write_vectored()
            && let Some(h) = this.encoder.plain_header(&frame)
        {
            this.single = Some(Single::new(h, frame));
            return Ok(());
        }
        this.spill();
        this.compact();
        this.encoder.encode(&frame, &mut this.wbuf)?;
        if matches!(frame, Frame::Close(_)) {
            this.close_sent = true;
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = &mut *self;
        if this.write_dead && this.pending_write() == 0 {
            return Poll::Ready(Err(Error::Closed(Some(
                "the websocket connection is closed".into(),
            ))));
        }
        ready!(this.poll_flush_all(cx)).map_err(|e| this.write_error(e))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = &mut *self;
        if !this.close_sent {
            // a normal close (1000), unless the handshake already started
            this.close_sent = true;
            this.queue(&Frame::close(1000, ""));
        }
        if this.write_dead {
            return Poll::Ready(Ok(()));
        }
        // The close frame out, then our half of the stream closed (TCP FIN, TLS
        // close_notify): RFC 6455 §7.1.1 lets either side start the TCP close once the
        // close frame is sent, and the peer's close reply can still be read.
        let r = match ready!(this.poll_flush_all(cx)) {
            Ok(()) => ready!(Pin::new(&mut this.io).poll_shutdown(cx)),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => Poll::Ready(Ok(())),
            // the peer is already gone: the link is closed all the same
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::NotConnected
                        | io::ErrorKind::WriteZero
                ) =>
            {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(this.write_error(e))),
        }
    }
}

impl Link for WsLink {
    fn info(&self) -> &LinkInfo {
        &self.info
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use nkp_core::TransportKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    fn server(io: DuplexStream) -> WsLink {
        let a = "127.0.0.1:1".parse().unwrap();
        let info = LinkInfo::new(TransportKind::Ws, a, a);
        WsLink::new(Box::new(io), Role::Server, info, 1 << 20, None, &[])
    }

    fn client_wire(frames: &[Frame]) -> Vec<u8> {
        let mut e = Encoder::new(Role::Client, None);
        let mut w = Vec::new();
        for f in frames {
            e.encode(f, &mut w).unwrap();
        }
        w
    }

    /// What the server sent, until nothing more comes for a moment.
    async fn server_frames(peer: &mut DuplexStream) -> Vec<Frame> {
        let mut d = Decoder::new(Role::Client, 1 << 20, None);
        let mut b = BytesMut::new();
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(Duration::from_millis(100), peer.read(&mut chunk)).await
        {
            b.extend_from_slice(&chunk[..n]);
            while let Ok(Some(f)) = d.decode(&mut b) {
                out.push(f);
            }
        }
        out
    }

    /// A peer that floods pings and does not read: the pongs stop being queued at the
    /// high-water mark (the link stops reading), and once the peer reads, every ping has
    /// had its pong, in order, with its payload.
    #[tokio::test]
    async fn pongs_to_a_peer_that_does_not_read_stay_bounded() {
        let (a, peer) = tokio::io::duplex(1024);
        let (mut peer_rx, mut peer_tx) = tokio::io::split(peer);
        let mut link = server(a);
        let pings: Vec<Frame> = (0..2000u32)
            .map(|i| Frame::Ping(format!("{i:0>125}").into_bytes().into()))
            .collect();
        let wire = client_wire(&pings);
        let writer = tokio::spawn(async move { peer_tx.write_all(&wire).await });
        let r = tokio::time::timeout(Duration::from_millis(500), link.next()).await;
        assert!(r.is_err(), "no frame is passed up: {r:?}");
        assert!(!writer.is_finished(), "the link stopped reading");
        assert!(
            link.pending_write() <= HIGH_WATER + 2 + MAX_CONTROL,
            "{} bytes queued",
            link.pending_write()
        );
        // the peer reads now; the link goes on reading and answering
        let reader = tokio::spawn(async move {
            let mut d = Decoder::new(Role::Client, 1 << 20, None);
            let mut b = BytesMut::new();
            let mut got = Vec::new();
            while got.len() < 2000 {
                if peer_rx.read_buf(&mut b).await.unwrap() == 0 {
                    break;
                }
                while let Ok(Some(f)) = d.decode(&mut b) {
                    got.push(f);
                }
            }
            got
        });
        // (the stream ends when the reader, done, drops the peer)
        let r = tokio::time::timeout(Duration::from_millis(2000), link.next()).await;
        assert!(matches!(r, Err(_) | Ok(None)), "{r:?}");
        writer.await.unwrap().unwrap();
        let got = reader.await.unwrap();
        let want: Vec<Frame> = pings
            .iter()
            .map(|p| match p {
                Frame::Ping(b) => Frame::Pong(b.clone()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "pongs out of order or with other payloads");
    }

    const MAX_CONTROL: usize = crate::frame::MAX_CONTROL_PAYLOAD;

    /// The peer's close is answered (its code echoed) without the application writing,
    /// also when it arrives in the middle of a fragmented message; the link then holds no
    /// buffer and refuses data.
    #[tokio::test]
    async fn a_close_is_echoed_without_the_application_writing() {
        let (a, mut peer) = tokio::io::duplex(1 << 16);
        let mut link = server(a);
        let mut wire = vec![0x01, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]; // text, not final
        wire.extend(client_wire(&[
            Frame::Ping(Bytes::from_static(b"p")),
            Frame::close(4001, "bye"),
        ]));
        peer.write_all(&wire).await.unwrap();
        assert_eq!(
            link.next().await.unwrap().unwrap(),
            Frame::close(4001, "bye")
        );
        assert!(link.next().await.is_none());
        assert_eq!(
            server_frames(&mut peer).await,
            vec![
                Frame::Pong(Bytes::from_static(b"p")),
                Frame::close(4001, "")
            ]
        );
        assert_eq!(link.buffered_capacity(), 0);
        assert!(matches!(
            link.send(Frame::text("late")).await,
            Err(Error::Closed(_))
        ));
        link.close().await.unwrap();
        assert_eq!(server_frames(&mut peer).await, vec![], "one close only");
    }

    /// Closing the sink sends close 1000, then closes our half of the stream (FIN /
    /// close_notify), as the `Link` contract says: the peer reads the frame, then EOF.
    #[tokio::test]
    async fn closing_sends_the_close_frame_then_ends_the_stream() {
        let (a, mut peer) = tokio::io::duplex(1 << 16);
        let mut link = server(a);
        link.send(Frame::text("last")).await.unwrap();
        link.close().await.unwrap();
        let mut wire = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut wire))
            .await
            .expect("EOF after the close frame")
            .unwrap();
        let mut d = Decoder::new(Role::Client, 1 << 20, None);
        let mut b = BytesMut::from(&wire[..]);
        let mut got = Vec::new();
        while let Ok(Some(f)) = d.decode(&mut b) {
            got.push(f);
        }
        assert_eq!(got, vec![Frame::text("last"), Frame::close(1000, "")]);
    }

    /// A socket that accepts no bytes: the write fails, and the unsendable frames are not
    /// kept (the link holds no buffer once its write side is dead).
    #[tokio::test]
    async fn a_socket_that_takes_nothing_fails_the_write_and_frees_the_buffer() {
        struct Stuck;
        impl AsyncRead for Stuck {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Poll::Pending
            }
        }
        impl AsyncWrite for Stuck {
            fn poll_write(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                _: &[u8],
            ) -> Poll<io::Result<usize>> {
                Poll::Ready(Ok(0))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let a = "127.0.0.1:1".parse().unwrap();
        let info = LinkInfo::new(TransportKind::Ws, a, a);
        let mut link = WsLink::new(Box::new(Stuck), Role::Server, info, 1 << 20, None, &[]);
        assert!(link.send(Frame::binary(vec![1u8; 1000])).await.is_err());
        assert_eq!(link.buffered_capacity(), 0);
        assert!(matches!(
            link.send(Frame::text("x")).await,
            Err(Error::Closed(_))
        ));
    }

    /// A stream over `inner` that supports vectored writes, takes at most `limit` bytes
    /// per write and counts the writes.
    struct Vectored {
        inner: DuplexStream,
        limit: usize,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Vectored {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Vectored {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit);
            let r = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..n]));
            self.writes.fetch_add(1, Ordering::Relaxed);
            Poll::Ready(r)
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.poll_write(cx, &all)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A server link over a [`Vectored`] stream, and its write counter.
    fn vectored_server(inner: DuplexStream, limit: usize) -> (WsLink, Arc<AtomicUsize>) {
        let a = "127.0.0.1:1".parse().unwrap();
        let info = LinkInfo::new(TransportKind::Ws, a, a);
        let writes = Arc::new(AtomicUsize::new(0));
        let io = Vectored {
            inner,
            limit,
            writes: writes.clone(),
        };
        let link = WsLink::new(Box::new(io), Role::Server, info, 1 << 20, None, &[]);
        (link, writes)
    }

    /// A data frame a server sends alone goes out in one vectored write, header and
    /// payload, without the write buffer being allocated.
    #[tokio::test]
    async fn a_lone_frame_goes_out_in_one_write_without_the_buffer() {
        let (a, mut peer) = tokio::io::duplex(1 << 16);
        let (mut link, writes) = vectored_server(a, usize::MAX);
        for f in [Frame::binary(vec![5u8; 300]), Frame::text("é".repeat(40))] {
            let before = writes.load(Ordering::Relaxed);
            link.feed(f.clone()).await.unwrap();
            assert_eq!(link.wbuf.capacity(), 0);
            assert!(link.single.is_some());
            link.flush().await.unwrap();
            assert_eq!(writes.load(Ordering::Relaxed) - before, 1);
            assert_eq!(link.buffered_capacity(), 0);
            assert_eq!(server_frames(&mut peer).await, vec![f]);
        }
    }

    /// Frames keep their order when a lone frame, partly written, is followed by more
    /// frames and by an automatic pong.
    #[tokio::test]
    async fn a_partly_written_lone_frame_keeps_its_place() {
        let (a, peer) = tokio::io::duplex(7);
        let (mut peer_rx, mut peer_tx) = tokio::io::split(peer);
        let (mut link, writes) = vectored_server(a, 3);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let first = Frame::binary(vec![1u8; 200]);
        link.feed(first.clone()).await.unwrap();
        assert!(Pin::new(&mut link).poll_flush(&mut cx).is_pending());
        assert!(
            writes.load(Ordering::Relaxed) >= 2,
            "the header and some of the payload are out"
        );
        assert!(link.single.is_some());
        // a ping: its pong goes after the frame
        peer_tx
            .write_all(&client_wire(&[Frame::Ping(Bytes::from_static(b"p"))]))
            .await
            .unwrap();
        assert!(Pin::new(&mut link).poll_next(&mut cx).is_pending());
        assert!(link.single.is_none(), "moved into the buffer");
        let second = Frame::text("second");
        link.feed(second.clone()).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut d = Decoder::new(Role::Client, 1 << 20, None);
            let mut b = BytesMut::new();
            let mut got = Vec::new();
            while got.len() < 3 && peer_rx.read_buf(&mut b).await.unwrap() > 0 {
                while let Ok(Some(f)) = d.decode(&mut b) {
                    got.push(f);
                }
            }
            got
        });
        link.flush().await.unwrap();
        assert_eq!(
            reader.await.unwrap(),
            vec![first, Frame::Pong(Bytes::from_static(b"p")), second]
        );
        assert_eq!(link.buffered_capacity(), 0);
    }

    /// Several frames and the start of one more arriving in one read: each is delivered,
    /// only what follows the first is buffered, and the buffer is released once the
    /// socket has nothing more.
    #[tokio::test]
    async fn frames_read_together_are_all_delivered_and_the_buffer_released() {
        let (a, mut peer) = tokio::io::duplex(1 << 16);
        let mut link = server(a);
        let frames = vec![
            Frame::binary(vec![9u8; 20]),
            Frame::text("two"),
            Frame::binary(vec![7u8; 3000]),
        ];
        let wire = client_wire(&frames);
        let cut = wire.len() - 1000;
        peer.write_all(&wire[..cut]).await.unwrap();
        assert_eq!(link.next().await.unwrap().unwrap(), frames[0]);
        assert!(link.buffered_capacity() > 0);
        assert_eq!(link.next().await.unwrap().unwrap(), frames[1]);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut link).poll_next(&mut cx).is_pending());
        peer.write_all(&wire[cut..]).await.unwrap();
        assert_eq!(link.next().await.unwrap().unwrap(), frames[2]);
        assert!(Pin::new(&mut link).poll_next(&mut cx).is_pending());
        assert_eq!(link.buffered_capacity(), 0);
    }
}
