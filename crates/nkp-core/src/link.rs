//! Links: established, framed, bidirectional message channels.

use std::net::SocketAddr;

use futures_core::Stream;
use futures_sink::Sink;

use crate::{Error, Frame, TransportKind};

/// Addresses and metadata of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The transport the link runs on.
    pub transport: TransportKind,
    /// Local socket address (for connections sharing a listener socket: the listener's).
    pub local: SocketAddr,
    /// Remote socket address.
    pub remote: SocketAddr,
    /// Transport metadata (WebSocket host, path, sub-protocol).
    pub meta: LinkMeta,
}

/// Metadata some transports record on a link (used by connection reuse for ws/wss).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkMeta {
    /// Host the link was opened for (client) or the request's Host (server).
    pub host: Option<String>,
    /// Request path of a WebSocket or HTTP link.
    pub path: Option<String>,
    /// Negotiated WebSocket sub-protocol.
    pub ws_proto: Option<String>,
}

impl LinkInfo {
    /// A link description without metadata.
    pub fn new(transport: TransportKind, local: SocketAddr, remote: SocketAddr) -> Self {
        LinkInfo {
            transport,
            local,
            remote,
            meta: LinkMeta::default(),
        }
    }
}

/// An established, framed, bidirectional message channel.
///
/// Reading is a [`Stream`] of [`Frame`]s: `None` means the peer closed the link cleanly, an
/// `Err` is a transport failure (after which the link is done). Writing is a [`Sink`] of
/// frames with backpressure: `poll_ready` waits while the link's write buffer is full.
/// Closing the sink (`poll_close`) flushes and closes the link gracefully (TCP FIN, TLS
/// close_notify, WebSocket close frame).
///
/// The stream side must be cancel-safe (dropping a pending `next()` loses nothing), because
/// the connection engine polls it together with its command queue.
pub trait Link:
    Stream<Item = Result<Frame, Error>> + Sink<Frame, Error = Error> + Send + Unpin + 'static
{
    /// Addresses and metadata.
    fn info(&self) -> &LinkInfo;
}

/// A boxed [`Link`].
pub type BoxLink = Box<dyn Link>;
