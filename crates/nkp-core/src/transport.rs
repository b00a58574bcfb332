//! The transport trait every transport crate implements.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_core::Stream;
use futures_core::future::BoxFuture;

use crate::{BoxLink, Error, Options, TransportKind};

/// What to listen on.
#[derive(Debug, Clone)]
pub struct ListenRequest {
    /// The transport asked for (one of [`Transport::kinds`]).
    pub transport: TransportKind,
    /// Address to bind (port 0: an ephemeral port).
    pub addr: SocketAddr,
    /// The listener's options (framing, limits, TLS files, ...).
    pub options: Arc<Options>,
}

/// Where to connect.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The transport asked for (one of [`Transport::kinds`]).
    pub transport: TransportKind,
    /// Remote address.
    pub remote: SocketAddr,
    /// Connection options (framing, timeouts, host, path, TLS verification, ...).
    pub options: Arc<Options>,
}

/// What a listener produces.
pub enum Accepted {
    /// A new link, ready to use.
    Link(BoxLink),
    /// A new link whose handshake (TLS, ...) is still to run; the connection task drives it,
    /// so a slow peer never delays the listener.
    Pending(BoxFuture<'static, Result<BoxLink, Error>>),
    /// A datagram for a connection-less listener (`udp_no_connections`).
    Datagram {
        /// Who sent it.
        remote: SocketAddr,
        /// The datagram.
        data: Bytes,
    },
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accepted::Link(l) => write!(f, "Accepted::Link({:?})", l.info()),
            Accepted::Pending(_) => f.write_str("Accepted::Pending"),
            Accepted::Datagram { remote, data } => {
                write!(f, "Accepted::Datagram({remote}, {} bytes)", data.len())
            }
        }
    }
}

/// A bound listener: a stream of accepted links.
///
/// An `Err` item is a failure of one incoming connection (the listener goes on); `None` means
/// the listener itself ended. Dropping the listener closes its socket.
pub trait Listener: Stream<Item = Result<Accepted, Error>> + Send + Unpin + 'static {
    /// The bound address (with the real port when 0 was asked).
    fn local_addr(&self) -> SocketAddr;

    /// Opens a link to `remote` that shares this listener's socket (UDP, SCTP), so the
    /// remote sees the listener's port. Transports with one socket per connection return
    /// [`Error::Unsupported`].
    fn open(
        &self,
        remote: SocketAddr,
        options: Arc<Options>,
    ) -> BoxFuture<'static, Result<BoxLink, Error>> {
        let _ = (remote, options);
        Box::pin(async {
            Err(Error::Unsupported(
                "this transport cannot open links from its listener".into(),
            ))
        })
    }

    /// Sends one datagram from the listener's socket to `remote`, outside any connection
    /// (the original's `udp.send(listener, ip, port, bytes)`). Stream transports return
    /// [`Error::Unsupported`].
    fn send_datagram(
        &self,
        remote: SocketAddr,
        data: Bytes,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let _ = (remote, data);
        Box::pin(async {
            Err(Error::Unsupported(
                "this transport has no datagrams to send".into(),
            ))
        })
    }
}

/// A boxed [`Listener`].
pub type BoxListener = Box<dyn Listener>;

/// A transport: turns listen and connect requests into links.
///
/// Implemented by each transport crate (`nkp_tcp::TcpTransport`, ...); the `nkpacket` facade
/// only talks to transports through this trait.
pub trait Transport: Send + Sync + 'static {
    /// The transports this implementation serves (e.g. `[Tcp]`, or `[Ws, Wss]`).
    fn kinds(&self) -> &'static [TransportKind];

    /// Binds a listener.
    fn listen(&self, req: ListenRequest) -> BoxFuture<'static, Result<BoxListener, Error>>;

    /// Opens an outbound link, within `req.options.connect_timeout`.
    fn connect(&self, req: ConnectRequest) -> BoxFuture<'static, Result<BoxLink, Error>>;
}
