//! The [`Protocol`] trait: what a user writes once to run over every transport.
//!
//! Every callback has a default that behaves as the original NkPACKET did when the callback
//! was absent, so a protocol implements only what it needs.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use nkp_core::{Frame, Framing, Options, TransportKind};

use crate::conn::{ConnInfo, Connection};
use crate::listener::ListenerInfo;

pub use nkp_dns::TransportRule;

/// What `conn_init` decides.
pub enum Init<S> {
    /// Run with this state.
    Ok(S),
    /// Run with this state, bridged "up" to another connection (§6.8).
    Bridge(S, Connection),
    /// Do not run: stop right away with this reason.
    Stop(StopReason),
}

/// What `parse` decides about a received unit.
pub enum Parse<M> {
    /// Go on.
    Continue,
    /// Encode this message and write it on this connection now.
    Reply(M),
    /// Write several messages on this connection now, in order.
    ReplyMany(Vec<M>),
    /// Bridge to another connection (§6.8). The frame given (usually the unit just received)
    /// is forwarded to it through the bridge.
    Bridge(Connection, Option<Frame>),
    /// Stop the connection with this reason.
    Stop(StopReason),
}

/// What `timeout` decides when the idle timer expires.
pub enum Timeout {
    /// Keep the connection; the idle timer starts again.
    Keep,
    /// Stop with this reason.
    Stop(StopReason),
}

/// What `bridge` decides about a unit received while bridged.
pub enum BridgeAction {
    /// Send this to the peer.
    Forward(Frame),
    /// Drop the unit.
    Skip,
    /// Stop this connection.
    Stop(StopReason),
}

/// What `handle` (user messages sent with [`Connection::cast`]) decides.
pub enum Handled {
    /// Go on.
    Continue,
    /// Stop with this reason.
    Stop(StopReason),
}

/// Direction of a bridge, seen from the connection being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeDir {
    /// This connection asked for the bridge.
    Up,
    /// The peer asked for the bridge.
    Down,
}

/// Why a connection or listener stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Normal end: peer closed, idle timeout, explicit stop, listener stopped, ...
    Normal,
    /// The idle timer expired and the protocol had no `timeout` answer.
    IdleTimeout,
    /// Keepalives went unanswered: the peer is gone.
    KeepaliveTimeout,
    /// The peer closed the connection.
    PeerClosed,
    /// The listener the connection belonged to stopped.
    ListenerStopped,
    /// The bridge peer ended.
    BridgeDown,
    /// A transport error (read, write, handshake).
    Error(String),
    /// A protocol callback panicked.
    Panic(&'static str),
    /// A protocol callback kept its thread longer than the node's callback budget
    /// (protocol code must not block).
    Blocked(&'static str, std::time::Duration),
    /// Writing a reply failed.
    ReplyError(String),
    /// The node is shutting down.
    Shutdown,
    /// A reason chosen by protocol code.
    Custom(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Normal => f.write_str("normal"),
            StopReason::IdleTimeout => f.write_str("idle timeout"),
            StopReason::KeepaliveTimeout => f.write_str("keepalive timeout (peer unresponsive)"),
            StopReason::PeerClosed => f.write_str("peer closed"),
            StopReason::ListenerStopped => f.write_str("listener stopped"),
            StopReason::BridgeDown => f.write_str("bridge peer down"),
            StopReason::Error(e) => write!(f, "error: {e}"),
            StopReason::Panic(cb) => write!(f, "protocol callback {cb} panicked"),
            StopReason::Blocked(cb, took) => write!(
                f,
                "protocol callback {cb} blocked its thread for {} ms",
                took.as_millis()
            ),
            StopReason::ReplyError(e) => write!(f, "reply error: {e}"),
            StopReason::Shutdown => f.write_str("shutdown"),
            StopReason::Custom(r) => f.write_str(r),
        }
    }
}

/// A protocol: how messages are parsed and encoded, and what happens on each connection
/// event. Implement it once; nkpacket runs it as server, client or both over every transport.
///
/// `Message` is what [`crate::Nkpacket::send`] accepts and `parse` may reply with;
/// `State` is the per-connection state, created by `conn_init`.
///
/// ```
/// use bytes::Bytes;
/// use nkpacket::{Protocol, Parse, ConnInfo, Frame, TransportKind, EncodeError};
///
/// /// Upper-cases every line it receives.
/// struct Shout;
///
/// impl Protocol for Shout {
///     type Message = String;
///     type State = ();
///
///     fn default_port(&self, _t: TransportKind) -> Option<u16> { Some(7000) }
///
///     fn parse(&self, frame: Frame, _conn: &ConnInfo, _state: &mut ()) -> Parse<String> {
///         let text = String::from_utf8_lossy(frame.payload()).to_uppercase();
///         Parse::Reply(text)
///     }
///
///     fn encode(&self, msg: String, _conn: &ConnInfo, _state: &mut ()) -> Result<Frame, EncodeError> {
///         Ok(Frame::Binary(Bytes::from(msg)))
///     }
/// }
/// ```
pub trait Protocol: Send + Sync + 'static {
    /// The messages this protocol sends.
    type Message: Send + 'static;
    /// Per-connection state.
    type State: Default + Send + 'static;

    // ---- resolution (called while resolving a URI) ----

    /// Transports accepted for `scheme`, the first being the default (§2.5).
    /// `None` (the default): whatever the URI asks for is used.
    fn transports(&self, scheme: &str) -> Option<Vec<TransportRule>> {
        let _ = scheme;
        None
    }

    /// Default port of a transport; `None`: no default (port 0 stays 0).
    fn default_port(&self, transport: TransportKind) -> Option<u16> {
        let _ = transport;
        None
    }

    /// Maps a NAPTR service field (`"SIP+D2U"`) to a transport (§7.3). NAPTR is queried only
    /// when [`Protocol::uses_naptr`] is true.
    fn naptr(&self, scheme: &str, service: &str) -> Option<TransportKind> {
        let _ = (scheme, service);
        None
    }

    /// Whether NAPTR records are looked up for this protocol.
    fn uses_naptr(&self) -> bool {
        false
    }

    /// Options merged under the caller's options on every resolution.
    fn resolve_options(&self) -> Options {
        Options::default()
    }

    /// Names of protocol-specific options accepted in URIs (they land in
    /// [`Options::extra`]); any other unknown URI option is an error.
    fn extra_options(&self) -> &'static [&'static str] {
        &[]
    }

    /// Framing of stream transports when the `tcp_packet` option is not given
    /// (for instance a codec that finds message boundaries by Content-Length).
    fn framing(&self) -> Option<Framing> {
        None
    }

    // ---- connection callbacks (run in the connection's task) ----

    /// A connection is ready (after the transport handshakes, before any data).
    fn conn_init(&self, conn: &ConnInfo) -> Init<Self::State> {
        let _ = conn;
        Init::Ok(Self::State::default())
    }

    /// One received unit: a datagram, a stream chunk or frame, a WebSocket message.
    /// Default: the unit is logged and dropped.
    fn parse(
        &self,
        frame: Frame,
        conn: &ConnInfo,
        state: &mut Self::State,
    ) -> Parse<Self::Message> {
        let _ = state;
        tracing::warn!(conn = %conn, len = frame.len(), "protocol has no parse callback: data dropped");
        Parse::Continue
    }

    /// The peer closed a stream connection (the original's `conn_parse(close)`); the
    /// connection stops after this.
    fn peer_closed(&self, conn: &ConnInfo, state: &mut Self::State) {
        let _ = (conn, state);
    }

    /// Encodes a message for the wire. Default: an error (send [`Frame`]s or [`Bytes`]
    /// directly to bypass encoding).
    fn encode(
        &self,
        msg: Self::Message,
        conn: &ConnInfo,
        state: &mut Self::State,
    ) -> Result<Frame, EncodeError> {
        let _ = (msg, conn, state);
        Err(EncodeError::new("the protocol has no encode callback"))
    }

    /// The idle timer expired. Default: stop.
    fn timeout(&self, conn: &ConnInfo, state: &mut Self::State) -> Timeout {
        let _ = (conn, state);
        Timeout::Stop(StopReason::IdleTimeout)
    }

    /// A unit received while bridged (§6.8). Default: forwarded unchanged.
    fn bridge(
        &self,
        frame: Frame,
        dir: BridgeDir,
        conn: &ConnInfo,
        state: &mut Self::State,
    ) -> BridgeAction {
        let _ = (dir, conn, state);
        BridgeAction::Forward(frame)
    }

    /// An application message sent with [`Connection::cast`]. Default: logged and ignored.
    fn handle(
        &self,
        msg: Box<dyn Any + Send>,
        conn: &ConnInfo,
        state: &mut Self::State,
    ) -> Handled {
        let _ = (msg, state);
        tracing::warn!(conn = %conn, "protocol has no handle callback: message ignored");
        Handled::Continue
    }

    /// The connection stopped (called exactly once). `state` is `None` when `conn_init`
    /// did not produce one.
    fn conn_stop(&self, reason: &StopReason, conn: &ConnInfo, state: Option<Self::State>) {
        let _ = (reason, conn, state);
    }

    // ---- listener callbacks ----

    /// A listener started.
    fn listen_init(&self, listener: &ListenerInfo) {
        let _ = listener;
    }

    /// A datagram on a UDP listener with `udp_no_connections`. Default: dropped.
    fn listen_parse(&self, remote: SocketAddr, data: Bytes, listener: &ListenerInfo) -> Handled {
        tracing::warn!(listener = %listener.endpoint(), %remote, len = data.len(), "protocol has no listen_parse callback: datagram dropped");
        Handled::Continue
    }

    /// A listener stopped.
    fn listen_stop(&self, reason: &StopReason, listener: &ListenerInfo) {
        let _ = (reason, listener);
    }
}

/// A message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl EncodeError {
    /// An encode error with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        EncodeError(reason.into())
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}
