//! TCP transport for nkpacket: listen and connect over IPv4 and IPv6 with raw or
//! length-prefix framing.
//!
//! [`TcpTransport`] implements [`nkp_core::Transport`] for `tcp`: a listen request binds a
//! [`TcpStreamListener`] (a stream of accepted links, at most `tcp_max_connections` alive at a
//! time), a connect request opens a link within `connect_timeout`. Links are
//! [`StreamLink`]s framed by the `tcp_packet` option (raw, or a 1/2/4-byte big-endian length
//! prefix), with frames capped at `max_message_size` (16 MiB by default; a peer declaring a
//! larger frame makes the link yield [`Error::MessageTooLarge`], and the declared length is
//! never allocated up front) and writes bounded by `send_timeout`.
//!
//! The [`socket`] module holds the socket set-up shared with the other stream transports
//! (TLS, WebSocket, HTTP).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), nkp_core::Error> {
//! use std::sync::Arc;
//! use futures_util::{SinkExt, StreamExt};
//! use nkp_core::{Accepted, ConnectRequest, Frame, Framing, ListenRequest, Options, Transport, TransportKind};
//! use nkp_tcp::TcpTransport;
//!
//! let tcp = TcpTransport::default();
//! let options = Arc::new(Options::default().with_framing(Framing::Prefix4));
//!
//! // A listener on an ephemeral loopback port.
//! let mut listener = tcp
//!     .listen(ListenRequest {
//!         transport: TransportKind::Tcp,
//!         addr: "127.0.0.1:0".parse().unwrap(),
//!         options: options.clone(),
//!     })
//!     .await?;
//! let addr = listener.local_addr();
//!
//! // A client link to it.
//! let mut client = tcp
//!     .connect(ConnectRequest { transport: TransportKind::Tcp, remote: addr, options })
//!     .await?;
//! client.send(Frame::binary(&b"hello"[..])).await?;
//!
//! // The server side receives the frame whole and answers.
//! let Some(Ok(Accepted::Link(mut server))) = listener.next().await else { panic!() };
//! assert_eq!(server.info().remote, client.info().local);
//! let frame = server.next().await.unwrap()?;
//! assert_eq!(frame, Frame::binary(&b"hello"[..]));
//! server.send(frame).await?;
//! assert_eq!(client.next().await.unwrap()?, Frame::binary(&b"hello"[..]));
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use nkp_core::{
    BoxLink, BoxListener, ConnectRequest, Error, LinkInfo, ListenRequest, Options, StreamCodec,
    StreamLink, Transport, TransportKind,
};
use tokio::net::TcpStream;

mod listener;
mod send_timeout;
pub mod socket;

pub use listener::{ACCEPT_BACKOFF, AcceptedStream, TcpStreamListener};
pub use send_timeout::SendTimeoutStream;

/// A TCP link: a [`StreamLink`] over a TCP socket with the `send_timeout` options applied.
pub type TcpLink = StreamLink<SendTimeoutStream<TcpStream>>;

/// Default number of bind retries while the address is in use (as the original).
pub const DEFAULT_BIND_RETRIES: u32 = 5;

/// Default pause between bind retries (as the original).
pub const DEFAULT_BIND_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The TCP transport (kind `tcp`). Cheap to clone; holds only the bind-retry settings.
///
/// See the [crate documentation](crate) for an example.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    bind_retries: u32,
    bind_retry_delay: Duration,
}

impl Default for TcpTransport {
    fn default() -> Self {
        TcpTransport {
            bind_retries: DEFAULT_BIND_RETRIES,
            bind_retry_delay: DEFAULT_BIND_RETRY_DELAY,
        }
    }
}

impl TcpTransport {
    /// The transport with the default settings.
    pub fn new() -> Self {
        TcpTransport::default()
    }

    /// Sets how often a bind that finds the address in use is retried, and the pause between
    /// tries (default [`DEFAULT_BIND_RETRIES`] × [`DEFAULT_BIND_RETRY_DELAY`]; `0` fails at
    /// once).
    pub fn with_bind_retry(mut self, retries: u32, delay: Duration) -> Self {
        self.bind_retries = retries;
        self.bind_retry_delay = delay;
        self
    }

    /// Binds a listener on `addr` (port 0: an ephemeral port) with `options`.
    ///
    /// Errors: [`Error::Io`] from the bind (`eaddrinuse` once the retries are spent,
    /// `eaddrnotavail`, `eacces`, ...).
    pub async fn bind_listener(
        &self,
        addr: SocketAddr,
        options: Arc<Options>,
    ) -> Result<TcpStreamListener, Error> {
        let listener = socket::bind_shared_with_retry(
            addr,
            options.wants_reuseport(),
            self.bind_retries,
            self.bind_retry_delay,
        )
        .await?;
        let listener = TcpStreamListener::new(listener, options)?;
        tracing::debug!(local = %listener.local_addr(), "tcp listener bound");
        Ok(listener)
    }

    /// Connects to `remote` within the options' `connect_timeout` and returns the framed link.
    ///
    /// Errors: [`Error::Timeout`] (op `"connect"`), [`Error::Io`] (`econnrefused`, ...).
    pub async fn connect_link(
        &self,
        remote: SocketAddr,
        options: &Options,
    ) -> Result<TcpLink, Error> {
        let stream = socket::connect(remote, options.effective_connect_timeout()).await?;
        let local = stream
            .local_addr()
            .map_err(|e| Error::io("local address", Some(remote), e))?;
        tracing::debug!(%local, %remote, "tcp connected");
        Ok(tcp_link(stream, options, local, remote))
    }
}

fn check_kind(kind: TransportKind) -> Result<(), Error> {
    if kind == TransportKind::Tcp {
        Ok(())
    } else {
        Err(Error::InvalidTransport(format!(
            "{kind} (the tcp transport serves only tcp)"
        )))
    }
}

impl Transport for TcpTransport {
    fn kinds(&self) -> &'static [TransportKind] {
        &[TransportKind::Tcp]
    }

    fn listen(&self, req: ListenRequest) -> BoxFuture<'static, Result<BoxListener, Error>> {
        let this = self.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let listener = this.bind_listener(req.addr, req.options).await?;
            Ok(Box::new(listener) as BoxListener)
        })
    }

    fn connect(&self, req: ConnectRequest) -> BoxFuture<'static, Result<BoxLink, Error>> {
        let this = self.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let link = this.connect_link(req.remote, &req.options).await?;
            Ok(Box::new(link) as BoxLink)
        })
    }
}

/// Wraps a connected stream in a link with the options' framing, `max_message_size` and
/// `send_timeout`, the given addresses and no metadata.
pub fn tcp_link(
    stream: TcpStream,
    options: &Options,
    local: SocketAddr,
    remote: SocketAddr,
) -> TcpLink {
    let codec = StreamCodec::new(&options.framing(), options.effective_max_message_size());
    let io = SendTimeoutStream::from_options(stream, options);
    StreamLink::new(io, codec, LinkInfo::new(TransportKind::Tcp, local, remote))
}

/// Turns an established TCP stream into a boxed link framed by `options`, with its real local
/// and peer addresses. The stream is used as it is: sockets from [`socket::connect`] and
/// [`TcpStreamListener`] are already configured; call [`socket::configure`] on others.
///
/// Errors: [`Error::Io`] if the socket has no local or peer address (it is not connected).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use nkp_core::{Options, TransportKind};
/// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let addr = server.local_addr().unwrap();
/// let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
/// let link = nkp_tcp::link_from_stream(stream, &Options::default()).unwrap();
/// assert_eq!(link.info().transport, TransportKind::Tcp);
/// assert_eq!(link.info().remote, addr);
/// # }
/// ```
pub fn link_from_stream(stream: TcpStream, options: &Options) -> Result<BoxLink, Error> {
    let remote = stream
        .peer_addr()
        .map_err(|e| Error::io("peer address", None, e))?;
    let local = stream
        .local_addr()
        .map_err(|e| Error::io("local address", Some(remote), e))?;
    Ok(Box::new(tcp_link(stream, options, local, remote)))
}
