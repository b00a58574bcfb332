//! The UDP listener: one socket, a receive task, and the demultiplexing table of per-peer
//! links.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_core::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tracing::Instrument;

use nkp_core::{Accepted, BoxLink, Error, Listener, Options};

use crate::intercept::{DatagramInterceptor, Intercept};
use crate::link::UdpLink;
use crate::queue;
use crate::socket::{MAX_UDP_PAYLOAD, RecvBuf, Sock, is_transient, send_error};

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

/// Counters of a listener (or of an ephemeral link's socket).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    links_created: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_accept_full: AtomicU64,
    dropped_unknown: AtomicU64,
    intercepted: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of a UDP listener's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams received on the socket.
    pub received: u64,
    /// Per-peer links created by incoming datagrams.
    pub links_created: u64,
    /// Datagrams dropped because their link's queue was full (a slow link).
    pub dropped_queue_full: u64,
    /// Datagrams dropped because the listener stream's queue was full (nobody accepting).
    pub dropped_accept_full: u64,
    /// Datagrams from unexpected senders on a socket that creates no links.
    pub dropped_unknown: u64,
    /// Datagrams taken by the interceptor (consumed or answered).
    pub intercepted: u64,
}

/// One demultiplexing entry: the queue of a live link.
struct PeerEntry {
    id: u64,
    tx: queue::Sender,
}

#[derive(Default)]
struct Peers {
    /// Looked up for every datagram: foldhash (randomly seeded per map) instead of SipHash,
    /// ~200 instructions less per datagram.
    map: HashMap<SocketAddr, PeerEntry, foldhash::fast::RandomState>,
    closed: bool,
}

/// What a listener's links share: the socket, the demultiplexing table, the counters.
pub(crate) struct Shared {
    sock: RwLock<Option<Arc<Sock>>>,
    local: SocketAddr,
    peers: Mutex<Peers>,
    next_id: AtomicU64,
    link_queue: usize,
    max_size: usize,
    pub(crate) counters: Counters,
}

/// The demultiplexing key of a remote address (IPv6 flow labels are not part of it).
pub(crate) fn peer_key(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(mut a) => {
            a.set_flowinfo(0);
            SocketAddr::V6(a)
        }
        a => a,
    }
}

impl Shared {
    pub(crate) fn new(sock: Arc<Sock>, link_queue: usize, max_size: usize) -> Arc<Shared> {
        Arc::new(Shared {
            local: sock.local(),
            sock: RwLock::new(Some(sock)),
            peers: Mutex::new(Peers::default()),
            next_id: AtomicU64::new(1),
            link_queue: link_queue.max(1),
            max_size,
            counters: Counters::default(),
        })
    }

    /// The socket, unless the listener was stopped.
    pub(crate) fn sock(&self) -> Result<Arc<Sock>, Error> {
        self.sock
            .read()
            .clone()
            .ok_or_else(|| Error::Closed(Some("the UDP listener was stopped".into())))
    }

    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Creates a link to `remote` and registers it in the table (replacing any previous
    /// entry for that remote), with `first` already queued. `None` once closed.
    pub(crate) fn register(
        self: &Arc<Self>,
        remote: SocketAddr,
        max_size: usize,
        first: Option<Bytes>,
    ) -> Option<UdpLink> {
        let (tx, rx) = queue::queue(self.link_queue);
        if let Some(d) = first {
            // A fresh queue has room for one.
            let _ = tx.try_push(d);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut peers = self.peers.lock();
            if peers.closed {
                return None;
            }
            peers.map.insert(peer_key(remote), PeerEntry { id, tx });
        }
        Some(UdpLink::new(self.clone(), remote, id, max_size, rx))
    }

    /// Removes the entry of a dropped link (if it was not replaced since).
    pub(crate) fn unregister(&self, remote: SocketAddr, id: u64) {
        let key = peer_key(remote);
        let mut peers = self.peers.lock();
        if peers.map.get(&key).is_some_and(|e| e.id == id) {
            peers.map.remove(&key);
        }
    }

    /// Stops everything: links' streams end, sends fail, the socket closes once in-flight
    /// sends finish.
    pub(crate) fn close(&self) {
        {
            let mut peers = self.peers.lock();
            peers.closed = true;
            peers.map.clear();
        }
        self.sock.write().take();
    }

    fn links(&self) -> usize {
        self.peers.lock().map.len()
    }

    fn stats(&self) -> UdpStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UdpStats {
            received: get(&c.received),
            links_created: get(&c.links_created),
            dropped_queue_full: get(&c.dropped_queue_full),
            dropped_accept_full: get(&c.dropped_accept_full),
            dropped_unknown: get(&c.dropped_unknown),
            intercepted: get(&c.intercepted),
        }
    }

    /// Routes one received datagram. Returns false when the listener is gone.
    fn dispatch(self: &Arc<Self>, ctx: &RecvCtx, from: SocketAddr, mut data: Bytes) -> bool {
        let from = peer_key(from);
        bump(&self.counters.received);
        if let Some(i) = &ctx.interceptor {
            match i.intercept(&data, from, self.local) {
                Intercept::Pass => {}
                Intercept::Consumed => {
                    bump(&self.counters.intercepted);
                    return true;
                }
                Intercept::Reply(reply) => {
                    bump(&self.counters.intercepted);
                    send_reply(&ctx.sock, reply, from);
                    return true;
                }
            }
        }
        if ctx.no_connections {
            let Some(accept) = &ctx.accept else {
                return true;
            };
            return match accept.try_send(Ok(Accepted::Datagram { remote: from, data })) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    bump(&self.counters.dropped_accept_full);
                    tracing::debug!(%from, "listener queue full: datagram dropped");
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            };
        }
        {
            let mut peers = self.peers.lock();
            if let Some(entry) = peers.map.get(&from) {
                match entry.tx.try_push(data) {
                    Ok(()) => return true,
                    Err(queue::PushError::Full) => {
                        bump(&self.counters.dropped_queue_full);
                        tracing::debug!(%from, "link queue full: datagram dropped");
                        return true;
                    }
                    Err(queue::PushError::Closed(d)) => {
                        peers.map.remove(&from);
                        data = d;
                    }
                }
            }
        }
        let Some(accept) = &ctx.accept else {
            bump(&self.counters.dropped_unknown);
            tracing::debug!(%from, "datagram from an unexpected sender dropped");
            return true;
        };
        let permit = match accept.try_reserve() {
            Ok(p) => p,
            Err(TrySendError::Full(())) => {
                bump(&self.counters.dropped_accept_full);
                tracing::debug!(%from, "listener queue full: datagram from a new peer dropped");
                return true;
            }
            Err(TrySendError::Closed(())) => return false,
        };
        match self.register(from, self.max_size, Some(data)) {
            Some(link) => {
                bump(&self.counters.links_created);
                tracing::trace!(%from, "new UDP link");
                permit.send(Ok(Accepted::Link(Box::new(link))));
                true
            }
            None => false,
        }
    }
}

/// Sends an interceptor's reply without ever blocking the receive loop.
fn send_reply(sock: &Arc<Sock>, reply: Bytes, to: SocketAddr) {
    match sock.try_send_to(&reply, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let sock = sock.clone();
            tokio::spawn(async move {
                if let Err(e) = sock.send_to(&reply, to).await {
                    tracing::debug!(%to, error = %e, "interceptor reply not sent");
                }
            });
        }
        Err(e) => tracing::debug!(%to, error = %e, "interceptor reply not sent"),
    }
}

/// What the receive task works with.
pub(crate) struct RecvCtx {
    pub(crate) sock: Arc<Sock>,
    pub(crate) accept: Option<mpsc::Sender<Result<Accepted, Error>>>,
    pub(crate) no_connections: bool,
    pub(crate) interceptor: Option<Arc<dyn DatagramInterceptor>>,
}

/// Spawns the receive task of `shared`'s socket.
pub(crate) fn spawn_receiver(shared: Arc<Shared>, ctx: RecvCtx) -> AbortOnDrop {
    let span = tracing::debug_span!("udp_recv", local = %shared.local());
    AbortOnDrop(tokio::spawn(receive_loop(shared, ctx).instrument(span)))
}

async fn receive_loop(shared: Arc<Shared>, ctx: RecvCtx) {
    let mut rb = RecvBuf::for_sock(&ctx.sock);
    let mut batch = Vec::with_capacity(64);
    let mut errors = 0u32;
    loop {
        batch.clear();
        if let Err(e) = ctx.sock.recv_batch(&mut rb, &mut batch).await {
            if is_transient(&e) {
                tracing::trace!(error = %e, "transient UDP receive error");
                continue;
            }
            errors += 1;
            tracing::warn!(error = %e, errors, "UDP receive failed");
            if let Some(accept) = &ctx.accept {
                let _ = accept.try_send(Err(Error::io("recv", Some(shared.local()), e)));
            }
            if errors >= MAX_RECV_ERRORS {
                tracing::warn!("UDP receive task stops after repeated errors");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        errors = 0;
        let busy = batch.len() > 1;
        for (from, data) in batch.drain(..) {
            if !shared.dispatch(&ctx, from, data) {
                tracing::debug!("listener gone; UDP receive task ends");
                return;
            }
        }
        if busy {
            // Under a burst, let the links just fed (often woken onto this worker) drain
            // their queues before the next batch, rather than overflowing them: the
            // socket buffer holds the rest meanwhile.
            tokio::task::yield_now().await;
        }
    }
}

/// A bound UDP listener: a [`Stream`] of [`Accepted`] items.
///
/// * Each datagram from a remote address without a link creates a [`UdpLink`] (yielded as
///   [`Accepted::Link`], holding that first datagram); later datagrams from that address go
///   to that link's queue. A full queue drops the datagram (counted in
///   [`UdpStats::dropped_queue_full`]): one slow peer never stalls the others.
/// * With `udp_no_connections`, every datagram is yielded as [`Accepted::Datagram`].
/// * An interceptor (see [`crate::UdpTransport::with_interceptor`]) sees every datagram
///   first.
///
/// Dropping a link removes its entry (the next datagram from that peer creates a new link).
/// Dropping the listener ends every link's stream, makes their sends fail with
/// [`Error::Closed`], and closes the socket.
pub struct UdpListener {
    shared: Arc<Shared>,
    accept: mpsc::Receiver<Result<Accepted, Error>>,
    _task: AbortOnDrop,
}

impl std::fmt::Debug for UdpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpListener")
            .field("local", &self.shared.local())
            .field("links", &self.links())
            .finish()
    }
}

impl UdpListener {
    pub(crate) fn new(
        shared: Arc<Shared>,
        accept: mpsc::Receiver<Result<Accepted, Error>>,
        task: AbortOnDrop,
    ) -> Self {
        UdpListener {
            shared,
            accept,
            _task: task,
        }
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local()
    }

    /// Number of live per-peer links in the demultiplexing table.
    pub fn links(&self) -> usize {
        self.shared.links()
    }

    /// The listener's counters.
    pub fn stats(&self) -> UdpStats {
        self.shared.stats()
    }

    /// True when the socket uses quinn-udp's batched I/O (recvmmsg, GSO), false on the
    /// plain tokio fallback.
    pub fn is_batched(&self) -> bool {
        self.shared.sock().is_ok_and(|s| s.is_batched())
    }

    /// True while sends may use GSO (several datagrams in one system call).
    pub fn gso_enabled(&self) -> bool {
        self.shared.sock().is_ok_and(|s| s.gso_enabled())
    }

    /// Opens a link to `remote` over this listener's socket (spec §5.7): the remote sees
    /// the listener's address, and its datagrams reach the returned link.
    ///
    /// The link's `udp_max_size` is the one in `options`, else the listener's. **If a link
    /// for `remote` already exists, the new one replaces it in the demultiplexing table**:
    /// the old link keeps sending, but its stream ends (it receives nothing more). Callers that want reuse (the
    /// facade's connection table) look up their own table first.
    pub fn open_link(&self, remote: SocketAddr, options: &Options) -> Result<UdpLink, Error> {
        if remote.is_ipv4() != self.shared.local().is_ipv4() {
            return Err(Error::io(
                "open",
                Some(remote),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "address family differs from the listener's {}",
                        self.shared.local()
                    ),
                ),
            ));
        }
        let max = options.udp_max_size.unwrap_or(self.shared.max_size);
        self.shared
            .register(remote, max, None)
            .ok_or_else(|| Error::Closed(Some("the UDP listener was stopped".into())))
    }

    /// Sends one datagram from the listener's socket to `remote`, outside any link. No size
    /// check beyond the OS's (whose `EMSGSIZE` is [`Error::UdpTooLarge`]).
    pub async fn send_to(&self, remote: SocketAddr, data: &[u8]) -> Result<(), Error> {
        let sock = self.shared.sock()?;
        sock.send_to(data, remote)
            .await
            .map_err(|e| send_error(e, data.len(), MAX_UDP_PAYLOAD, remote))
    }
}

impl Drop for UdpListener {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Stream for UdpListener {
    type Item = Result<Accepted, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.accept.poll_recv(cx)
    }
}

impl Listener for UdpListener {
    fn local_addr(&self) -> SocketAddr {
        self.shared.local()
    }

    fn open(
        &self,
        remote: SocketAddr,
        options: Arc<Options>,
    ) -> BoxFuture<'static, Result<BoxLink, Error>> {
        let res = self.open_link(remote, &options);
        Box::pin(async move { res.map(|l| Box::new(l) as BoxLink) })
    }

    fn send_datagram(
        &self,
        remote: SocketAddr,
        data: Bytes,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let sock = self.shared.sock();
        Box::pin(async move {
            sock?
                .send_to(&data, remote)
                .await
                .map_err(|e| send_error(e, data.len(), MAX_UDP_PAYLOAD, remote))
        })
    }
}
