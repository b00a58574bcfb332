//! The one-to-many socket, its association table and receive task, and the listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_core::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use socket2::{Domain, SockAddr, Socket};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use nkp_core::{Accepted, BoxLink, Error, Listener, Options};

use crate::link::SctpLink;
use crate::sys::{self, AssocId, AssocState, Notification};

/// Receive buffer: a message larger than this arrives in several pieces and is reassembled.
const RECV_BUFFER: usize = 64 * 1024;
/// Consecutive hard receive errors after which a receive task gives up.
const MAX_RECV_ERRORS: u32 = 100;

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A non-blocking one-to-many SCTP socket registered with tokio.
#[derive(Debug)]
pub(crate) struct Sock {
    pub(crate) fd: AsyncFd<Socket>,
    local: SocketAddr,
}

/// Settings of a new socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SockConfig {
    pub(crate) out_streams: u16,
    pub(crate) in_streams: u16,
    /// Accept incoming associations (`listen()`).
    pub(crate) listen: bool,
}

impl Sock {
    /// Opens, configures and binds a socket (and listens, when asked).
    pub(crate) fn bind(addr: SocketAddr, cfg: SockConfig) -> Result<Sock, Error> {
        let domain = if addr.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = sys::socket(domain).map_err(crate::socket_error)?;
        let io = |op: &'static str| move |e| Error::io(op, Some(addr), e);
        if addr.is_ipv6() {
            s.set_only_v6(true).map_err(io("setsockopt IPV6_V6ONLY"))?;
        }
        s.set_reuse_address(true)
            .map_err(io("setsockopt SO_REUSEADDR"))?;
        sys::set_init_msg(s.as_fd(), cfg.out_streams, cfg.in_streams)
            .map_err(io("setsockopt SCTP_INITMSG"))?;
        sys::configure(s.as_fd()).map_err(io("setsockopt SCTP_EVENT"))?;
        s.bind(&SockAddr::from(addr)).map_err(io("bind"))?;
        if cfg.listen {
            s.listen(1024).map_err(io("listen"))?;
        }
        let local = s
            .local_addr()
            .map_err(io("getsockname"))?
            .as_socket()
            .unwrap_or(addr);
        let fd = sys::register(s).map_err(io("register"))?;
        Ok(Sock { fd, local })
    }

    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Sends an empty message with `flags` (`SCTP_EOF`, `SCTP_ABORT`) to `assoc`, without
    /// waiting: best effort.
    pub(crate) fn signal(&self, assoc: AssocId, flags: u16) {
        if let Err(e) = sys::send(self.fd.get_ref().as_fd(), assoc, &[], flags) {
            tracing::debug!(assoc, flags, error = %e, "SCTP shutdown/abort not sent");
        }
    }
}

/// Negotiated stream counts of an association.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streams {
    /// Streams this side may send on.
    pub outbound: u16,
    /// Streams the peer may send on.
    pub inbound: u16,
}

/// A link being opened, waiting for `SCTP_COMM_UP`.
type Opener = oneshot::Sender<Result<SctpLink, Error>>;

/// What the table knows of one association.
enum Assoc {
    /// Outbound, waiting for `SCTP_COMM_UP`.
    Opening { remote: SocketAddr, reply: Opener },
    /// Up (inbound), no link yet: the first message makes one.
    Unclaimed {
        remote: SocketAddr,
        streams: Streams,
    },
    /// Feeding a live link.
    Linked {
        id: u64,
        tx: mpsc::Sender<Result<Bytes, Error>>,
    },
    /// The link is gone or the peer shut down: data is dropped until the association ends.
    Closing,
}

#[derive(Default)]
struct Table {
    assocs: HashMap<AssocId, Assoc>,
    closed: bool,
}

/// What a socket's links share: the socket, the association table.
pub(crate) struct Shared {
    sock: RwLock<Option<Arc<Sock>>>,
    local: SocketAddr,
    table: Mutex<Table>,
    next_id: AtomicU64,
    link_queue: usize,
    max_message: usize,
}

impl Shared {
    pub(crate) fn new(sock: Arc<Sock>, link_queue: usize, max_message: usize) -> Arc<Shared> {
        Arc::new(Shared {
            local: sock.local(),
            sock: RwLock::new(Some(sock)),
            table: Mutex::new(Table::default()),
            next_id: AtomicU64::new(1),
            link_queue: link_queue.max(1),
            max_message,
        })
    }

    /// The socket, unless the listener was stopped.
    pub(crate) fn sock(&self) -> Result<Arc<Sock>, Error> {
        self.sock
            .read()
            .clone()
            .ok_or_else(|| Error::Closed(Some("the SCTP listener was stopped".into())))
    }

    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Makes a link for `assoc` and registers it (the caller holds the table lock).
    fn make_link(
        self: &Arc<Self>,
        table: &mut Table,
        assoc: AssocId,
        remote: SocketAddr,
        streams: Streams,
    ) -> (SctpLink, mpsc::Sender<Result<Bytes, Error>>) {
        let (tx, rx) = mpsc::channel(self.link_queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        table
            .assocs
            .insert(assoc, Assoc::Linked { id, tx: tx.clone() });
        (
            SctpLink::new(self.clone(), assoc, id, remote, streams, rx),
            tx,
        )
    }

    /// A link is done with its association (dropped or closed): true when the caller
    /// should shut the association down (it was still up and fed this link).
    pub(crate) fn release(&self, assoc: AssocId, id: u64) -> bool {
        let mut t = self.table.lock();
        match t.assocs.get(&assoc) {
            Some(Assoc::Linked { id: live, .. }) if *live == id => {
                t.assocs.insert(assoc, Assoc::Closing);
                true
            }
            _ => false,
        }
    }

    /// Starts an association to `remote` and waits (up to `limit`) until it is up.
    pub(crate) async fn open(
        self: &Arc<Self>,
        remote: SocketAddr,
        limit: Duration,
    ) -> Result<SctpLink, Error> {
        if remote.is_ipv4() != self.local.is_ipv4() {
            return Err(Error::io(
                "connect",
                Some(remote),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "address family differs from the SCTP socket's {}",
                        self.local
                    ),
                ),
            ));
        }
        let sock = self.sock()?;
        let (reply, rx) = oneshot::channel();
        let assoc = {
            // Under the lock: the COMM_UP notification may be read before connectx returns.
            let mut t = self.table.lock();
            if t.closed {
                return Err(Error::Closed(Some("the SCTP listener was stopped".into())));
            }
            let assoc = sys::connectx(sock.fd.get_ref().as_fd(), remote)
                .map_err(|e| Error::io("connect", Some(remote), e))?;
            t.assocs.insert(assoc, Assoc::Opening { remote, reply });
            assoc
        };
        tracing::debug!(%remote, assoc, "SCTP association starting");
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(Error::Closed(Some("the SCTP listener was stopped".into()))),
            Err(_) => {
                let mut t = self.table.lock();
                // If it came up just now, the link was dropped with the reply, which shut
                // the association down; if it is still starting, abort it.
                if matches!(t.assocs.get(&assoc), Some(Assoc::Opening { .. })) {
                    t.assocs.remove(&assoc);
                    drop(t);
                    sock.signal(assoc, sys::SCTP_ABORT);
                }
                Err(Error::Timeout {
                    op: "connect",
                    after: limit,
                })
            }
        }
    }

    /// Aborts an association after a fatal error on it: its link's stream ends.
    fn abort(&self, assoc: AssocId) {
        let Some(sock) = self.sock.read().clone() else {
            return;
        };
        let mut t = self.table.lock();
        if let Some(Assoc::Linked { .. } | Assoc::Unclaimed { .. }) = t.assocs.get(&assoc) {
            t.assocs.insert(assoc, Assoc::Closing);
            drop(t);
            sock.signal(assoc, sys::SCTP_ABORT);
        }
    }

    /// Stops everything: links' streams end, sends fail, the socket closes (which shuts
    /// down its associations) once in-flight sends finish.
    pub(crate) fn close(&self) {
        {
            let mut t = self.table.lock();
            t.closed = true;
            t.assocs.clear();
        }
        if let Some(sock) = self.sock.write().take() {
            // Refuse new associations at once (a backlog of 0 turns listening off on a
            // one-to-many socket); the socket itself closes when its receive task stops.
            if let Err(e) = sock.fd.get_ref().listen(0) {
                tracing::debug!(error = %e, "SCTP listen(0) failed");
            }
        }
    }

    fn associations(&self) -> usize {
        self.table.lock().assocs.len()
    }

    /// Handles one notification.
    fn notify(self: &Arc<Self>, n: Notification, from: Option<SocketAddr>, accepting: bool) {
        let Some(sock) = self.sock.read().clone() else {
            return;
        };
        let mut t = self.table.lock();
        if t.closed {
            return;
        }
        match n {
            Notification::AssocChange {
                state,
                error,
                outbound,
                inbound,
                assoc,
            } => {
                let streams = Streams { outbound, inbound };
                match state {
                    AssocState::CommUp => match t.assocs.remove(&assoc) {
                        Some(Assoc::Opening { remote, reply }) => {
                            // The address the kernel reports, else the one asked for.
                            let remote = from.unwrap_or(remote);
                            tracing::debug!(%remote, assoc, ?streams, "SCTP association up (outbound)");
                            let (link, _) = self.make_link(&mut t, assoc, remote, streams);
                            drop(t);
                            // If the caller gave up, the link comes back and its drop shuts
                            // the association down.
                            let _ = reply.send(Ok(link));
                        }
                        Some(other) => {
                            t.assocs.insert(assoc, other);
                        }
                        None => {
                            if accepting && let Some(remote) = from {
                                tracing::debug!(%remote, assoc, ?streams, "SCTP association up (inbound)");
                                t.assocs.insert(assoc, Assoc::Unclaimed { remote, streams });
                            } else {
                                drop(t);
                                sock.signal(assoc, sys::SCTP_ABORT);
                            }
                        }
                    },
                    AssocState::Restart | AssocState::Unknown(_) => {
                        tracing::debug!(assoc, ?state, "SCTP association change");
                    }
                    AssocState::CommLost | AssocState::ShutdownComplete | AssocState::CantStart => {
                        tracing::debug!(assoc, ?state, error, "SCTP association ended");
                        if let Some(Assoc::Opening { remote, reply }) = t.assocs.remove(&assoc) {
                            let why = if state == AssocState::CantStart {
                                "the SCTP association could not be started"
                            } else {
                                "the SCTP association was lost while starting"
                            };
                            let _ = reply.send(Err(Error::io(
                                "connect",
                                Some(remote),
                                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, why),
                            )));
                        }
                        // A linked association's sender is dropped here: its stream ends.
                    }
                }
            }
            Notification::Shutdown { assoc } => {
                // The peer shut down: no more data will come; the link's stream ends.
                tracing::debug!(assoc, "SCTP peer shut down");
                if let Some(Assoc::Linked { .. } | Assoc::Unclaimed { .. }) = t.assocs.get(&assoc) {
                    t.assocs.insert(assoc, Assoc::Closing);
                }
            }
            Notification::Other(kind) => tracing::trace!(kind, "SCTP notification ignored"),
        }
    }

    /// Routes one complete message of `assoc`.
    async fn deliver(
        self: &Arc<Self>,
        assoc: AssocId,
        from: Option<SocketAddr>,
        data: Result<Bytes, Error>,
        accept: Option<&mpsc::Sender<Result<Accepted, Error>>>,
    ) {
        let (tx, accepted) = {
            let mut t = self.table.lock();
            if t.closed {
                return;
            }
            match t.assocs.get(&assoc) {
                Some(Assoc::Linked { tx, .. }) => (tx.clone(), None),
                Some(Assoc::Closing | Assoc::Opening { .. }) => return,
                entry => {
                    let (remote, streams) = match entry {
                        Some(Assoc::Unclaimed { remote, streams }) => (*remote, *streams),
                        _ => match from {
                            Some(remote) => (remote, Streams::default()),
                            None => return,
                        },
                    };
                    if accept.is_none() {
                        return;
                    }
                    let (link, tx) = self.make_link(&mut t, assoc, remote, streams);
                    (tx, Some(link))
                }
            }
        };
        if tx.send(data).await.is_err() {
            // The link was dropped meanwhile.
            return;
        }
        if let (Some(link), Some(accept)) = (accepted, accept) {
            tracing::trace!(remote = %link.remote(), assoc, "new SCTP link");
            // Waits while nobody takes accepted links (backpressure on the socket).
            let _ = accept.send(Ok(Accepted::Link(Box::new(link)))).await;
        }
    }
}

/// What the receive task works with.
pub(crate) struct RecvCtx {
    pub(crate) sock: Arc<Sock>,
    pub(crate) accept: Option<mpsc::Sender<Result<Accepted, Error>>>,
}

/// Spawns the receive task of `shared`'s socket.
pub(crate) fn spawn_receiver(shared: Arc<Shared>, ctx: RecvCtx) -> AbortOnDrop {
    let span = tracing::debug_span!("sctp_recv", local = %shared.local());
    AbortOnDrop(tokio::spawn(receive_loop(shared, ctx).instrument(span)))
}

async fn receive_loop(shared: Arc<Shared>, ctx: RecvCtx) {
    let mut buf = vec![0u8; RECV_BUFFER];
    // Messages being reassembled, by association (None: a notification).
    let mut partial: HashMap<Option<AssocId>, BytesMut> = HashMap::new();
    let mut too_large: HashMap<AssocId, usize> = HashMap::new();
    let mut errors = 0u32;
    loop {
        let r = ctx
            .sock
            .fd
            .async_io(Interest::READABLE, |s| sys::recv(s.as_fd(), &mut buf))
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, errors, "SCTP receive failed");
                if errors >= MAX_RECV_ERRORS {
                    if let Some(accept) = &ctx.accept {
                        let _ = accept.try_send(Err(Error::io("recv", Some(shared.local()), e)));
                    }
                    tracing::warn!("SCTP receive task stops after repeated errors");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        errors = 0;
        let key = if r.notification { None } else { r.assoc };
        let piece = &buf[..r.len];
        if !r.notification && r.assoc.is_none() {
            tracing::debug!("SCTP message without SCTP_RCVINFO dropped");
            continue;
        }
        // A message over `max_message_size`: its pieces are counted and dropped, the link
        // gets the error and the association is aborted.
        if let Some(assoc) = key {
            let so_far = partial.get(&key).map_or(0, BytesMut::len)
                + too_large.get(&assoc).copied().unwrap_or(0);
            if too_large.contains_key(&assoc) || so_far + piece.len() > shared.max_message {
                partial.remove(&key);
                too_large.insert(assoc, so_far + piece.len());
                if r.eor {
                    let size = too_large.remove(&assoc).unwrap_or(0);
                    let err = Error::MessageTooLarge {
                        size,
                        max: shared.max_message,
                    };
                    tracing::debug!(assoc, size, "SCTP message too large: association aborted");
                    shared
                        .deliver(assoc, r.from, Err(err), ctx.accept.as_ref())
                        .await;
                    shared.abort(assoc);
                }
                continue;
            }
        }
        // Reassemble messages larger than the buffer (partial delivery).
        let msg: Bytes = match (partial.remove(&key), r.eor) {
            (None, true) => Bytes::copy_from_slice(piece),
            (None, false) => {
                partial.insert(key, BytesMut::from(piece));
                continue;
            }
            (Some(mut acc), eor) => {
                acc.extend_from_slice(piece);
                if !eor {
                    partial.insert(key, acc);
                    continue;
                }
                acc.freeze()
            }
        };
        match key {
            None => match sys::parse_notification(&msg) {
                Some(n) => {
                    if let Notification::AssocChange { assoc, .. }
                    | Notification::Shutdown { assoc } = n
                    {
                        partial.remove(&Some(assoc));
                        too_large.remove(&assoc);
                    }
                    shared.notify(n, r.from, ctx.accept.is_some());
                }
                None => tracing::debug!(len = msg.len(), "short SCTP notification ignored"),
            },
            Some(assoc) => {
                shared
                    .deliver(assoc, r.from, Ok(msg), ctx.accept.as_ref())
                    .await;
            }
        }
    }
}

/// A bound SCTP listener: one one-to-many socket, a [`Stream`] of [`Accepted::Link`]s.
///
/// Each new association yields one [`SctpLink`] when its first message arrives (holding
/// that message); later messages of the association go to that link. Messages keep their
/// boundaries: one [`nkp_core::Frame::Binary`] per message.
///
/// [`SctpListener::open_link`] (and [`Listener::open`]) starts an association from this
/// socket, so the peer sees the listener's port.
///
/// A link whose queue is full makes the receive task wait (the kernel's receive window
/// then slows the peers down): SCTP is reliable, nothing is dropped. Dropping the listener
/// ends every link's stream, makes their sends fail with [`Error::Closed`], and closes the
/// socket, which shuts its associations down.
pub struct SctpListener {
    shared: Arc<Shared>,
    accept: mpsc::Receiver<Result<Accepted, Error>>,
    connect_timeout: Duration,
    _task: AbortOnDrop,
}

impl std::fmt::Debug for SctpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SctpListener")
            .field("local", &self.shared.local())
            .field("associations", &self.shared.associations())
            .finish()
    }
}

impl SctpListener {
    pub(crate) fn new(
        shared: Arc<Shared>,
        accept: mpsc::Receiver<Result<Accepted, Error>>,
        connect_timeout: Duration,
        task: AbortOnDrop,
    ) -> Self {
        SctpListener {
            shared,
            accept,
            connect_timeout,
            _task: task,
        }
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local()
    }

    /// Number of associations the listener tracks (up, starting or shutting down).
    pub fn associations(&self) -> usize {
        self.shared.associations()
    }

    /// Starts an association to `remote` from this listener's socket and returns its link
    /// once the association is up (`SCTP_COMM_UP`), within `options.connect_timeout`
    /// (else the listener's, else 30 s). The link's local address is the listener's, its
    /// remote the association's peer. Streams are the listener's (`SCTP_INITMSG`).
    pub async fn open_link(
        &self,
        remote: SocketAddr,
        options: &Options,
    ) -> Result<SctpLink, Error> {
        let limit = options.connect_timeout.unwrap_or(self.connect_timeout);
        self.shared.open(remote, limit).await
    }
}

impl Drop for SctpListener {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Stream for SctpListener {
    type Item = Result<Accepted, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.accept.poll_recv(cx)
    }
}

impl Listener for SctpListener {
    fn local_addr(&self) -> SocketAddr {
        self.shared.local()
    }

    fn open(
        &self,
        remote: SocketAddr,
        options: Arc<Options>,
    ) -> BoxFuture<'static, Result<BoxLink, Error>> {
        let shared = self.shared.clone();
        let limit = options.connect_timeout.unwrap_or(self.connect_timeout);
        Box::pin(async move {
            let link = shared.open(remote, limit).await?;
            Ok(Box::new(link) as BoxLink)
        })
    }
}
