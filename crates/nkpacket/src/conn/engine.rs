//! The connection engine: one task per connection, owning its link and the protocol state.
//!
//! The task runs `conn_init`, then loops over three sources — commands from handles (send,
//! stop, cast, timers, bridging), units received on the link, and the idle timer — and ends
//! with `conn_stop` and a graceful close of the link. Sends are batched: every send queued
//! while the task was busy is encoded and written before one flush.

use std::any::{Any, type_name};
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_util::{Sink, SinkExt};
use nkp_core::{BoxLink, Error, Frame, Options, TransportKind};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::Instrument;

use super::keepalive::{Keepalive, KeepaliveStep};
use super::table::{ConnKey, IpCounter, IpSlot, Slot};
use super::{Command, ConnInfo, Connection, Direction, LinkSource, Outgoing};
use crate::dynproto::guarded;
use crate::metrics::ConnMetrics;
use crate::protocol::{
    BridgeAction, BridgeDir, Handled, Init, Parse, Protocol, StopReason, Timeout,
};

/// Most sends encoded before one flush.
const WRITE_BATCH: usize = 64;
/// Longest a write may take when `send_timeout` is not set.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a graceful close may take before the link is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a connection task needs besides its protocol.
pub(crate) struct ConnSetup {
    pub(crate) link: LinkSource,
    pub(crate) id: String,
    pub(crate) domain: String,
    pub(crate) protocol_name: Arc<str>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) listener_id: Option<String>,
    pub(crate) direction: Direction,
    pub(crate) options: Arc<Options>,
    /// Cancelled when the listener this connection belongs to (or is built on) stops.
    pub(crate) listener_stop: Option<CancellationToken>,
    /// The node's shutdown token.
    pub(crate) shutdown: CancellationToken,
    /// The reserved place in the connection table.
    pub(crate) slot: Slot,
    /// Told the outcome of the handshake and `conn_init` (outbound connections).
    pub(crate) ready: Option<oneshot::Sender<Result<Connection, Error>>>,
    /// Longest a protocol callback may run before the connection is stopped.
    pub(crate) callback_budget: Duration,
    /// Per-source-IP cap of the listener (inbound connections with
    /// `max_connections_per_ip`).
    pub(crate) per_ip: Option<(Arc<IpCounter>, usize)>,
}

struct Engine<P: Protocol> {
    proto: Arc<P>,
    info: ConnInfo,
    conn: Connection,
    link: BoxLink,
    /// Sets the connection's `fired` flag and wakes the task: the waker every source
    /// besides the link (stop tokens, timers) is polled with (see `poll_event`).
    signal: Waker,
    idle: Option<Duration>,
    deadline: Instant,
    /// The idle timer (made when an idle timeout is set).
    idle_sleep: Option<Pin<Box<Sleep>>>,
    /// The keepalive timer (made when keepalives are on).
    ka_sleep: Option<Pin<Box<Sleep>>>,
    send_timeout: Option<Duration>,
    send_timeout_close: bool,
    bridge: Option<(Connection, BridgeDir)>,
    /// Fires when the bridge peer ends.
    bridge_down: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// A command taken from the queue while batching writes, to handle next.
    stashed: Option<Command>,
    /// The idle duration changed: the sleep must be re-armed (it may need to fire earlier).
    rearm: bool,
    /// Poll the signalled sources on the next wake-up even if `fired` is not set (one
    /// of them was ready, or was re-armed, or a command was taken).
    recheck: bool,
    budget: Duration,
    metrics: ConnMetrics,
    keepalive: Keepalive,
    /// The tokens whose cancellation stops the connection (its one stop token, its
    /// monitor): a write that has to wait looks at them when the `fired` flag is set, to
    /// release senders waiting for room as soon as the connection is stopping.
    stops: [Option<CancellationToken>; 2],
}

impl<P: Protocol> Drop for Engine<P> {
    fn drop(&mut self) {
        // Commands still queued are dropped (their senders learn the connection is gone),
        // and later ones are refused.
        self.conn.close_queue();
    }
}

/// What woke the connection task.
enum Event {
    /// The listener or the node stopped.
    Stopped,
    /// The monitor token was cancelled.
    MonitorEnded,
    BridgeDown,
    Command(Command),
    Frame(Frame),
    LinkFailed(Error),
    PeerClosed,
    KeepaliveDue,
    IdleDue,
}

/// Runs a protocol callback: a panic, or a callback that kept its thread longer than
/// `budget` (protocol code must not block), stops the connection.
fn call<T>(budget: Duration, name: &'static str, f: impl FnOnce() -> T) -> Result<T, StopReason> {
    call_since(budget, Instant::now(), name, f)
}

/// [`call`] with the start time already read (the arrival of the unit being parsed).
fn call_since<T>(
    budget: Duration,
    started: Instant,
    name: &'static str,
    f: impl FnOnce() -> T,
) -> Result<T, StopReason> {
    let r = guarded(name, f).map_err(StopReason::Panic)?;
    let took = started.elapsed();
    if took > budget {
        tracing::error!(
            callback = name,
            ms = took.as_millis() as u64,
            "protocol callback blocked its thread; the connection stops"
        );
        return Err(StopReason::Blocked(name, took));
    }
    Ok(r)
}

async fn cancelled(token: &Option<CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

/// What the connection task keeps besides its engine.
struct Rest {
    ready: Option<oneshot::Sender<Result<Connection, Error>>>,
    listener_stop: Option<CancellationToken>,
    monitor: Option<CancellationToken>,
    shutdown: CancellationToken,
    slot: Slot,
    done: CancellationToken,
    _ip_slot: Option<IpSlot>,
}

/// The connection task.
///
/// Its future is allocated for every connection and lives as long as it: the setup comes
/// boxed (dropped once the engine is built), the engine is stored once and run by
/// reference, and the rarely used paths are boxed, so that an idle connection costs little.
pub(crate) async fn run<P: Protocol>(proto: Arc<P>, mut setup: Box<ConnSetup>) {
    let link = match std::mem::replace(&mut setup.link, LinkSource::Taken) {
        LinkSource::Ready(l) => l,
        LinkSource::Pending(handshake) => {
            let r = {
                let s = &*setup;
                tokio::select! {
                    r = handshake => r,
                    _ = cancelled(&s.listener_stop) => Err(Error::Closed(Some("listener stopped".into()))),
                    _ = s.shutdown.cancelled() => Err(Error::Closed(Some("shutting down".into()))),
                }
            };
            match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "incoming handshake failed");
                    if let Some(r) = setup.ready.take() {
                        let _ = r.send(Err(e));
                    }
                    return;
                }
            }
        }
        LinkSource::Taken => return,
    };
    // No `await` inside this match: its scrutinee (the whole engine) would be kept in the
    // task's future for the connection's life.
    let (mut engine, mut rest, span) = match start(proto, link, setup) {
        Ok(started) => started,
        Err(mut link) => {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, link.close()).await;
            });
            return;
        }
    };
    let task = async move {
        // Captures `rest` whole (not field by field), so that nothing of it stays behind
        // in this function's future.
        let _ = &rest;
        let ready = rest.ready.take();
        let (listener_stop, monitor) = (rest.listener_stop.take(), rest.monitor.take());
        engine
            .main(ready, listener_stop, monitor, &rest.shutdown)
            .await;
        // The link is closed; the queue closes with the engine. Dropping the slot
        // unregisters the connection; then tell waiters it is gone.
        drop(engine);
        let Rest { slot, done, .. } = rest;
        drop(slot);
        done.cancel();
    };
    if span.is_disabled() {
        // No subscriber wants it: entering and leaving it on every poll would still cost
        // ~100 instructions per message.
        task.await
    } else {
        task.instrument(span).await
    }
}

/// Builds the engine of a connection whose link is established; `Err` (with the link, to
/// close) when the listener's per-source-IP cap refuses it.
fn start<P: Protocol>(
    proto: Arc<P>,
    link: BoxLink,
    setup: Box<ConnSetup>,
) -> Result<(Engine<P>, Rest, tracing::Span), BoxLink> {
    let ConnSetup {
        link: _,
        id,
        domain,
        protocol_name,
        listen,
        listener_id,
        direction,
        options,
        listener_stop,
        shutdown,
        mut slot,
        ready,
        callback_budget,
        per_ip,
    } = *setup;
    let monitor = options.monitor.clone();

    // The listener's per-source-IP cap, checked once the peer's address is known.
    let ip_slot = match &per_ip {
        Some((counter, limit)) => match counter.acquire(link.info().remote.ip(), *limit) {
            Some(g) => Some(g),
            None => {
                tracing::debug!(remote = %link.info().remote, limit, "too many connections from this address");
                crate::metrics::refused(
                    link.info().transport.as_str(),
                    listener_id.as_deref().unwrap_or_default(),
                    "per_ip",
                );
                return Err(link);
            }
        },
        None => None,
    };
    let user_state = options.user_state.clone();
    let info = ConnInfo::new(
        id,
        domain,
        protocol_name,
        link.info(),
        listen,
        listener_id,
        direction,
        options.clone(),
        user_state,
    );
    let span = tracing::debug_span!("conn", conn = %info, domain = info.domain());
    let done = CancellationToken::new();
    let conn = Connection::new(info.clone(), done.clone(), options.send_timeout);
    if let Some(task) = tokio::task::try_id() {
        conn.set_task(task);
    }
    slot.register(
        ConnKey {
            domain: info.domain().to_string(),
            protocol: Arc::from(info.protocol()),
            transport: info.transport(),
            remote: info.remote(),
        },
        &conn,
    );
    let idle = options.effective_idle_timeout(info.transport());
    let metrics = ConnMetrics::start(&info);
    let keepalive = Keepalive::new(&options, info.transport());
    let deadline = Instant::now() + idle.unwrap_or(Duration::ZERO);
    let engine = Engine {
        proto,
        info,
        signal: conn.signal_waker(),
        conn,
        link,
        idle,
        deadline,
        idle_sleep: idle.map(|_| Box::pin(tokio::time::sleep_until(deadline))),
        ka_sleep: keepalive
            .enabled()
            .then(|| Box::pin(tokio::time::sleep_until(keepalive.next_event()))),
        send_timeout: options.send_timeout,
        send_timeout_close: options.send_timeout_close.unwrap_or(false),
        bridge: None,
        bridge_down: None,
        stashed: None,
        rearm: false,
        recheck: true,
        budget: callback_budget,
        metrics,
        keepalive,
        stops: [None, None],
    };
    let rest = Rest {
        ready,
        listener_stop,
        monitor,
        shutdown,
        slot,
        done,
        _ip_slot: ip_slot,
    };
    Ok((engine, rest, span))
}

impl<P: Protocol> Engine<P> {
    async fn main(
        &mut self,
        ready: Option<oneshot::Sender<Result<Connection, Error>>>,
        listener_stop: Option<CancellationToken>,
        monitor: Option<CancellationToken>,
        shutdown: &CancellationToken,
    ) {
        let budget = self.budget;
        let mut state = match call(budget, "conn_init", || self.proto.conn_init(&self.info)) {
            Ok(Init::Ok(s)) => s,
            Ok(Init::Bridge(s, peer)) => {
                self.start_bridge(peer);
                s
            }
            Ok(Init::Stop(reason)) => {
                // As the original: the caller still gets the (dying) connection.
                if let Some(r) = ready {
                    let _ = r.send(Ok(self.conn.clone()));
                }
                Box::pin(self.finish(reason, None)).await;
                return;
            }
            Err(reason) => {
                if let Some(r) = ready {
                    let _ = r.send(Err(match &reason {
                        StopReason::Panic(name) => Error::Panic(name),
                        other => Error::Protocol(other.to_string()),
                    }));
                }
                Box::pin(self.finish(reason, None)).await;
                return;
            }
        };
        if let Some(r) = ready
            && r.send(Ok(self.conn.clone())).is_err()
        {
            // The caller gave up (a lost Happy Eyeballs race, a cancelled connect): nobody
            // holds this connection, so it must not linger.
            Box::pin(self.finish(StopReason::Normal, Some(state))).await;
            return;
        }
        tracing::debug!("connection started");

        // One stop token: a listener's token is a child of the node's shutdown token, so
        // it fires on both; which one it was is read from `shutdown` afterwards.
        let on_listener = listener_stop.is_some();
        let stop = listener_stop.unwrap_or_else(|| shutdown.clone());
        self.stops = [Some(stop.clone()), monitor.clone()];
        let stopped = stop.cancelled_owned();
        let mut stopped = pin!(stopped);
        let mut monitor_ended = pin!(monitor.map(CancellationToken::cancelled_owned));
        let reason = loop {
            if self.rearm {
                self.rearm = false;
                match (&mut self.idle_sleep, self.idle) {
                    (Some(s), Some(_)) => s.as_mut().reset(self.deadline),
                    (None, Some(_)) => {
                        self.idle_sleep = Some(Box::pin(tokio::time::sleep_until(self.deadline)))
                    }
                    (_, None) => self.idle_sleep = None,
                }
                self.recheck = true;
            }
            if let Some(cmd) = self.stashed.take() {
                if let Some(r) = self.command(cmd, &mut state).await {
                    break r;
                }
                continue;
            }
            let event = poll_fn(|cx| {
                self.poll_event(cx, stopped.as_mut(), monitor_ended.as_mut().as_pin_mut())
            })
            .await;
            match event {
                Event::Stopped => {
                    break if on_listener && !shutdown.is_cancelled() {
                        StopReason::ListenerStopped
                    } else {
                        StopReason::Shutdown
                    };
                }
                Event::MonitorEnded => break StopReason::Normal,
                Event::BridgeDown => {
                    self.set_bridge(None);
                    break StopReason::BridgeDown;
                }
                Event::Command(cmd) => {
                    if let Some(r) = self.command(cmd, &mut state).await {
                        break r;
                    }
                }
                Event::Frame(frame) => {
                    let arrived = Instant::now();
                    self.touch_at(arrived);
                    self.metrics.received(frame.len());
                    self.keepalive.heard();
                    if let Some(reply) = self.keepalive.consumes(&frame) {
                        if let Some(reply) = reply
                            && let Err(e) = self.write_now(reply).await
                        {
                            break StopReason::Error(e.to_string());
                        }
                        continue;
                    }
                    if let Some(r) = self.received(frame, arrived, &mut state).await {
                        break r;
                    }
                }
                Event::LinkFailed(e) => {
                    tracing::debug!(error = %e, "link failed");
                    break StopReason::Error(e.to_string());
                }
                Event::PeerClosed => {
                    let _ = guarded("peer_closed", || {
                        self.proto.peer_closed(&self.info, &mut state)
                    });
                    break StopReason::PeerClosed;
                }
                Event::KeepaliveDue => match self.keepalive.due(Instant::now()) {
                    KeepaliveStep::Wait(at) => self.reset_keepalive(at),
                    KeepaliveStep::Dead => break StopReason::KeepaliveTimeout,
                    KeepaliveStep::Send(frame, at) => {
                        if let Err(e) = self.write_now(frame).await {
                            break StopReason::Error(e.to_string());
                        }
                        self.reset_keepalive(at);
                    }
                },
                Event::IdleDue => {
                    if Instant::now() < self.deadline {
                        self.rearm = true;
                        continue;
                    }
                    match call(budget, "timeout", || {
                        self.proto.timeout(&self.info, &mut state)
                    }) {
                        Ok(Timeout::Keep) => {
                            self.touch();
                            self.rearm = true;
                        }
                        Ok(Timeout::Stop(r)) => break r,
                        Err(r) => break r,
                    }
                }
            }
        };
        if matches!(reason, StopReason::Shutdown | StopReason::ListenerStopped) {
            Box::pin(self.drain(&mut state)).await;
        }
        Box::pin(self.finish(reason, Some(state))).await;
    }

    /// Waits for the next thing to do, by priority: stop, monitor, bridge peer down,
    /// command, received unit, keepalive, idle timer.
    ///
    /// Only the link is polled with the task's waker on every wake-up. Everything else is
    /// polled with the connection's signal waker, which sets its `fired` flag (as does
    /// queueing a command): they are polled again only when the flag is set (or after
    /// one of them was ready or re-armed), which spares a lock round trip per source and
    /// message (a cancellation token's, a timer's, a channel's).
    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        stopped: Pin<&mut WaitForCancellationFutureOwned>,
        monitor: Option<Pin<&mut WaitForCancellationFutureOwned>>,
    ) -> Poll<Event> {
        let mut timers = (false, false);
        if self.conn.take_fired(cx.waker()) || self.recheck {
            self.recheck = false;
            let mut scx = Context::from_waker(&self.signal);
            if stopped.poll(&mut scx).is_ready() {
                return Poll::Ready(Event::Stopped);
            }
            if let Some(m) = monitor
                && m.poll(&mut scx).is_ready()
            {
                return Poll::Ready(Event::MonitorEnded);
            }
            if let Some(b) = &mut self.bridge_down
                && b.as_mut().poll(&mut scx).is_ready()
            {
                return Poll::Ready(Event::BridgeDown);
            }
            if let Some(cmd) = self.conn.pop_command() {
                // More may be queued: look again next time.
                self.recheck = true;
                return Poll::Ready(Event::Command(cmd));
            }
            timers.0 = self.keepalive.enabled()
                && self
                    .ka_sleep
                    .as_mut()
                    .is_some_and(|s| s.as_mut().poll(&mut scx).is_ready());
            timers.1 = self.idle.is_some()
                && self
                    .idle_sleep
                    .as_mut()
                    .is_some_and(|s| s.as_mut().poll(&mut scx).is_ready());
            // A ready timer stays ready until handled (re-armed).
            self.recheck = timers.0 || timers.1;
        }
        match Pin::new(&mut self.link).poll_next(cx) {
            Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Event::Frame(frame)),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Event::LinkFailed(e)),
            Poll::Ready(None) => return Poll::Ready(Event::PeerClosed),
            Poll::Pending => {}
        }
        match timers {
            (true, _) => Poll::Ready(Event::KeepaliveDue),
            (_, true) => Poll::Ready(Event::IdleDue),
            _ => Poll::Pending,
        }
    }

    fn reset_keepalive(&mut self, at: Instant) {
        if let Some(s) = &mut self.ka_sleep {
            s.as_mut().reset(at);
        }
        self.recheck = true;
    }

    /// Sets (or clears) the bridge, and what watches its peer.
    fn set_bridge(&mut self, bridge: Option<(Connection, BridgeDir)>) {
        self.bridge_down = bridge
            .as_ref()
            .map(|(c, _)| Box::pin(c.done_token().cancelled_owned()));
        self.bridge = bridge;
        self.recheck = true;
    }

    /// Graceful stop: messages already queued are still written (within [`CLOSE_TIMEOUT`]),
    /// so a `send` that was accepted is either delivered or its caller gets an error.
    async fn drain(&mut self, state: &mut P::State) {
        // Only what is queued now: senders still waiting for room are told at once.
        self.conn.seal_queue();
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut waiting = Vec::new();
        let mut failed: Option<String> = None;
        while let Some(cmd) = self.conn.pop_command() {
            let Command::Send { msg, reply } = cmd else {
                continue;
            };
            if let Some(e) = &failed {
                if let Some(r) = reply {
                    let _ = r.send(Err(Error::Closed(Some(e.clone()))));
                }
                continue;
            }
            let r = match self.encode(msg, state) {
                Ok(frame) => tokio::time::timeout_at(deadline, self.link.feed(frame))
                    .await
                    .unwrap_or(Err(Error::Timeout {
                        op: "send while stopping",
                        after: CLOSE_TIMEOUT,
                    })),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => waiting.extend(reply),
                Err(e) if Self::recoverable(&e) => {
                    if let Some(r) = reply {
                        let _ = r.send(Err(e));
                    }
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    if let Some(r) = reply {
                        let _ = r.send(Err(e));
                    }
                }
            }
        }
        let flushed = match tokio::time::timeout_at(deadline, self.link.flush()).await {
            Ok(Ok(())) if failed.is_none() => Ok(()),
            Ok(Ok(())) => Err(failed.unwrap_or_default()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out while stopping".to_string()),
        };
        for w in waiting {
            let _ = w.send(flushed.clone().map_err(|e| Error::Closed(Some(e))));
        }
    }

    /// Restarts the idle timer (cheaply: the sleep is re-armed only when it fires early).
    fn touch(&mut self) {
        if self.idle.is_some() {
            self.touch_at(Instant::now());
        }
    }

    /// [`Engine::touch`] with the time already read.
    fn touch_at(&mut self, now: Instant) {
        if let Some(idle) = self.idle {
            self.deadline = now + idle;
        }
    }

    async fn finish(&mut self, reason: StopReason, state: Option<P::State>) {
        tracing::debug!(%reason, "connection stopping");
        // Senders waiting for room learn now that the connection is gone, not once the
        // link is closed (up to CLOSE_TIMEOUT).
        self.conn.seal_queue();
        if let Some((peer, _)) = self.bridge.take() {
            peer.unbridge();
        }
        self.bridge_down = None;
        self.metrics.stopped(&reason);
        let _ = guarded("conn_stop", || {
            self.proto.conn_stop(&reason, &self.info, state)
        });
        let going_away = matches!(reason, StopReason::Shutdown | StopReason::ListenerStopped)
            && matches!(
                self.info.transport(),
                TransportKind::Ws | TransportKind::Wss
            );
        let link = &mut self.link;
        let close = async move {
            if going_away {
                let _ = link.feed(Frame::close(1001, "going away")).await;
            }
            let _ = link.close().await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }

    /// Encodes an outgoing message into a frame.
    fn encode(&self, msg: Outgoing, state: &mut P::State) -> Result<Frame, Error> {
        let stopped = |r: StopReason| match r {
            StopReason::Panic(name) => Error::Panic(name),
            other => Error::Protocol(other.to_string()),
        };
        let any: Box<dyn Any + Send> = match msg {
            Outgoing::Msg(b) => b,
            Outgoing::Fn(f) => call(self.budget, "send_with message function", || f(&self.info))
                .map_err(stopped)?,
        };
        let any = match any.downcast::<P::Message>() {
            Ok(m) => {
                return call(self.budget, "encode", || {
                    self.proto.encode(*m, &self.info, state)
                })
                .map_err(stopped)?
                .map_err(|e| Error::Encode(e.0));
            }
            Err(a) => a,
        };
        raw_frame(any).map_err(|_| {
            Error::Encode(format!(
                "message of an unexpected type: expected {} or a raw Frame, Bytes, Vec<u8> or String",
                type_name::<P::Message>()
            ))
        })
    }

    /// Writes one frame at once (keepalives), outside the send queue.
    async fn write_now(&mut self, frame: Frame) -> Result<(), Error> {
        let len = frame.len();
        self.feed(frame).await?;
        self.metrics.sent(len);
        self.flush().await
    }

    /// Writes frames (already fed) out; applies `send_timeout`.
    /// Writes are bounded by `send_timeout`, or [`DEFAULT_WRITE_TIMEOUT`], so that a sender
    /// waiting for its write to be done always gets an answer (the timer is armed only when
    /// the write does not complete at once).
    fn write_timeout(&self) -> Duration {
        self.send_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT)
    }

    /// A write operation of the link, bounded by the write timeout.
    fn write_op<F>(&mut self, op: F) -> WriteOp<'_, F>
    where
        F: FnMut(Pin<&mut BoxLink>, &mut Context<'_>) -> Poll<Result<(), Error>> + Unpin,
    {
        WriteOp {
            after: self.write_timeout(),
            link: &mut self.link,
            conn: &self.conn,
            stops: &self.stops,
            op,
            timer: None,
        }
    }

    /// Flushes the link (a small future of its own: no nested `async fn` state).
    fn flush(&mut self) -> impl Future<Output = Result<(), Error>> + '_ {
        self.write_op(|link, cx| link.poll_flush(cx))
    }

    /// Feeds a frame to the link once it is ready (the caller counts it as sent).
    fn feed(&mut self, frame: Frame) -> impl Future<Output = Result<(), Error>> + '_ {
        let mut frame = Some(frame);
        self.write_op(move |mut link, cx| {
            if let Err(e) = ready!(link.as_mut().poll_ready(cx)) {
                return Poll::Ready(Err(e));
            }
            Poll::Ready(match frame.take() {
                Some(f) => link.start_send(f),
                None => Ok(()),
            })
        })
    }

    /// True when a write error leaves the link usable (nothing was written).
    fn recoverable(e: &Error) -> bool {
        matches!(
            e,
            Error::Encode(_) | Error::UdpTooLarge { .. } | Error::MessageTooLarge { .. }
        )
    }

    /// Encodes and writes a batch of sends: the first one, then whatever else is queued.
    async fn send_batch(
        &mut self,
        first: (Outgoing, Option<oneshot::Sender<Result<(), Error>>>),
        state: &mut P::State,
    ) -> Option<StopReason> {
        let mut waiting: Vec<oneshot::Sender<Result<(), Error>>> = Vec::new();
        let mut next = Some(first);
        let mut count = 0;
        while let Some((msg, reply)) = next.take() {
            count += 1;
            let r = match self.encode(msg, state) {
                Ok(frame) => {
                    let len = frame.len();
                    let r = self.feed(frame).await;
                    if r.is_ok() {
                        self.metrics.sent(len);
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => waiting.extend(reply),
                Err(e) if Self::recoverable(&e) => {
                    tracing::debug!(error = %e, "send failed; connection kept");
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(e));
                    }
                }
                Err(e) => return self.write_failed(e, reply, waiting),
            }
            if count < WRITE_BATCH {
                match self.conn.pop_command() {
                    Some(Command::Send { msg, reply }) => next = Some((msg, reply)),
                    Some(other) => self.stashed = Some(other),
                    None => {}
                }
            }
        }
        if let Err(e) = self.flush().await {
            return self.write_failed(e, None, waiting);
        }
        self.touch();
        for w in waiting {
            let _ = w.send(Ok(()));
        }
        None
    }

    fn write_failed(
        &mut self,
        e: Error,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
        waiting: Vec<oneshot::Sender<Result<(), Error>>>,
    ) -> Option<StopReason> {
        let timed_out = matches!(e, Error::Timeout { .. });
        let text = e.to_string();
        tracing::debug!(error = %text, "write failed");
        for w in waiting.into_iter().chain(reply) {
            let _ = w.send(Err(match &e {
                Error::Timeout { op, after } => Error::Timeout { op, after: *after },
                _ => Error::Closed(Some(text.clone())),
            }));
        }
        if timed_out && !self.send_timeout_close {
            // The frame stays buffered and goes out when the peer reads again.
            return None;
        }
        Some(StopReason::Error(text))
    }

    async fn command(&mut self, cmd: Command, state: &mut P::State) -> Option<StopReason> {
        match cmd {
            // Boxed: batching holds a few things across its writes, and the connection
            // task's future (allocated for every connection) must stay small.
            Command::Send { msg, reply } => Box::pin(self.send_batch((msg, reply), state)).await,
            Command::Stop(r) => Some(r),
            Command::Cast(m) => match guarded("handle", || self.proto.handle(m, &self.info, state))
            {
                Ok(Handled::Continue) => None,
                Ok(Handled::Stop(r)) => Some(r),
                Err(name) => Some(StopReason::Panic(name)),
            },
            Command::SetIdle(None) => {
                self.touch();
                None
            }
            Command::SetIdle(Some(t)) => {
                self.idle = t.filter(|d| !d.is_zero());
                self.touch();
                self.rearm = true;
                None
            }
            Command::GetIdle(tx) => {
                let left = self
                    .idle
                    .map(|_| self.deadline.saturating_duration_since(Instant::now()));
                let _ = tx.send(left);
                None
            }
            Command::Bridged(peer) => {
                if let Some((old, _)) = self.bridge.take()
                    && old != peer
                {
                    old.unbridge();
                }
                self.set_bridge(Some((peer, BridgeDir::Down)));
                None
            }
            Command::Unbridge => {
                self.set_bridge(None);
                None
            }
        }
    }

    fn start_bridge(&mut self, peer: Connection) {
        if let Some((old, _)) = self.bridge.take()
            && old != peer
        {
            old.unbridge();
        }
        if peer.bridged_by(self.conn.clone()).is_ok() {
            self.set_bridge(Some((peer, BridgeDir::Up)));
        }
    }

    async fn forward(&mut self, frame: Frame, state: &mut P::State) -> Option<StopReason> {
        let (peer, dir) = self.bridge.clone()?;
        match call(self.budget, "bridge", || {
            self.proto.bridge(frame, dir, &self.info, state)
        }) {
            Ok(BridgeAction::Forward(f)) => {
                if let Err(e) = peer.send(f).await {
                    return Some(StopReason::Error(format!("bridge forward: {e}")));
                }
                None
            }
            Ok(BridgeAction::Skip) => None,
            Ok(BridgeAction::Stop(r)) => Some(r),
            Err(r) => Some(r),
        }
    }

    /// Encodes and feeds one reply (flushed by the caller).
    async fn feed_reply(&mut self, m: P::Message, state: &mut P::State) -> Option<StopReason> {
        let frame = match call(self.budget, "encode", || {
            self.proto.encode(m, &self.info, state)
        }) {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Some(StopReason::ReplyError(format!("encode: {e}"))),
            Err(r) => return Some(r),
        };
        self.write_reply(frame).await
    }

    /// Feeds one encoded reply (flushed by the caller).
    async fn write_reply(&mut self, frame: Frame) -> Option<StopReason> {
        let len = frame.len();
        if let Err(e) = self.feed(frame).await {
            return Some(StopReason::ReplyError(e.to_string()));
        }
        self.metrics.sent(len);
        None
    }

    async fn reply_many(&mut self, v: Vec<P::Message>, state: &mut P::State) -> Option<StopReason> {
        for m in v {
            if let Some(r) = self.feed_reply(m, state).await {
                return Some(r);
            }
        }
        self.flush_replies().await
    }

    async fn flush_replies(&mut self) -> Option<StopReason> {
        if let Err(e) = self.flush().await {
            return Some(StopReason::ReplyError(e.to_string()));
        }
        None
    }

    /// Fails with [`StopReason::Blocked`] when protocol code kept the thread longer than
    /// the budget since `started`.
    fn check_budget(&self, started: Instant, name: &'static str) -> Option<StopReason> {
        let took = started.elapsed();
        if took > self.budget {
            tracing::error!(
                callback = name,
                ms = took.as_millis() as u64,
                "protocol callback blocked its thread; the connection stops"
            );
            return Some(StopReason::Blocked(name, took));
        }
        None
    }

    async fn received(
        &mut self,
        frame: Frame,
        arrived: Instant,
        state: &mut P::State,
    ) -> Option<StopReason> {
        if self.bridge.is_some() {
            // Boxed (as the rare paths below): the connection task's future stays small.
            return Box::pin(self.forward(frame, state)).await;
        }
        let parsed = match guarded("parse", || self.proto.parse(frame, &self.info, state)) {
            Ok(p) => p,
            Err(name) => return Some(StopReason::Panic(name)),
        };
        match parsed {
            Parse::Continue => self.check_budget(arrived, "parse"),
            Parse::Reply(m) => {
                // The common case: one clock read for `parse` and the encode of its reply.
                let frame = match guarded("encode", || self.proto.encode(m, &self.info, state)) {
                    Ok(Ok(f)) => f,
                    Ok(Err(e)) => {
                        return self
                            .check_budget(arrived, "parse")
                            .or(Some(StopReason::ReplyError(format!("encode: {e}"))));
                    }
                    Err(name) => return Some(StopReason::Panic(name)),
                };
                if let Some(r) = self.check_budget(arrived, "parse") {
                    return Some(r);
                }
                let len = frame.len();
                if let Err(e) = self.feed(frame).await {
                    return Some(StopReason::ReplyError(e.to_string()));
                }
                self.metrics.sent(len);
                if let Err(e) = self.flush().await {
                    return Some(StopReason::ReplyError(e.to_string()));
                }
                None
            }
            Parse::ReplyMany(v) => {
                if let Some(r) = self.check_budget(arrived, "parse") {
                    return Some(r);
                }
                Box::pin(self.reply_many(v, state)).await
            }
            Parse::Bridge(peer, first) => {
                if let Some(r) = self.check_budget(arrived, "parse") {
                    return Some(r);
                }
                self.start_bridge(peer);
                match first {
                    Some(f) => Box::pin(self.forward(f, state)).await,
                    None => None,
                }
            }
            // A blocked parse is reported as such whatever it returned (a clock read on a
            // rare path).
            Parse::Stop(r) => self.check_budget(arrived, "parse").or(Some(r)),
        }
    }
}

/// A write operation of a link run to completion, bounded by a timeout whose timer is made
/// only if the operation does not complete at once (the common case costs no timer).
struct WriteOp<'a, F> {
    link: &'a mut BoxLink,
    conn: &'a Connection,
    stops: &'a [Option<CancellationToken>; 2],
    op: F,
    after: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F> Future for WriteOp<'_, F>
where
    F: FnMut(Pin<&mut BoxLink>, &mut Context<'_>) -> Poll<Result<(), Error>> + Unpin,
{
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(r) = (this.op)(Pin::new(&mut *this.link), cx) {
            return Poll::Ready(r);
        }
        // A stop token cancelled now is seen by the task only once this write ends, up to
        // its timeout: release the senders waiting for room in the queue at once (those
        // already queued are drained or refused when the task gets to it). The task's
        // waker is registered again first: a wake-up takes it, and one taken by a command
        // queued meanwhile would leave the cancellation unseen.
        if this.conn.watch_fired(cx.waker())
            && this.stops.iter().flatten().any(|t| t.is_cancelled())
        {
            this.conn.seal_queue();
        }
        let after = this.after;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::Timeout { op: "send", after })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Raw data sent without encoding.
fn raw_frame(any: Box<dyn Any + Send>) -> Result<Frame, Box<dyn Any + Send>> {
    let any = match any.downcast::<Frame>() {
        Ok(f) => return Ok(*f),
        Err(a) => a,
    };
    let any = match any.downcast::<Bytes>() {
        Ok(b) => return Ok(Frame::Binary(*b)),
        Err(a) => a,
    };
    let any = match any.downcast::<Vec<u8>>() {
        Ok(b) => return Ok(Frame::Binary(Bytes::from(*b))),
        Err(a) => a,
    };
    let any = match any.downcast::<String>() {
        Ok(s) => return Ok(Frame::Text(*s)),
        Err(a) => a,
    };
    match any.downcast::<&'static str>() {
        Ok(s) => Ok(Frame::Text(s.to_string())),
        Err(a) => Err(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::table::ConnectionTable;
    use nkp_core::{Framing, LinkInfo, StreamCodec, StreamLink};

    /// The set-up of a connection on one end of an in-memory pipe (raw framing), and the
    /// pipe's other end.
    fn pipe_setup(
        direction: super::super::Direction,
        shutdown: CancellationToken,
        ready: Option<oneshot::Sender<Result<Connection, Error>>>,
        callback_budget: Duration,
    ) -> (ConnSetup, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(64);
        let addr = "127.0.0.1:1".parse().unwrap();
        let link = StreamLink::new(
            a,
            StreamCodec::new(&Framing::Raw, 1 << 16),
            LinkInfo::new(TransportKind::Tcp, addr, addr),
        );
        let table = Arc::new(ConnectionTable::new(10));
        let setup = ConnSetup {
            link: LinkSource::Ready(Box::new(link)),
            id: "x".into(),
            domain: "d".into(),
            protocol_name: Arc::from("test"),
            listen: None,
            listener_id: None,
            direction,
            options: Arc::new(Options::default()),
            listener_stop: None,
            shutdown,
            slot: table.reserve().unwrap(),
            ready,
            callback_budget,
            per_ip: None,
        };
        (setup, b)
    }

    /// A connection task on one end of an in-memory pipe whose other end never reads:
    /// its writes block once the pipe's buffer is full.
    fn blocked_conn(
        shutdown: &CancellationToken,
    ) -> (
        impl Future<Output = ()> + use<>,
        oneshot::Receiver<Result<Connection, Error>>,
        tokio::io::DuplexStream,
    ) {
        let (tx, rx) = oneshot::channel();
        let (setup, b) = pipe_setup(
            super::super::Direction::Outbound,
            shutdown.clone(),
            Some(tx),
            Duration::from_secs(1),
        );
        (run(Arc::new(crate::echo::Echo), Box::new(setup)), rx, b)
    }

    /// The node shuts down while the connection task is stuck in a write and a sender
    /// waits for room in its full queue: the sender is released with an error at once
    /// (the paused clock does not move), not when the write or its own wait times out
    /// (30 s).
    #[tokio::test(start_paused = true)]
    async fn stop_during_a_blocked_write_releases_senders_waiting_for_room() {
        let shutdown = CancellationToken::new();
        let (task, ready, _peer) = blocked_conn(&shutdown);
        let task = tokio::spawn(task);
        let conn = ready.await.unwrap().unwrap();
        // Larger than the pipe: the write blocks.
        conn.send_async(Bytes::from(vec![0u8; 1 << 20])).unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let mut queued = 0;
        while conn.send_async(Bytes::from_static(b"x")).is_ok() {
            queued += 1;
        }
        assert!(queued > 0);
        let c = conn.clone();
        let waiting = tokio::spawn(async move { c.send(Bytes::from_static(b"y")).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        shutdown.cancel();
        let started = Instant::now();
        let r = match tokio::time::timeout(Duration::from_secs(5), waiting).await {
            Ok(r) => r.unwrap(),
            Err(_) => panic!("the waiting sender was not released when the node shut down"),
        };
        assert!(matches!(r, Err(Error::NoProcess)), "{r:?}");
        assert_eq!(started.elapsed(), Duration::ZERO, "the clock moved");
        // The task still ends (the blocked write times out, the drain gives up).
        tokio::time::timeout(Duration::from_secs(600), task)
            .await
            .expect("the connection task hung")
            .unwrap();
    }

    /// A protocol whose `parse` blocks its thread, then asks to stop.
    struct SlowStop(std::sync::Mutex<Option<oneshot::Sender<StopReason>>>);

    impl Protocol for SlowStop {
        type Message = Frame;
        type State = ();
        fn parse(&self, _: Frame, _: &ConnInfo, _: &mut ()) -> Parse<Frame> {
            std::thread::sleep(Duration::from_millis(50));
            Parse::Stop(StopReason::Normal)
        }
        fn encode(
            &self,
            m: Frame,
            _: &ConnInfo,
            _: &mut (),
        ) -> Result<Frame, crate::protocol::EncodeError> {
            Ok(m)
        }
        fn conn_stop(&self, reason: &StopReason, _: &ConnInfo, _: Option<()>) {
            if let Some(tx) = self.0.lock().unwrap().take() {
                let _ = tx.send(reason.clone());
            }
        }
    }

    /// A `parse` that blocked its thread longer than the budget stops the connection with
    /// `Blocked("parse", _)` whatever it returned, `Parse::Stop` included (as before the
    /// engine read the clock once for parse and encode).
    #[tokio::test]
    async fn blocked_parse_that_stops_is_reported_blocked() {
        use tokio::io::AsyncWriteExt;
        let (tx, rx) = oneshot::channel();
        let (setup, mut b) = pipe_setup(
            super::super::Direction::Inbound,
            CancellationToken::new(),
            None,
            Duration::from_millis(10),
        );
        let task = tokio::spawn(run(
            Arc::new(SlowStop(std::sync::Mutex::new(Some(tx)))),
            Box::new(setup),
        ));
        b.write_all(b"hello").await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the connection did not stop")
            .unwrap();
        assert!(
            matches!(reason, StopReason::Blocked("parse", _)),
            "{reason:?}"
        );
        task.await.unwrap();
    }

    /// The connection task's future is allocated for every connection: keep it small
    /// (idle memory per connection). Deterministic: a size, not a time.
    #[tokio::test]
    async fn connection_task_future_stays_small() {
        let (setup, _b) = pipe_setup(
            super::super::Direction::Inbound,
            CancellationToken::new(),
            None,
            Duration::from_secs(1),
        );
        let fut = run(Arc::new(crate::echo::Echo), Box::new(setup));
        let size = std::mem::size_of_val(&fut);
        println!("connection task future: {size} bytes");
        println!(
            "engine: {} bytes",
            std::mem::size_of::<Engine<crate::echo::Echo>>()
        );
        println!("command: {} bytes", std::mem::size_of::<Command>());
        // 1 504 B today; an idle TCP connection has a 4 KiB budget in all (BENCHMARKS.md),
        // so a task past 2 KiB would leave too little for the rest.
        assert!(
            size <= 2048,
            "the connection task future grew to {size} bytes"
        );
    }
}
