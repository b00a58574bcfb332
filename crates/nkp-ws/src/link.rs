//! [`WsLink`]: a WebSocket session as an nkpacket [`Link`].

use std::any::Any;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use futures_sink::Sink;
use nkp_core::{CloseReason, Error, Frame, Link, LinkInfo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A byte stream a WebSocket runs on (TCP, TLS, or an upgraded HTTP connection).
pub trait WsIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> WsIo for T {}

/// A boxed [`WsIo`].
pub type BoxIo = Box<dyn WsIo>;

/// The WebSocket settings of a link: the largest message (and frame) accepted is
/// `max_message_size` (larger → close 1009).
pub(crate) fn ws_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

/// A WebSocket session (server or client side) as a [`Link`].
///
/// * Reading: text messages come as [`Frame::Text`], binary as [`Frame::Binary`]
///   (fragmented messages reassembled), pongs as [`Frame::Pong`], the peer's close as
///   [`Frame::Close`] followed by the end of the stream (the close reply is sent for us).
///   Pings are answered with exactly one pong and not passed up. A message larger than
///   `max_message_size` is answered with close 1009 and reported as
///   [`Error::MessageTooLarge`]; a protocol violation with close 1002 (bad UTF-8: 1007)
///   and [`Error::Protocol`].
/// * Writing: every frame kind is sent as such (client frames masked); a written
///   [`Frame::Close`] starts the close handshake, after which data can no longer be written.
///   Closing the sink sends close 1000 unless a close was already sent.
pub struct WsLink {
    ws: WebSocketStream<BoxIo>,
    info: LinkInfo,
    max_message_size: usize,
    /// A close frame to send because of a reading error, and the error to report after.
    failing: Option<(Option<CloseFrame>, Error)>,
    ended: bool,
    close_sent: bool,
    _guard: Option<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for WsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsLink").field("info", &self.info).finish()
    }
}

impl WsLink {
    pub(crate) fn new(ws: WebSocketStream<BoxIo>, info: LinkInfo, max_message_size: usize) -> Self {
        WsLink {
            ws,
            info,
            max_message_size,
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

    fn failure(&self, e: WsError) -> Option<(Option<CloseFrame>, Error)> {
        let close = |code: CloseCode, reason: &str| {
            Some(CloseFrame {
                code,
                reason: reason.to_string().into(),
            })
        };
        Some(match e {
            // a peer that drops the connection without a close frame ends the stream too
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return None,
            WsError::Capacity(c) => {
                let size = match c {
                    CapacityError::MessageTooLong { size, .. } => size,
                    CapacityError::TooManyHeaders => 0,
                };
                (
                    close(CloseCode::Size, "message too big"),
                    Error::MessageTooLarge {
                        size,
                        max: self.max_message_size,
                    },
                )
            }
            WsError::Utf8(s) => (
                close(CloseCode::Invalid, "invalid UTF-8"),
                Error::Protocol(format!("websocket: invalid UTF-8 in a text message: {s}")),
            ),
            WsError::Protocol(p) => (
                close(CloseCode::Protocol, "protocol error"),
                Error::Protocol(format!("websocket: {p}")),
            ),
            WsError::Io(e) => (None, Error::io("websocket read", Some(self.info.remote), e)),
            other => (None, Error::Protocol(format!("websocket: {other}"))),
        })
    }

    /// Sends the close frame of a failure, then reports the failure.
    fn poll_fail(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        let pending_close = self.failing.as_mut().and_then(|(c, _)| c.take());
        let mut give_up = false;
        if let Some(frame) = pending_close {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Pending => {
                    if let Some((c, _)) = self.failing.as_mut() {
                        *c = Some(frame);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {
                    self.close_sent = true;
                    give_up = Pin::new(&mut self.ws)
                        .start_send(Message::Close(Some(frame)))
                        .is_err();
                }
                Poll::Ready(Err(_)) => give_up = true,
            }
        }
        if !give_up && Pin::new(&mut self.ws).poll_flush(cx).is_pending() {
            return Poll::Pending;
        }
        self.ended = true;
        let (_, e) = self.failing.take().unwrap_or((None, Error::Closed(None)));
        Poll::Ready(e)
    }
}

fn sink_error(e: WsError, info: &LinkInfo) -> Error {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            Error::Closed(Some("the websocket is closed".into()))
        }
        WsError::Io(e) => Error::io("websocket write", Some(info.remote), e),
        WsError::Protocol(ProtocolError::SendAfterClosing) => {
            Error::Closed(Some("the websocket close handshake has started".into()))
        }
        other => Error::Protocol(format!("websocket: {other}")),
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
                return Poll::Ready(None);
            }
            let msg = match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Some(Ok(m)) => m,
                Some(Err(e)) => match this.failure(e) {
                    None => {
                        this.ended = true;
                        return Poll::Ready(None);
                    }
                    Some(f) => {
                        this.failing = Some(f);
                        continue;
                    }
                },
            };
            let frame = match msg {
                Message::Text(t) => Frame::Text(t.as_str().to_owned()),
                Message::Binary(b) => Frame::Binary(b),
                // answered by tungstenite (one pong), not passed up
                Message::Ping(_) | Message::Frame(_) => continue,
                Message::Pong(p) => Frame::Pong(p),
                Message::Close(c) => {
                    // send the close reply now (tungstenite would wait for the next read)
                    let _ = Pin::new(&mut this.ws).poll_flush(cx);
                    Frame::Close(c.map(|c| CloseReason {
                        code: u16::from(c.code),
                        reason: c.reason.as_str().to_owned(),
                    }))
                }
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }
}

impl Sink<Frame> for WsLink {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = &mut *self;
        Pin::new(&mut this.ws)
            .poll_ready(cx)
            .map_err(|e| sink_error(e, &this.info))
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), Error> {
        let msg = match frame {
            Frame::Binary(b) => Message::Binary(b),
            Frame::Text(t) => Message::Text(t.into()),
            Frame::Ping(p) => Message::Ping(p),
            Frame::Pong(p) => Message::Pong(p),
            Frame::Close(c) => {
                self.close_sent = true;
                Message::Close(c.map(|c| CloseFrame {
                    code: CloseCode::from(c.code),
                    reason: c.reason.into(),
                }))
            }
        };
        let this = &mut *self;
        Pin::new(&mut this.ws)
            .start_send(msg)
            .map_err(|e| sink_error(e, &this.info))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = &mut *self;
        Pin::new(&mut this.ws)
            .poll_flush(cx)
            .map_err(|e| sink_error(e, &this.info))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = &mut *self;
        if !this.close_sent {
            // a normal close (1000), unless the handshake already started
            if ready!(Pin::new(&mut this.ws).poll_ready(cx)).is_ok() {
                let _ = Pin::new(&mut this.ws).start_send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                })));
            }
            this.close_sent = true;
        }
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(sink_error(e, &this.info))),
        }
    }
}

impl Link for WsLink {
    fn info(&self) -> &LinkInfo {
        &self.info
    }
}
