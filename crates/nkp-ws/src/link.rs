//! [`WsLink`]: a WebSocket session as an nkpacket [`Link`], the I/O shell around the pure
//! [`Decoder`] and [`Encoder`].

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

#[cfg(test)]
use bytes::Bytes;
use bytes::BytesMut;
use futures_core::Stream;
use futures_sink::Sink;
use nkp_core::{CloseReason, Error, Frame, Link, LinkInfo};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::{Decoder, Encoder};
use crate::deflate::DeflateParams;
use crate::frame::Role;

/// A byte stream a WebSocket runs on (TCP, TLS, or an upgraded HTTP connection).
pub trait WsIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> WsIo for T {}

/// A boxed [`WsIo`].
pub type BoxIo = Box<dyn WsIo>;

/// Above this many unsent bytes, `poll_ready` waits for the socket (backpressure), and so
/// does reading while automatic replies (pongs) pile up for a peer that does not read.
const HIGH_WATER: usize = 64 * 1024;

/// Smallest read; a frame in progress asks for up to [`MAX_READ`] at once.
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

    /// Bytes held in buffers by the link itself (read and write buffers' capacity; not the
    /// compressor state): zero for an idle link.
    pub fn buffered_capacity(&self) -> usize {
        self.rbuf.capacity() + self.wbuf.capacity()
    }

    /// Queues a frame the link sends by itself (pong, close reply); errors are dropped
    /// (only over-long control payloads, which a received frame cannot have).
    fn queue(&mut self, frame: &Frame) {
        if !self.write_dead {
            self.compact();
            let _ = self.encoder.encode(frame, &mut self.wbuf);
        }
    }

    /// Drops the written part of the write buffer before more is appended.
    fn compact(&mut self) {
        if self.wpos > 0 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }

    fn pending_write(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Writes the write buffer out; releases it once empty.
    fn poll_write_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            let n = match ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf[self.wpos..])) {
                Ok(0) => {
                    self.write_dead = true;
                    self.wbuf = Vec::new();
                    self.wpos = 0;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => n,
                Err(e) => {
                    self.write_dead = true;
                    self.wbuf = Vec::new();
                    self.wpos = 0;
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
            match this.decoder.decode(&mut this.rbuf) {
                Ok(Some(Frame::Ping(p))) => {
                    if !this.close_sent {
                        this.queue(&Frame::Pong(p));
                    }
                    continue;
                }
                Ok(Some(Frame::Close(c))) => {
                    if !this.close_sent {
                        this.close_sent = true;
                        // echo the code (RFC 6455 §5.5.1)
                        let reply = Frame::Close(c.as_ref().map(|r| CloseReason {
                            code: r.code,
                            reason: String::new(),
                        }));
                        this.queue(&reply);
                    }
                    this.ended = true;
                    this.rbuf = BytesMut::new();
                    if !this.write_dead {
                        // sent at once; if the socket is full, the next poll finishes it
                        let _ = this.poll_flush_all(cx);
                    }
                    return Poll::Ready(Some(Ok(Frame::Close(c))));
                }
                // the read buffer stays for the next message; it is released when a read
                // finds nothing to read
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => {
                    let close = Frame::close(e.close_code(), e.close_reason());
                    this.failing = Some((Some(close), e.into()));
                    continue;
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
                Poll::Pending => {
                    if this.rbuf.is_empty() {
                        // idle: hold no buffer while waiting
                        this.rbuf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
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
}
