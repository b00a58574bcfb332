//! Connections: their description ([`ConnInfo`]), their handle ([`Connection`]) and the
//! engine task that runs each one.

pub(crate) mod engine;
mod keepalive;
pub(crate) mod table;

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_core::future::BoxFuture;
use futures_util::task::AtomicWaker;
use nkp_core::{BoxLink, Error, Frame, LinkMeta, Options, TransportKind, UserState};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::protocol::StopReason;

pub(crate) use engine::ConnSetup;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Accepted by a listener.
    Inbound,
    /// Opened by `connect` or `send`.
    Outbound,
}

/// The description of a connection (the original's *NkPort*): identity, addresses, options.
/// Cheap to clone.
#[derive(Clone)]
pub struct ConnInfo(Arc<ConnInfoInner>);

struct ConnInfoInner {
    serial: u64,
    id: String,
    domain: String,
    protocol: Arc<str>,
    transport: TransportKind,
    local: SocketAddr,
    remote: SocketAddr,
    listen: Option<SocketAddr>,
    listener_id: Option<String>,
    direction: Direction,
    options: Arc<Options>,
    user_state: Option<UserState>,
    meta: LinkMeta,
}

impl ConnInfo {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: String,
        domain: String,
        protocol: Arc<str>,
        link: &nkp_core::LinkInfo,
        listen: Option<SocketAddr>,
        listener_id: Option<String>,
        direction: Direction,
        options: Arc<Options>,
        user_state: Option<UserState>,
    ) -> Self {
        ConnInfo(Arc::new(ConnInfoInner {
            serial: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            id,
            domain,
            protocol,
            transport: link.transport,
            local: link.local,
            remote: link.remote,
            listen,
            listener_id,
            direction,
            options,
            user_state,
            meta: link.meta.clone(),
        }))
    }

    /// The connection's id (inbound connections carry their listener's id).
    pub fn id(&self) -> &str {
        &self.0.id
    }
    /// The connection's domain.
    pub fn domain(&self) -> &str {
        &self.0.domain
    }
    /// Name of the protocol (the scheme it was registered under; empty for none).
    pub fn protocol(&self) -> &str {
        &self.0.protocol
    }
    /// Transport.
    pub fn transport(&self) -> TransportKind {
        self.0.transport
    }
    /// Local address (for UDP: the listener's socket).
    pub fn local(&self) -> SocketAddr {
        self.0.local
    }
    /// Remote address.
    pub fn remote(&self) -> SocketAddr {
        self.0.remote
    }
    /// Address of the listener this connection belongs to or was built on, if any.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.0.listen
    }
    /// Id of that listener.
    pub fn listener_id(&self) -> Option<&str> {
        self.0.listener_id.as_deref()
    }
    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.0.direction
    }
    /// The connection's options.
    pub fn options(&self) -> &Options {
        &self.0.options
    }
    /// The application's value (option `user_state`).
    pub fn user_state(&self) -> Option<&UserState> {
        self.0.user_state.as_ref()
    }
    /// Transport metadata (WebSocket host, path, sub-protocol).
    pub fn meta(&self) -> &LinkMeta {
        &self.0.meta
    }
    /// The local address as a URI: `<scheme://ip:port;transport=t>`.
    pub fn local_uri(&self, scheme: &str) -> String {
        format!(
            "<{scheme}://{};transport={}>",
            self.0.local, self.0.transport
        )
    }
    /// The remote address as a URI.
    pub fn remote_uri(&self, scheme: &str) -> String {
        format!(
            "<{scheme}://{};transport={}>",
            self.0.remote, self.0.transport
        )
    }
    pub(crate) fn serial(&self) -> u64 {
        self.0.serial
    }
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}",
            self.0.transport, self.0.local, self.0.remote
        )
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("id", &self.0.id)
            .field("domain", &self.0.domain)
            .field("protocol", &self.0.protocol)
            .field("transport", &self.0.transport)
            .field("local", &self.0.local)
            .field("remote", &self.0.remote)
            .field("listen", &self.0.listen)
            .field("direction", &self.0.direction)
            .finish()
    }
}

/// A message computed from the connection that will carry it.
pub(crate) type MessageFn = Box<dyn FnOnce(&ConnInfo) -> Box<dyn Any + Send> + Send>;

/// A message on its way to a connection.
pub(crate) enum Outgoing {
    /// A protocol message (boxed `P::Message`) or raw bytes / a frame.
    Msg(Box<dyn Any + Send>),
    /// A message computed from the connection that carries it (the real local address, ...).
    Fn(MessageFn),
}

/// What a connection task is asked to do.
pub(crate) enum Command {
    Send {
        msg: Outgoing,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    },
    Stop(StopReason),
    Cast(Box<dyn Any + Send>),
    SetIdle(Option<Option<Duration>>),
    GetIdle(oneshot::Sender<Option<Duration>>),
    Bridged(Connection),
    Unbridge,
}

/// A handle to a running connection: send on it, stop it, inspect it. Cheap to clone;
/// equal handles refer to the same connection.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    info: ConnInfo,
    /// The command queue (bounded by [`QUEUE_CAP`]).
    queue: Queue,
    /// Set when a source the engine watches besides its link (commands, timers, stop
    /// tokens) may be ready; see [`Connection::signal_waker`].
    fired: AtomicBool,
    /// The connection task's waker, woken with `fired`.
    task_waker: AtomicWaker,
    /// Cancelled when the connection task has ended.
    done: CancellationToken,
    task: std::sync::OnceLock<tokio::task::Id>,
    send_timeout: Option<Duration>,
}

/// Most commands queued for a connection; senders wait (bounded by their timeout) for room.
const QUEUE_CAP: usize = nkp_core::options::defaults::SEND_QUEUE;

/// A connection's command queue: a bounded multi-producer queue read by the connection
/// task. It allocates nothing until a command is queued (an idle connection holds no
/// buffer), and reading it costs the task nothing until something was queued: a sender
/// sets the connection's `fired` flag and wakes the task.
struct Queue {
    inner: parking_lot::Mutex<QueueInner>,
    /// Notified when room is made in a full queue, and when the queue closes.
    room: tokio::sync::Notify,
}

#[derive(Default)]
struct QueueInner {
    items: std::collections::VecDeque<Command>,
    closed: bool,
}

/// Why a command could not be queued.
enum PushError {
    Full(Command),
    Closed,
}

impl Queue {
    fn new() -> Self {
        Queue {
            inner: parking_lot::Mutex::new(QueueInner::default()),
            room: tokio::sync::Notify::new(),
        }
    }
}

impl Shared {
    /// Queues a command if there is room.
    fn try_push(&self, cmd: Command) -> Result<(), PushError> {
        self.push_now(cmd).map(|_| ())
    }

    /// Queues a command if there is room; `Ok(true)` when room is left after it.
    fn push_now(&self, cmd: Command) -> Result<bool, PushError> {
        let room_left = {
            let mut q = self.queue.inner.lock();
            if q.closed {
                return Err(PushError::Closed);
            }
            if q.items.len() >= QUEUE_CAP {
                return Err(PushError::Full(cmd));
            }
            q.items.push_back(cmd);
            q.items.len() < QUEUE_CAP
        };
        self.signal();
        Ok(room_left)
    }

    /// Queues a command, waiting for room.
    async fn push(&self, mut cmd: Command) -> Result<(), PushError> {
        let mut waited = false;
        loop {
            let room = self.queue.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.push_now(cmd) {
                Err(PushError::Full(c)) => cmd = c,
                Ok(room_left) => {
                    if waited && room_left {
                        // The task notifies one waiting sender when it takes a command
                        // from a full queue, however many it takes after: pass the
                        // notification on, or the other waiting senders would wait (until
                        // their timeout) for a queue that has room.
                        self.queue.room.notify_one();
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            room.await;
            waited = true;
        }
    }

    /// Takes the next command (connection task).
    fn pop(&self) -> Option<Command> {
        let mut q = self.queue.inner.lock();
        let was_full = q.items.len() >= QUEUE_CAP;
        let cmd = q.items.pop_front();
        if q.items.is_empty() && q.items.capacity() > 8 {
            // Do not keep a burst's buffer for the connection's whole life.
            q.items = std::collections::VecDeque::new();
        }
        drop(q);
        if was_full && cmd.is_some() {
            self.queue.room.notify_one();
        }
        cmd
    }

    /// Seals the queue (the connection task is stopping): later pushes fail and senders
    /// waiting for room are released with an error; commands already queued stay, to be
    /// drained.
    fn seal(&self) {
        {
            let mut q = self.queue.inner.lock();
            if q.closed {
                return;
            }
            q.closed = true;
        }
        self.queue.room.notify_waiters();
    }

    /// Closes the queue (the connection task is ending): later pushes fail, and the
    /// commands still queued are dropped (their senders get [`Error::NoProcess`]).
    fn close(&self) {
        let left = {
            let mut q = self.queue.inner.lock();
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        drop(left);
        self.queue.room.notify_waiters();
        // The task is ending: do not keep its allocation alive through its waker.
        drop(self.task_waker.take());
    }

    /// Tells the connection task that a watched source may be ready.
    fn signal(&self) {
        self.fired.store(true, Ordering::Release);
        self.task_waker.wake();
    }
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.signal();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.signal();
    }
}

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}
impl Eq for Connection {}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection({})", self.shared.info)
    }
}

/// How long a sender waits for the connection task when no `send_timeout` is set: far
/// shorter than the original's 180 s, long enough for any live connection.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Connection {
    pub(crate) fn new(
        info: ConnInfo,
        done: CancellationToken,
        send_timeout: Option<Duration>,
    ) -> Self {
        Connection {
            shared: Arc::new(Shared {
                info,
                queue: Queue::new(),
                fired: AtomicBool::new(false),
                task_waker: AtomicWaker::new(),
                done,
                task: std::sync::OnceLock::new(),
                send_timeout,
            }),
        }
    }

    pub(crate) fn set_task(&self, id: tokio::task::Id) {
        let _ = self.shared.task.set(id);
    }

    /// A waker that sets the connection's `fired` flag and wakes its task: the connection
    /// task polls the sources it watches besides its link (stop tokens, timers) with it,
    /// and polls them (and its queue) again only once the flag was set. Registering the
    /// task's waker with each of them on every wake-up would cost a lock round trip per
    /// source and message.
    pub(crate) fn signal_waker(&self) -> Waker {
        Waker::from(self.shared.clone())
    }

    /// Registers the task's waker to be woken with the `fired` flag (connection task, on
    /// every poll); returns whether the flag was set (and clears it).
    pub(crate) fn take_fired(&self, waker: &Waker) -> bool {
        self.shared.task_waker.register(waker);
        // A load first: no locked instruction while nothing happened (the common case).
        // Cleared before the sources are looked at, so a signal that comes meanwhile is
        // not lost.
        self.shared.fired.load(Ordering::Acquire) && self.shared.fired.swap(false, Ordering::AcqRel)
    }

    /// Registers the task's waker and returns whether the `fired` flag is set, without
    /// clearing it (connection task, busy writing: a source it watches may be ready; the
    /// engine's loop still sees the flag).
    pub(crate) fn watch_fired(&self, waker: &Waker) -> bool {
        self.shared.task_waker.register(waker);
        self.shared.fired.load(Ordering::Acquire)
    }

    /// Seals the command queue (connection task, stopping): see [`Shared::seal`].
    pub(crate) fn seal_queue(&self) {
        self.shared.seal()
    }

    /// Takes the next queued command (connection task).
    pub(crate) fn pop_command(&self) -> Option<Command> {
        self.shared.pop()
    }

    /// Closes the command queue (connection task, when ending).
    pub(crate) fn close_queue(&self) {
        self.shared.close()
    }

    /// The connection's description.
    pub fn info(&self) -> &ConnInfo {
        &self.shared.info
    }

    /// True while the connection runs.
    pub fn is_alive(&self) -> bool {
        !self.shared.done.is_cancelled()
    }

    /// Resolves when the connection has stopped.
    pub async fn closed(&self) {
        self.shared.done.cancelled().await
    }

    pub(crate) fn done_token(&self) -> CancellationToken {
        self.shared.done.clone()
    }

    fn check_caller(&self) -> Result<(), Error> {
        if let (Some(me), Some(task)) = (tokio::task::try_id(), self.shared.task.get())
            && me == *task
        {
            return Err(Error::SameProcess);
        }
        Ok(())
    }

    async fn request(&self, cmd: Command) -> Result<(), Error> {
        let limit = self.shared.send_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT);
        match tokio::time::timeout(limit, self.shared.push(cmd)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::NoProcess),
            Err(_) => Err(Error::Timeout {
                op: "send (queue full)",
                after: limit,
            }),
        }
    }

    async fn send_outgoing(&self, msg: Outgoing) -> Result<(), Error> {
        self.check_caller()?;
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Send {
            msg,
            reply: Some(tx),
        };
        // Room in the queue: no timer. Full: wait (bounded) for room — backpressure.
        match self.shared.try_push(cmd) {
            Ok(()) => {}
            Err(PushError::Closed) => return Err(Error::NoProcess),
            Err(PushError::Full(cmd)) => self.request(cmd).await?,
        }
        // No timer here either: the engine answers every send, its writes being bounded by
        // `send_timeout` (30 s when not set); a gone task drops the reply.
        rx.await.unwrap_or(Err(Error::NoProcess))
    }

    /// Sends a message on this connection and waits until it is written.
    ///
    /// The message is the protocol's `Message` type (encoded by its `encode`), or raw data
    /// that bypasses encoding: a [`Frame`], [`Bytes`], `Vec<u8>` or `String` (sent as text on
    /// WebSocket).
    ///
    /// Errors: [`Error::NoProcess`] if the connection is gone, [`Error::SameProcess`] when
    /// called from the connection's own protocol code, [`Error::Encode`], transport errors.
    pub async fn send<M: Send + 'static>(&self, msg: M) -> Result<(), Error> {
        self.send_outgoing(Outgoing::Msg(Box::new(msg))).await
    }

    /// Sends a message computed from this connection's description (for protocols that put
    /// the real local address in their messages).
    pub async fn send_with<M, F>(&self, make: F) -> Result<(), Error>
    where
        M: Send + 'static,
        F: FnOnce(&ConnInfo) -> M + Send + 'static,
    {
        self.send_outgoing(Outgoing::Fn(Box::new(move |c| Box::new(make(c)))))
            .await
    }

    /// Queues a message without waiting for it to be written (errors stop the connection,
    /// as the original's `send_async`). Fails only when the queue is full or the connection
    /// is gone.
    pub fn send_async<M: Send + 'static>(&self, msg: M) -> Result<(), Error> {
        self.shared
            .try_push(Command::Send {
                msg: Outgoing::Msg(Box::new(msg)),
                reply: None,
            })
            .map_err(|e| match e {
                PushError::Full(_) => Error::Timeout {
                    op: "send (queue full)",
                    after: Duration::ZERO,
                },
                PushError::Closed => Error::NoProcess,
            })
    }

    /// Sends a raw frame (no encoding).
    pub async fn send_frame(&self, frame: Frame) -> Result<(), Error> {
        self.send(frame).await
    }

    /// Sends raw bytes (no encoding).
    pub async fn send_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.send(data).await
    }

    /// Delivers an application message to the protocol's `handle` callback.
    pub fn cast<M: Any + Send>(&self, msg: M) -> Result<(), Error> {
        self.shared
            .try_push(Command::Cast(Box::new(msg)))
            .map_err(|_| Error::NoProcess)
    }

    /// Asks the connection to stop (asynchronously) with reason `Normal`.
    pub fn stop(&self) {
        self.stop_with(StopReason::Normal)
    }

    /// Asks the connection to stop with a reason.
    pub fn stop_with(&self, reason: StopReason) {
        if let Err(PushError::Full(_)) = self.shared.try_push(Command::Stop(reason.clone())) {
            // Queue full: a spawned send still gets it there.
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let _ = shared.push(Command::Stop(reason)).await;
            });
        }
    }

    /// Stops the connection and waits until it has ended.
    pub async fn stop_and_wait(&self) {
        self.stop();
        self.closed().await
    }

    /// Restarts the idle timer.
    pub async fn reset_timeout(&self) -> Result<(), Error> {
        self.request(Command::SetIdle(None)).await
    }

    /// Sets a new idle timeout (`None`: never) and restarts the timer.
    pub async fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.request(Command::SetIdle(Some(timeout))).await
    }

    /// Time left before the idle timeout (`None`: no timer).
    pub async fn remaining_timeout(&self) -> Result<Option<Duration>, Error> {
        let (tx, rx) = oneshot::channel();
        self.request(Command::GetIdle(tx)).await?;
        rx.await.map_err(|_| Error::NoProcess)
    }

    pub(crate) fn bridged_by(&self, peer: Connection) -> Result<(), Error> {
        self.shared
            .try_push(Command::Bridged(peer))
            .map_err(|_| Error::NoProcess)
    }

    pub(crate) fn unbridge(&self) {
        let _ = self.shared.try_push(Command::Unbridge);
    }
}

/// Where a connection's link comes from.
pub(crate) enum LinkSource {
    Ready(BoxLink),
    Pending(BoxFuture<'static, Result<BoxLink, Error>>),
    /// Taken by the connection task.
    Taken,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{Future, poll_fn};
    use std::task::Poll;

    fn test_conn() -> Connection {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let link = nkp_core::LinkInfo::new(TransportKind::Tcp, addr, addr);
        let info = ConnInfo::new(
            "t".into(),
            "d".into(),
            Arc::from("p"),
            &link,
            None,
            None,
            Direction::Inbound,
            Arc::new(Options::default()),
            None,
        );
        Connection::new(info, CancellationToken::new(), None)
    }

    fn cast(n: usize) -> Command {
        Command::Cast(Box::new(n))
    }

    /// Waits for `fut`, failing with `what` if it hangs (a hang detector, not a timing
    /// assertion: the limit is far above anything the test needs).
    async fn no_hang<T>(what: &str, fut: impl Future<Output = T>) -> T {
        match tokio::time::timeout(Duration::from_secs(60), fut).await {
            Ok(v) => v,
            Err(_) => panic!("hung: {what}"),
        }
    }

    /// Several senders wait for room in a full queue; the task then empties it. Every one
    /// of them must get in (one notification per pop from a full queue released only the
    /// first, the others waited for their timeout though the queue was empty).
    #[tokio::test]
    async fn every_waiting_sender_gets_room() {
        let conn = test_conn();
        for i in 0..QUEUE_CAP {
            assert!(conn.shared.try_push(cast(i)).is_ok());
        }
        let mut senders = Vec::new();
        for i in 0..4 {
            let c = conn.clone();
            senders.push(tokio::spawn(async move {
                c.shared.push(cast(1000 + i)).await.is_ok()
            }));
        }
        // Let them find the queue full and wait.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        for _ in 0..QUEUE_CAP {
            assert!(conn.pop_command().is_some());
        }
        for s in senders {
            assert!(
                no_hang("a sender waiting for room in an emptied queue", s)
                    .await
                    .unwrap()
            );
        }
        let mut left = 0;
        while conn.pop_command().is_some() {
            left += 1;
        }
        assert_eq!(left, 4);
    }

    /// A sender waiting for room is released with an error when the queue closes.
    #[tokio::test]
    async fn close_releases_waiting_senders() {
        let conn = test_conn();
        for i in 0..QUEUE_CAP {
            assert!(conn.shared.try_push(cast(i)).is_ok());
        }
        let c = conn.clone();
        let waiter = tokio::spawn(async move { c.shared.push(cast(0)).await.is_err() });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        conn.close_queue();
        assert!(
            no_hang("a sender waiting when the queue closed", waiter)
                .await
                .unwrap()
        );
        assert!(matches!(
            conn.shared.try_push(cast(0)),
            Err(PushError::Closed)
        ));
    }

    /// Many threads push (waiting for room when full) while a consumer reads the queue
    /// exactly as the connection task does (`take_fired`, then pop until empty): every
    /// command arrives and nobody hangs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn stress_many_senders_one_reader() {
        const SENDERS: usize = 8;
        const EACH: usize = 3000;
        let conn = test_conn();
        let reader = {
            let conn = conn.clone();
            tokio::spawn(async move {
                let mut got = [0usize; SENDERS];
                let mut total = 0;
                let mut recheck = true;
                while total < SENDERS * EACH {
                    let cmd = poll_fn(|cx| {
                        if conn.take_fired(cx.waker()) || recheck {
                            recheck = false;
                            if let Some(c) = conn.pop_command() {
                                recheck = true;
                                return Poll::Ready(c);
                            }
                        }
                        Poll::Pending
                    })
                    .await;
                    let Command::Cast(b) = cmd else {
                        panic!("unexpected command")
                    };
                    let v = *b.downcast::<usize>().unwrap();
                    let (s, n) = (v / EACH, v % EACH);
                    // Each sender's commands arrive in order.
                    assert_eq!(got[s], n, "sender {s}");
                    got[s] += 1;
                    total += 1;
                    if total % 97 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                total
            })
        };
        let mut senders = Vec::new();
        for s in 0..SENDERS {
            let c = conn.clone();
            senders.push(tokio::spawn(async move {
                for n in 0..EACH {
                    let cmd = cast(s * EACH + n);
                    // Alternate the two ways in: without waiting, and waiting for room.
                    match c.shared.try_push(cmd) {
                        Ok(()) => {}
                        Err(PushError::Full(cmd)) => {
                            assert!(c.shared.push(cmd).await.is_ok());
                        }
                        Err(PushError::Closed) => panic!("closed"),
                    }
                }
            }));
        }
        for s in senders {
            no_hang("a sender", s).await.unwrap();
        }
        assert_eq!(no_hang("the reader", reader).await.unwrap(), SENDERS * EACH);
    }
}
