//! UDP transport for nkpacket: connection-oriented UDP over one socket per listener, batched
//! I/O.
//!
//! [`UdpTransport`] implements [`nkp_core::Transport`] for [`TransportKind::Udp`]:
//!
//! * **listen** binds one socket per listener (IPv6-only for IPv6 addresses, no address
//!   reuse, 4 MiB receive and send buffers by default, fragmentation allowed so large
//!   datagrams go out instead of failing with `EMSGSIZE`). A receive task demultiplexes
//!   datagrams by remote address into per-peer [`UdpLink`]s (thousands of peers, one socket);
//!   see [`UdpListener`].
//! * **open** ([`nkp_core::Listener::open`]) makes a link to a remote over a listener's socket,
//!   so the remote sees the listener's port (spec §5.7).
//! * **connect** without a listener makes an *ephemeral* link (own socket on a random port),
//!   only when the caller opted in with `udp_ephemeral`.
//! * a [`DatagramInterceptor`] (STUN) sees every received datagram first.
//!
//! On Linux the sockets use quinn-udp (`recvmmsg` batches, GSO for runs of datagrams sent
//! together) with its "don't fragment" setting undone and GRO turned off; when its state
//! cannot be created the crate falls back to plain tokio `recv_from`/`send_to`.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), nkp_core::Error> {
//! use futures_util::{SinkExt, StreamExt};
//! use nkp_core::{Accepted, Frame, Link, Options};
//! use nkp_udp::UdpTransport;
//! use std::sync::Arc;
//!
//! let udp = UdpTransport::new();
//! let mut listener = udp.bind("127.0.0.1:0".parse().unwrap(), Arc::new(Options::new())).await?;
//! let server = listener.local_addr();
//!
//! let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
//! client.send_to(b"hello", server).await.unwrap();
//!
//! // The first datagram from a new peer yields a link holding it.
//! let Some(Ok(Accepted::Link(mut link))) = listener.next().await else { panic!() };
//! assert_eq!(link.info().remote, client.local_addr().unwrap());
//! assert_eq!(link.next().await.unwrap()?, Frame::binary(&b"hello"[..]));
//!
//! // Replies leave from the listener's port.
//! link.send(Frame::binary(&b"world"[..])).await?;
//! let mut buf = [0u8; 64];
//! let (n, from) = client.recv_from(&mut buf).await.unwrap();
//! assert_eq!((&buf[..n], from), (&b"world"[..], server));
//! # Ok(()) }
//! ```

mod intercept;
mod link;
mod listener;
mod queue;
mod socket;
mod sockopt;

use std::net::SocketAddr;
use std::sync::Arc;

use futures_core::future::BoxFuture;
use tokio::sync::mpsc;

use nkp_core::{
    BoxLink, BoxListener, ConnectRequest, Error, ListenRequest, Options, Transport, TransportKind,
};

pub use intercept::{DatagramInterceptor, Intercept, InterceptorFactory};
pub use link::UdpLink;
pub use listener::{UdpListener, UdpStats};

use listener::{RecvCtx, Shared, spawn_receiver};
use socket::{Sock, SockConfig};

/// Default `SO_RCVBUF` and `SO_SNDBUF` of UDP sockets (4 MiB each).
pub const DEFAULT_SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// Default depth of a link's receive queue, in datagrams.
pub const DEFAULT_LINK_QUEUE: usize = 1024;
/// Default depth of a listener's queue of new links / datagrams not yet taken.
pub const DEFAULT_ACCEPT_QUEUE: usize = 4096;

/// The UDP transport. Cheap to clone; settings apply to sockets created afterwards.
///
/// ```
/// use nkp_core::{Transport, TransportKind};
/// let udp = nkp_udp::UdpTransport::new().with_buffers(1 << 20, 1 << 20).with_link_queue(256);
/// assert_eq!(udp.kinds(), &[TransportKind::Udp]);
/// ```
#[derive(Clone)]
pub struct UdpTransport {
    recv_buffer: usize,
    send_buffer: usize,
    batched: bool,
    link_queue: usize,
    accept_queue: usize,
    interceptor: Option<InterceptorFactory>,
}

impl std::fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTransport")
            .field("recv_buffer", &self.recv_buffer)
            .field("send_buffer", &self.send_buffer)
            .field("batched", &self.batched)
            .field("link_queue", &self.link_queue)
            .field("accept_queue", &self.accept_queue)
            .field("interceptor", &self.interceptor.is_some())
            .finish()
    }
}

impl Default for UdpTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpTransport {
    /// The transport with default settings: 4 MiB socket buffers, batched I/O when
    /// available, no interceptor.
    pub fn new() -> Self {
        UdpTransport {
            recv_buffer: DEFAULT_SOCKET_BUFFER,
            send_buffer: DEFAULT_SOCKET_BUFFER,
            batched: true,
            link_queue: DEFAULT_LINK_QUEUE,
            accept_queue: DEFAULT_ACCEPT_QUEUE,
            interceptor: None,
        }
    }

    /// Sets `SO_RCVBUF` and `SO_SNDBUF` (bytes; 0 keeps the system default). Values above
    /// the system maximum are forced when the process may (`CAP_NET_ADMIN`), else capped.
    pub fn with_buffers(mut self, recv: usize, send: usize) -> Self {
        self.recv_buffer = recv;
        self.send_buffer = send;
        self
    }

    /// Uses quinn-udp's batched I/O when available (default `true`); `false` forces plain
    /// tokio `recv_from`/`send_to`.
    pub fn with_batched_io(mut self, on: bool) -> Self {
        self.batched = on;
        self
    }

    /// Depth of each link's receive queue (datagrams beyond it are dropped and counted).
    pub fn with_link_queue(mut self, datagrams: usize) -> Self {
        self.link_queue = datagrams.max(1);
        self
    }

    /// Depth of a listener's queue of accepted links / datagrams not yet taken from it.
    pub fn with_accept_queue(mut self, items: usize) -> Self {
        self.accept_queue = items.max(1);
        self
    }

    /// Installs an interceptor factory: at each listen it is called with the listener's
    /// options, and the interceptor it returns (if any) sees every datagram the listener
    /// receives before demultiplexing.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use nkp_udp::{DatagramInterceptor, Intercept, UdpTransport};
    ///
    /// struct DropAll;
    /// impl DatagramInterceptor for DropAll {
    ///     fn intercept(&self, _: &[u8], _: std::net::SocketAddr, _: std::net::SocketAddr) -> Intercept {
    ///         Intercept::Consumed
    ///     }
    /// }
    /// let udp = UdpTransport::new().with_interceptor(Arc::new(|opts: &nkp_core::Options| {
    ///     (opts.udp_stun_reply == Some(true)).then(|| Arc::new(DropAll) as Arc<dyn DatagramInterceptor>)
    /// }));
    /// ```
    pub fn with_interceptor(mut self, factory: InterceptorFactory) -> Self {
        self.interceptor = Some(factory);
        self
    }

    fn sock_config(&self) -> SockConfig {
        SockConfig {
            recv_buffer: self.recv_buffer,
            send_buffer: self.send_buffer,
            batched: self.batched,
            reuse_port: false,
        }
    }

    /// Binds a listener on `addr` (port 0: an ephemeral port) and starts its receive task.
    /// [`Transport::listen`] is this, boxed.
    ///
    /// Options read: `udp_max_size` (for links it creates), `udp_no_connections`, and
    /// whatever the interceptor factory reads.
    pub async fn bind(
        &self,
        addr: SocketAddr,
        options: Arc<Options>,
    ) -> Result<UdpListener, Error> {
        let cfg = SockConfig {
            reuse_port: options.wants_reuseport(),
            ..self.sock_config()
        };
        let sock = Arc::new(Sock::bind(addr, None, cfg)?);
        tracing::debug!(local = %sock.local(), batched = sock.is_batched(), gso = sock.gso_enabled(), "UDP listener bound");
        let shared = Shared::new(
            sock.clone(),
            self.link_queue,
            options.effective_udp_max_size(),
        );
        let (tx, rx) = mpsc::channel(self.accept_queue);
        let interceptor = self.interceptor.as_ref().and_then(|f| f(&options));
        let task = spawn_receiver(
            shared.clone(),
            RecvCtx {
                sock,
                accept: Some(tx),
                no_connections: options.udp_no_connections == Some(true),
                interceptor,
            },
        );
        Ok(UdpListener::new(shared, rx, task))
    }

    /// An ephemeral link to `remote`: a new socket bound to `0.0.0.0:0` (or `[::]:0`) and
    /// connected to `remote`, so only its datagrams are received. Its `udp_max_size` comes
    /// from `options`. [`Transport::connect`] is this, boxed, and requires the caller to
    /// opt in with `udp_ephemeral`.
    pub async fn connect_ephemeral(
        &self,
        remote: SocketAddr,
        options: &Options,
    ) -> Result<UdpLink, Error> {
        UdpLink::ephemeral(remote, options, self.sock_config(), self.link_queue).await
    }
}

fn check_kind(t: TransportKind) -> Result<(), Error> {
    if t == TransportKind::Udp {
        Ok(())
    } else {
        Err(Error::InvalidTransport(t.to_string()))
    }
}

impl Transport for UdpTransport {
    fn kinds(&self) -> &'static [TransportKind] {
        &[TransportKind::Udp]
    }

    fn listen(&self, req: ListenRequest) -> BoxFuture<'static, Result<BoxListener, Error>> {
        let this = self.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let l = this.bind(req.addr, req.options).await?;
            Ok(Box::new(l) as BoxListener)
        })
    }

    /// Outbound UDP without a listener. UDP "connections" normally go through a listener
    /// ([`nkp_core::Listener::open`]) so the remote sees the listener's port; this path is
    /// taken only when the caller sets `udp_ephemeral`, and then sends from a new socket on
    /// a random port. Without it, fails with [`Error::NoListeningTransport`].
    fn connect(&self, req: ConnectRequest) -> BoxFuture<'static, Result<BoxLink, Error>> {
        let this = self.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            if req.options.udp_ephemeral != Some(true) {
                return Err(Error::NoListeningTransport {
                    transport: TransportKind::Udp,
                    domain: req.options.domain_or_default().to_string(),
                    family: if req.remote.is_ipv4() { "IPv4" } else { "IPv6" },
                });
            }
            let l = this.connect_ephemeral(req.remote, &req.options).await?;
            Ok(Box::new(l) as BoxLink)
        })
    }
}
