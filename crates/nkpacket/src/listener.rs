//! Listeners: their description ([`ListenerInfo`]), their handle ([`ListenerHandle`]), the
//! listener task and the table of running listeners.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_core::future::BoxFuture;
use futures_util::StreamExt;
use nkp_core::{
    Accepted, BoxLink, BoxListener, Endpoint, Error, Options, TransportKind, UserState,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::conn::table::{ConnectionTable, IpCounter};
use crate::conn::{ConnSetup, Direction, LinkSource};
use crate::dynproto::ProtoRef;
use crate::protocol::{Handled, StopReason};

static NEXT_LISTENER: AtomicU64 = AtomicU64::new(1);

/// The description of a running listener.
#[derive(Clone)]
pub struct ListenerInfo(Arc<Inner>);

struct Inner {
    serial: u64,
    id: String,
    domain: String,
    protocol: Arc<str>,
    transport: TransportKind,
    local: SocketAddr,
    listen_ip: IpAddr,
    options: Arc<Options>,
    external_url: Option<String>,
}

impl ListenerInfo {
    /// The listener's id.
    pub fn id(&self) -> &str {
        &self.0.id
    }
    /// Its domain.
    pub fn domain(&self) -> &str {
        &self.0.domain
    }
    /// Name of its protocol (the scheme it was registered under; empty for none).
    pub fn protocol(&self) -> &str {
        &self.0.protocol
    }
    /// Its transport.
    pub fn transport(&self) -> TransportKind {
        self.0.transport
    }
    /// The bound address, with the real port.
    pub fn local(&self) -> SocketAddr {
        self.0.local
    }
    /// The IP address asked for (the bind address).
    pub fn listen_ip(&self) -> IpAddr {
        self.0.listen_ip
    }
    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.0.local.port()
    }
    /// Transport and bound address.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.0.transport, self.0.local)
    }
    /// The listener's options.
    pub fn options(&self) -> &Options {
        &self.0.options
    }
    /// The application's value (option `user_state`).
    pub fn user_state(&self) -> Option<&UserState> {
        self.0.options.user_state.as_ref()
    }
    /// External URL (http/https listeners).
    pub fn external_url(&self) -> Option<&str> {
        self.0.external_url.as_deref()
    }
    pub(crate) fn serial(&self) -> u64 {
        self.0.serial
    }
}

impl fmt::Debug for ListenerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerInfo")
            .field("id", &self.0.id)
            .field("domain", &self.0.domain)
            .field("protocol", &self.0.protocol)
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

/// Requests to a listener task.
pub(crate) enum ListenerCtl {
    Open {
        remote: SocketAddr,
        options: Arc<Options>,
        reply: oneshot::Sender<BoxFuture<'static, Result<BoxLink, Error>>>,
    },
    Datagram {
        remote: SocketAddr,
        data: Bytes,
        reply: oneshot::Sender<BoxFuture<'static, Result<(), Error>>>,
    },
}

/// A handle to a running listener.
#[derive(Clone)]
pub struct ListenerHandle {
    info: ListenerInfo,
    ctl: mpsc::Sender<ListenerCtl>,
    pub(crate) cancel: CancellationToken,
    done: CancellationToken,
}

impl fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListenerHandle({:?})", self.info)
    }
}

impl PartialEq for ListenerHandle {
    fn eq(&self, other: &Self) -> bool {
        self.info.serial() == other.info.serial()
    }
}

impl ListenerHandle {
    /// The listener's description.
    pub fn info(&self) -> &ListenerInfo {
        &self.info
    }

    /// True while the listener runs.
    pub fn is_running(&self) -> bool {
        !self.done.is_cancelled()
    }

    /// Stops the listener (and every connection that belongs to it) and waits until it
    /// has stopped. Stopping a stopped listener is fine.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.done.cancelled().await;
    }

    /// Resolves when the listener has stopped (for any reason).
    pub async fn stopped(&self) {
        self.done.cancelled().await
    }

    /// Sends a datagram from the listener's socket (UDP), outside any connection.
    pub async fn send_datagram(&self, remote: SocketAddr, data: Bytes) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.ctl
            .send(ListenerCtl::Datagram {
                remote,
                data,
                reply: tx,
            })
            .await
            .map_err(|_| Error::NoProcess)?;
        rx.await.map_err(|_| Error::NoProcess)?.await
    }

    /// Opens a link to `remote` over the listener's socket (UDP, SCTP).
    pub(crate) async fn open(
        &self,
        remote: SocketAddr,
        options: Arc<Options>,
    ) -> Result<BoxLink, Error> {
        let (tx, rx) = oneshot::channel();
        self.ctl
            .send(ListenerCtl::Open {
                remote,
                options,
                reply: tx,
            })
            .await
            .map_err(|_| Error::NoProcess)?;
        rx.await.map_err(|_| Error::NoProcess)?.await
    }
}

/// The running listeners, in start order.
#[derive(Default)]
pub(crate) struct ListenerTable {
    list: Mutex<Vec<ListenerHandle>>,
}

impl ListenerTable {
    pub(crate) fn all(&self) -> Vec<ListenerHandle> {
        self.list
            .lock()
            .iter()
            .filter(|l| l.is_running())
            .cloned()
            .collect()
    }

    fn insert(&self, h: ListenerHandle) {
        self.list.lock().push(h);
    }

    fn remove(&self, serial: u64) {
        self.list.lock().retain(|l| l.info.serial() != serial);
    }
}

/// Reopens a listener's socket after it failed (same address, same options).
pub(crate) type Rebind =
    Arc<dyn Fn() -> BoxFuture<'static, Result<BoxListener, Error>> + Send + Sync>;

/// Restart policy of a listener whose socket failed (§6.10): at most this many restarts
/// within [`RESTART_WINDOW`], then it stops for good.
const MAX_RESTARTS: usize = 10;
const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
const RESTART_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// What the listener task needs from the node.
pub(crate) struct ListenerStart {
    pub(crate) id: String,
    pub(crate) domain: String,
    pub(crate) proto: ProtoRef,
    pub(crate) transport: TransportKind,
    pub(crate) listen_ip: IpAddr,
    pub(crate) options: Arc<Options>,
    pub(crate) external_url: Option<String>,
    pub(crate) socket: BoxListener,
    pub(crate) rebind: Option<Rebind>,
    pub(crate) conns: Arc<ConnectionTable>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) callback_budget: std::time::Duration,
}

/// Registers a bound listener, runs `listen_init` and spawns its task.
pub(crate) fn spawn(table: &Arc<ListenerTable>, start: ListenerStart) -> ListenerHandle {
    let local = start.socket.local_addr();
    let info = ListenerInfo(Arc::new(Inner {
        serial: NEXT_LISTENER.fetch_add(1, Ordering::Relaxed),
        id: start.id,
        domain: start.domain,
        protocol: start.proto.name.clone(),
        transport: start.transport,
        local,
        listen_ip: start.listen_ip,
        options: start.options,
        external_url: start.external_url,
    }));
    let (ctl_tx, ctl_rx) = mpsc::channel(64);
    // A child of the node's shutdown token: a connection of this listener then watches
    // one token, which fires when the listener stops and when the node shuts down.
    let cancel = start.shutdown.child_token();
    let monitor = info.options().monitor.clone();
    let handle = ListenerHandle {
        info: info.clone(),
        ctl: ctl_tx,
        cancel: cancel.clone(),
        done: CancellationToken::new(),
    };
    table.insert(handle.clone());
    start.proto.proto.listen_init(&info);
    tracing::info!(listener = %info.endpoint(), id = info.id(), domain = info.domain(), "listener started");
    let span = tracing::info_span!("listener", endpoint = %info.endpoint(), domain = info.domain());
    let inbound = Arc::new(inbound_options(info.options()));
    let task = ListenerTask {
        info,
        proto: start.proto,
        socket: start.socket,
        rebind: start.rebind,
        restarts: Vec::new(),
        callback_budget: start.callback_budget,
        per_ip: Arc::new(IpCounter::default()),
        inbound,
        conns: start.conns,
        shutdown: start.shutdown,
        monitor,
        cancel,
        done: handle.done.clone(),
        table: table.clone(),
    };
    tokio::spawn(task.run(ctl_rx).instrument(span));
    handle
}

struct ListenerTask {
    info: ListenerInfo,
    proto: ProtoRef,
    socket: BoxListener,
    rebind: Option<Rebind>,
    restarts: Vec<tokio::time::Instant>,
    callback_budget: std::time::Duration,
    per_ip: Arc<IpCounter>,
    /// The options every inbound connection gets (made once, shared).
    inbound: Arc<Options>,
    conns: Arc<ConnectionTable>,
    shutdown: CancellationToken,
    /// The listener stops when this is cancelled (option `monitor`).
    monitor: Option<CancellationToken>,
    /// Cancelled when the listener stops (and, as its child, when the node shuts down).
    cancel: CancellationToken,
    done: CancellationToken,
    table: Arc<ListenerTable>,
}

impl ListenerTask {
    async fn run(mut self, mut ctl: mpsc::Receiver<ListenerCtl>) {
        let reason = loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    break if self.shutdown.is_cancelled() {
                        StopReason::Shutdown
                    } else {
                        StopReason::Normal
                    };
                }
                _ = monitor_ended(&self.monitor) => break StopReason::Normal,
                cmd = ctl.recv() => match cmd {
                    Some(ListenerCtl::Open { remote, options, reply }) => {
                        let _ = reply.send(self.socket.open(remote, options));
                    }
                    Some(ListenerCtl::Datagram { remote, data, reply }) => {
                        let _ = reply.send(self.socket.send_datagram(remote, data));
                    }
                    None => break StopReason::Normal,
                },
                item = self.socket.next() => match item {
                    Some(Ok(Accepted::Link(link))) => self.spawn_conn(LinkSource::Ready(link)),
                    Some(Ok(Accepted::Pending(hs))) => self.spawn_conn(LinkSource::Pending(hs)),
                    Some(Ok(Accepted::Datagram { remote, data })) => {
                        if let Handled::Stop(r) = self.proto.proto.listen_parse(remote, data, &self.info) {
                            break r;
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "incoming connection failed"),
                    None => match self.restart().await {
                        Ok(()) => {}
                        Err(reason) => break reason,
                    },
                },
            }
        };
        tracing::info!(%reason, "listener stopping");
        // Connections of this listener watch this token.
        self.cancel.cancel();
        self.proto.proto.listen_stop(&reason, &self.info);
        self.table.remove(self.info.serial());
        drop(self.socket);
        self.done.cancel();
    }

    /// The socket failed: reopen it, unless it failed too often lately.
    async fn restart(&mut self) -> Result<(), StopReason> {
        let now = tokio::time::Instant::now();
        self.restarts
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        let Some(rebind) = self.rebind.clone() else {
            return Err(StopReason::Error("listening socket closed".into()));
        };
        if self.restarts.len() >= MAX_RESTARTS {
            tracing::error!("listening socket failed {MAX_RESTARTS} times in a minute: giving up");
            return Err(StopReason::Error(format!(
                "listening socket closed; {MAX_RESTARTS} restarts in {} s",
                RESTART_WINDOW.as_secs()
            )));
        }
        self.restarts.push(now);
        tokio::select! {
            r = stop_requested(&self.cancel, &self.shutdown, &self.monitor) => return Err(r),
            _ = tokio::time::sleep(RESTART_DELAY) => {}
        }
        // Reopening may take a while (bind retries): a stop still ends it.
        let reopened = tokio::select! {
            r = stop_requested(&self.cancel, &self.shutdown, &self.monitor) => return Err(r),
            r = rebind() => r,
        };
        match reopened {
            Ok(socket) => {
                tracing::warn!(
                    restarts = self.restarts.len(),
                    "listening socket failed; reopened"
                );
                self.socket = socket;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "listening socket failed and cannot be reopened");
                Err(StopReason::Error(format!(
                    "listening socket closed and could not be reopened: {e}"
                )))
            }
        }
    }

    fn spawn_conn(&self, link: LinkSource) {
        let slot = match self.conns.reserve() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "incoming connection refused");
                crate::metrics::refused(
                    self.info.transport().as_str(),
                    self.info.id(),
                    "max_connections",
                );
                return;
            }
        };
        let opts = self.info.options();
        self.proto.proto.spawn(ConnSetup {
            link,
            id: self.info.id().to_string(),
            domain: self.info.domain().to_string(),
            protocol_name: self.proto.name.clone(),
            listen: Some(self.info.local()),
            listener_id: Some(self.info.id().to_string()),
            direction: Direction::Inbound,
            options: self.inbound.clone(),
            listener_stop: Some(self.cancel.clone()),
            shutdown: self.shutdown.clone(),
            slot,
            ready: None,
            callback_budget: self.callback_budget,
            per_ip: opts
                .max_connections_per_ip
                .map(|limit| (self.per_ip.clone(), limit)),
        });
    }
}

async fn monitor_ended(monitor: &Option<CancellationToken>) {
    match monitor {
        Some(m) => m.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Options an inbound connection inherits from its listener (§1.8): everything but the
/// listener-only filters and the monitor (connections die with the listener anyway).
fn inbound_options(listener: &Options) -> Options {
    let mut o = listener.clone();
    o.monitor = None;
    o
}

/// Resolves when a listener that is not accepting is told to stop (its token, or its
/// monitor, which it watches itself: its token is the node's child), with the reason.
async fn stop_requested(
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
    monitor: &Option<CancellationToken>,
) -> StopReason {
    tokio::select! {
        _ = cancel.cancelled() => {
            if shutdown.is_cancelled() {
                StopReason::Shutdown
            } else {
                StopReason::Normal
            }
        }
        _ = monitor_ended(monitor) => StopReason::Normal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::atomic::AtomicBool;
    use std::task::{Context, Poll};
    use std::time::Duration;

    /// A listening socket that fails at once.
    struct Ended(SocketAddr);

    impl futures_core::Stream for Ended {
        type Item = Result<Accepted, Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(None)
        }
    }

    impl nkp_core::Listener for Ended {
        fn local_addr(&self) -> SocketAddr {
            self.0
        }
    }

    /// A listener whose socket fails at once and whose `rebind` never completes (it notes
    /// that it was called).
    fn failing_listener(
        options: Options,
        shutdown: CancellationToken,
    ) -> (ListenerHandle, Arc<AtomicBool>) {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let rebound = Arc::new(AtomicBool::new(false));
        let r = rebound.clone();
        let rebind: Rebind = Arc::new(move || {
            r.store(true, Ordering::SeqCst);
            Box::pin(std::future::pending())
        });
        let start = ListenerStart {
            id: "l".into(),
            domain: "d".into(),
            proto: ProtoRef::none(),
            transport: TransportKind::Tcp,
            listen_ip: addr.ip(),
            options: Arc::new(options),
            external_url: None,
            socket: Box::new(Ended(addr)),
            rebind: Some(rebind),
            conns: Arc::new(ConnectionTable::new(10)),
            shutdown,
            callback_budget: Duration::from_secs(1),
        };
        let table = Arc::new(ListenerTable::default());
        (spawn(&table, start), rebound)
    }

    /// The node shuts down while the listener is reopening its failed socket (a bind that
    /// hangs, or retries): it stops at once, as `Shutdown`.
    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_hanging_reopen() {
        let shutdown = CancellationToken::new();
        let (handle, rebound) = failing_listener(Options::default(), shutdown.clone());
        // past the restart delay: the listener is now inside `rebind`
        tokio::time::sleep(RESTART_DELAY + Duration::from_millis(10)).await;
        assert!(
            rebound.load(Ordering::SeqCst),
            "the listener did not try to reopen"
        );
        shutdown.cancel();
        let t0 = tokio::time::Instant::now();
        if tokio::time::timeout(Duration::from_secs(60), handle.stopped())
            .await
            .is_err()
        {
            panic!("the listener did not stop while reopening its socket");
        }
        assert_eq!(t0.elapsed(), Duration::ZERO, "the clock moved");
    }

    /// The monitor ends while the listener waits to reopen its failed socket: it stops
    /// at once, without reopening the socket (the monitor's child token ended that wait
    /// before the listener watched its monitor itself).
    #[tokio::test(start_paused = true)]
    async fn monitor_ends_the_restart_delay() {
        let monitor = CancellationToken::new();
        let mut options = Options::default();
        options.monitor = Some(monitor.clone());
        let (handle, rebound) = failing_listener(options, CancellationToken::new());
        // The socket has failed; the listener waits before reopening it.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        monitor.cancel();
        let t0 = tokio::time::Instant::now();
        if tokio::time::timeout(Duration::from_secs(60), handle.stopped())
            .await
            .is_err()
        {
            panic!("the listener did not stop when its monitor ended");
        }
        assert!(
            !rebound.load(Ordering::SeqCst),
            "the socket was reopened after the monitor ended"
        );
        assert_eq!(t0.elapsed(), Duration::ZERO, "the clock moved");
    }
}
