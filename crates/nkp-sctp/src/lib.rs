//! SCTP transport for nkpacket: kernel SCTP, one one-to-many socket per listener, one link
//! per association.
//!
//! [`SctpTransport`] implements [`nkp_core::Transport`] for [`TransportKind::Sctp`]
//! (spec §10):
//!
//! * **listen** opens one one-to-many (`SOCK_SEQPACKET`) socket bound to the address (IPv4,
//!   or IPv6-only for IPv6; port 0: an ephemeral port), with address reuse and
//!   `SCTP_INITMSG` from `sctp_out_streams` / `sctp_in_streams` (default 10 / 10). It
//!   subscribes to association change and shutdown notifications; each new association
//!   yields one [`SctpLink`] when its first message arrives ([`SctpListener`]).
//! * **open** ([`nkp_core::Listener::open`]) starts an association from a listener's socket
//!   (so the peer sees the listener's port) and returns its link once it is up, within
//!   `connect_timeout`. The link's addresses are the association's real remote and the
//!   listener's local address.
//! * **connect** without a listener does the same from a fresh one-to-many socket on an
//!   ephemeral port, owned by the link.
//!
//! Messages keep their boundaries (one [`nkp_core::Frame::Binary`] per message, reassembled
//! when the kernel delivers it in pieces) and are sent in order on stream 0. The end of an
//! association (shutdown or abort by the peer) ends its link's stream; dropping or closing
//! a link shuts its association down gracefully (`SCTP_EOF`).
//!
//! On a kernel without SCTP every call fails with [`Error::Unsupported`]
//! ("SCTP is not supported by this kernel ..."); [`is_supported`] tells beforehand. The
//! tests of this crate run in a small VM with a stock Debian kernel there
//! (`cargo xtask sctp-vm`).
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), nkp_core::Error> {
//! use futures_util::{SinkExt, StreamExt};
//! use nkp_core::{Accepted, Frame, Link, Options};
//! use nkp_sctp::SctpTransport;
//! use std::sync::Arc;
//!
//! let sctp = SctpTransport::new();
//! let mut listener = sctp.bind("127.0.0.1:0".parse().unwrap(), Arc::new(Options::new())).await?;
//! let mut client = sctp.connect_link(listener.local_addr(), &Options::new()).await?;
//! client.send(Frame::binary(&b"hello"[..])).await?;
//!
//! // The first message of a new association yields a link holding it.
//! let Some(Ok(Accepted::Link(mut server))) = listener.next().await else { panic!() };
//! assert_eq!(server.next().await.unwrap()?, Frame::binary(&b"hello"[..]));
//! server.send(Frame::binary(&b"world"[..])).await?;
//! assert_eq!(client.next().await.unwrap()?, Frame::binary(&b"world"[..]));
//! # Ok(()) }
//! ```

mod link;
mod listener;
mod sys;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use futures_core::future::BoxFuture;
use socket2::Domain;
use tokio::sync::mpsc;

use nkp_core::options::defaults;
use nkp_core::{
    BoxLink, BoxListener, ConnectRequest, Error, ListenRequest, Options, Transport, TransportKind,
};

pub use link::SctpLink;
pub use listener::{SctpListener, Streams};

use listener::{RecvCtx, Shared, Sock, SockConfig, spawn_receiver};

/// Default depth of a link's receive queue, in messages.
pub const DEFAULT_LINK_QUEUE: usize = 1024;
/// Default depth of a listener's queue of new links not yet taken.
pub const DEFAULT_ACCEPT_QUEUE: usize = 1024;

/// The start of the error message on a kernel without SCTP.
pub const UNSUPPORTED: &str = "SCTP is not supported by this kernel";

/// Maps a `socket()` failure: no SCTP in the kernel becomes [`Error::Unsupported`].
pub(crate) fn socket_error(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT) => Error::Unsupported(format!(
            "{UNSUPPORTED} (socket(IPPROTO_SCTP): {e}); load the `sctp` kernel module, \
             or run SCTP tests with `cargo xtask sctp-vm`"
        )),
        _ => Error::io("socket", None, e),
    }
}

/// Whether this kernel opens SCTP sockets (probed once per process).
///
/// ```
/// // On a kernel without SCTP, every call of the transport reports it:
/// if !nkp_sctp::is_supported() {
///     let e = nkp_sctp::check_supported().unwrap_err();
///     assert!(e.to_string().starts_with(nkp_sctp::UNSUPPORTED));
/// }
/// ```
pub fn is_supported() -> bool {
    check_supported().is_ok()
}

/// `Ok` when this kernel opens SCTP sockets, else the [`Error::Unsupported`] every call
/// returns (probed once per process with `socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP)`).
pub fn check_supported() -> Result<(), Error> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let res = PROBE.get_or_init(|| match sys::socket(Domain::IPV4) {
        Ok(_) => Ok(()),
        Err(e) => match socket_error(e) {
            Error::Unsupported(msg) => Err(msg),
            // Something else (no file descriptors left, ...): not a verdict on SCTP.
            _ => Ok(()),
        },
    });
    res.clone().map_err(Error::Unsupported)
}

/// The SCTP transport. Cheap to clone; settings apply to sockets created afterwards.
///
/// ```
/// use nkp_core::{Transport, TransportKind};
/// let sctp = nkp_sctp::SctpTransport::new().with_link_queue(256);
/// assert_eq!(sctp.kinds(), &[TransportKind::Sctp]);
/// ```
#[derive(Debug, Clone)]
pub struct SctpTransport {
    link_queue: usize,
    accept_queue: usize,
}

impl Default for SctpTransport {
    fn default() -> Self {
        Self::new()
    }
}

fn sock_config(options: &Options, listen: bool) -> SockConfig {
    SockConfig {
        out_streams: options
            .sctp_out_streams
            .unwrap_or(defaults::SCTP_OUT_STREAMS),
        in_streams: options.sctp_in_streams.unwrap_or(defaults::SCTP_IN_STREAMS),
        listen,
    }
}

impl SctpTransport {
    /// The transport with default queue depths.
    pub fn new() -> Self {
        SctpTransport {
            link_queue: DEFAULT_LINK_QUEUE,
            accept_queue: DEFAULT_ACCEPT_QUEUE,
        }
    }

    /// Depth of each link's receive queue (when full, the listener waits: see
    /// [`SctpListener`]).
    pub fn with_link_queue(mut self, messages: usize) -> Self {
        self.link_queue = messages.max(1);
        self
    }

    /// Depth of a listener's queue of new links not yet taken from it.
    pub fn with_accept_queue(mut self, links: usize) -> Self {
        self.accept_queue = links.max(1);
        self
    }

    /// Binds a listener on `addr` (port 0: an ephemeral port) and starts its receive task.
    /// [`Transport::listen`] is this, boxed.
    ///
    /// Options read: `sctp_out_streams`, `sctp_in_streams`, `max_message_size`,
    /// `connect_timeout` (for [`SctpListener::open_link`]).
    pub async fn bind(
        &self,
        addr: SocketAddr,
        options: Arc<Options>,
    ) -> Result<SctpListener, Error> {
        check_supported()?;
        let sock = Arc::new(Sock::bind(addr, sock_config(&options, true))?);
        tracing::debug!(local = %sock.local(), "SCTP listener bound");
        let shared = Shared::new(
            sock.clone(),
            self.link_queue,
            options.effective_max_message_size(),
        );
        let (tx, rx) = mpsc::channel(self.accept_queue);
        let task = spawn_receiver(
            shared.clone(),
            RecvCtx {
                sock,
                accept: Some(tx),
            },
        );
        Ok(SctpListener::new(
            shared,
            rx,
            options.effective_connect_timeout(),
            task,
        ))
    }

    /// A link to `remote` over a fresh one-to-many socket of its own, bound to an
    /// ephemeral port (`0.0.0.0:0` or `[::]:0`), once the association is up (within
    /// `connect_timeout`). [`Transport::connect`] is this, boxed.
    pub async fn connect_link(
        &self,
        remote: SocketAddr,
        options: &Options,
    ) -> Result<SctpLink, Error> {
        check_supported()?;
        let bind: SocketAddr = if remote.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = Arc::new(Sock::bind(bind, sock_config(options, false))?);
        let shared = Shared::new(
            sock.clone(),
            self.link_queue,
            options.effective_max_message_size(),
        );
        let task = spawn_receiver(shared.clone(), RecvCtx { sock, accept: None });
        let link = shared
            .open(remote, options.effective_connect_timeout())
            .await?;
        Ok(link.with_task(task))
    }
}

fn check_kind(t: TransportKind) -> Result<(), Error> {
    if t == TransportKind::Sctp {
        Ok(())
    } else {
        Err(Error::InvalidTransport(t.to_string()))
    }
}

impl Transport for SctpTransport {
    fn kinds(&self) -> &'static [TransportKind] {
        &[TransportKind::Sctp]
    }

    fn listen(&self, req: ListenRequest) -> BoxFuture<'static, Result<BoxListener, Error>> {
        let this = self.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let l = this.bind(req.addr, req.options).await?;
            Ok(Box::new(l) as BoxListener)
        })
    }

    /// Outbound SCTP without a listener: a fresh one-to-many socket on an ephemeral port.
    /// (The facade normally opens SCTP links through a listener, spec §5.6, so the peer
    /// sees the listener's port.)
    fn connect(&self, req: ConnectRequest) -> BoxFuture<'static, Result<BoxLink, Error>> {
        let this = self.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let l = this.connect_link(req.remote, &req.options).await?;
            Ok(Box::new(l) as BoxLink)
        })
    }
}
