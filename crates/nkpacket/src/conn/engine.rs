//! The connection engine: one task per connection, owning its link and the protocol state.
//!
//! The task runs `conn_init`, then loops over three sources — commands from handles (send,
//! stop, cast, timers, bridging), units received on the link, and the idle timer — and ends
//! with `conn_stop` and a graceful close of the link. Sends are batched: every send queued
//! while the task was busy is encoded and written before one flush.

use std::any::{Any, type_name};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nkp_core::{BoxLink, Error, Frame, Options, TransportKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::keepalive::{Keepalive, KeepaliveStep};
use super::table::{ConnKey, IpCounter, Slot};
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
    rx: mpsc::Receiver<Command>,
    idle: Option<Duration>,
    deadline: Instant,
    send_timeout: Option<Duration>,
    send_timeout_close: bool,
    bridge: Option<(Connection, BridgeDir)>,
    /// A command taken from the queue while batching writes, to handle next.
    stashed: Option<Command>,
    /// The idle duration changed: the sleep must be re-armed (it may need to fire earlier).
    rearm: bool,
    budget: Duration,
    metrics: ConnMetrics,
    keepalive: Keepalive,
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

pub(crate) async fn run<P: Protocol>(proto: Arc<P>, setup: ConnSetup) {
    let ConnSetup {
        link,
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
        mut ready,
        callback_budget,
        per_ip,
    } = setup;
    let monitor = options.monitor.clone();

    let link = match link {
        LinkSource::Ready(l) => l,
        LinkSource::Pending(handshake) => {
            let r = tokio::select! {
                r = handshake => r,
                _ = cancelled(&listener_stop) => Err(Error::Closed(Some("listener stopped".into()))),
                _ = shutdown.cancelled() => Err(Error::Closed(Some("shutting down".into()))),
            };
            match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "incoming handshake failed");
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(e));
                    }
                    return;
                }
            }
        }
    };

    // The listener's per-source-IP cap, checked once the peer's address is known.
    let _ip_slot = match &per_ip {
        Some((counter, limit)) => match counter.acquire(link.info().remote.ip(), *limit) {
            Some(g) => Some(g),
            None => {
                tracing::debug!(remote = %link.info().remote, limit, "too many connections from this address");
                crate::metrics::refused(
                    link.info().transport.as_str(),
                    listener_id.as_deref().unwrap_or_default(),
                    "per_ip",
                );
                let mut link = link;
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, link.close()).await;
                return;
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
    let (tx, rx) = mpsc::channel(nkp_core::options::defaults::SEND_QUEUE);
    let done = CancellationToken::new();
    let conn = Connection::new(info.clone(), tx, done.clone(), options.send_timeout);
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
    let engine = Engine {
        proto,
        info,
        conn,
        link,
        rx,
        idle,
        deadline: Instant::now() + idle.unwrap_or(Duration::ZERO),
        send_timeout: options.send_timeout,
        send_timeout_close: options.send_timeout_close.unwrap_or(false),
        bridge: None,
        stashed: None,
        rearm: false,
        budget: callback_budget,
        metrics,
        keepalive,
    };
    async move {
        engine.main(ready, listener_stop, monitor, shutdown).await;
        // Dropping the slot unregisters the connection; then tell waiters it is gone.
        drop(slot);
        done.cancel();
    }
    .instrument(span)
    .await
}

impl<P: Protocol> Engine<P> {
    async fn main(
        mut self,
        ready: Option<oneshot::Sender<Result<Connection, Error>>>,
        listener_stop: Option<CancellationToken>,
        monitor: Option<CancellationToken>,
        shutdown: CancellationToken,
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
                self.finish(reason, None).await;
                return;
            }
            Err(reason) => {
                if let Some(r) = ready {
                    let _ = r.send(Err(match &reason {
                        StopReason::Panic(name) => Error::Panic(name),
                        other => Error::Protocol(other.to_string()),
                    }));
                }
                self.finish(reason, None).await;
                return;
            }
        };
        if let Some(r) = ready
            && r.send(Ok(self.conn.clone())).is_err()
        {
            // The caller gave up (a lost Happy Eyeballs race, a cancelled connect): nobody
            // holds this connection, so it must not linger.
            self.finish(StopReason::Normal, Some(state)).await;
            return;
        }
        tracing::debug!("connection started");

        let sleep = tokio::time::sleep_until(self.deadline);
        tokio::pin!(sleep);
        let ka_sleep = tokio::time::sleep_until(self.keepalive.next_event());
        tokio::pin!(ka_sleep);
        // Made once: each one registers a waiter on its token; rebuilding them every
        // iteration costs a lock round trip per message.
        let listener_stopped = cancelled(&listener_stop);
        tokio::pin!(listener_stopped);
        let shutting_down = shutdown.cancelled();
        tokio::pin!(shutting_down);
        let monitor_ended = cancelled(&monitor);
        tokio::pin!(monitor_ended);
        let reason = loop {
            if self.rearm {
                self.rearm = false;
                sleep.as_mut().reset(self.deadline);
            }
            if let Some(cmd) = self.stashed.take() {
                if let Some(r) = self.command(cmd, &mut state).await {
                    break r;
                }
                continue;
            }
            let bridge_done = self.bridge.as_ref().map(|(c, _)| c.done_token());
            tokio::select! {
                biased;
                _ = &mut listener_stopped => break StopReason::ListenerStopped,
                _ = &mut shutting_down => break StopReason::Shutdown,
                _ = &mut monitor_ended => break StopReason::Normal,
                _ = cancelled(&bridge_done) => {
                    self.bridge = None;
                    break StopReason::BridgeDown;
                }
                cmd = self.rx.recv() => {
                    // The engine holds a handle itself, so the queue never closes.
                    let Some(cmd) = cmd else { break StopReason::Normal };
                    if let Some(r) = self.command(cmd, &mut state).await {
                        break r;
                    }
                }
                item = self.link.next() => match item {
                    Some(Ok(frame)) => {
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
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "link failed");
                        break StopReason::Error(e.to_string());
                    }
                    None => {
                        let _ = guarded("peer_closed", || self.proto.peer_closed(&self.info, &mut state));
                        break StopReason::PeerClosed;
                    }
                },
                _ = &mut ka_sleep, if self.keepalive.enabled() => {
                    match self.keepalive.due(Instant::now()) {
                        KeepaliveStep::Wait(at) => ka_sleep.as_mut().reset(at),
                        KeepaliveStep::Dead => break StopReason::KeepaliveTimeout,
                        KeepaliveStep::Send(frame, at) => {
                            if let Err(e) = self.write_now(frame).await {
                                break StopReason::Error(e.to_string());
                            }
                            ka_sleep.as_mut().reset(at);
                        }
                    }
                }
                _ = &mut sleep, if self.idle.is_some() => {
                    if Instant::now() < self.deadline {
                        sleep.as_mut().reset(self.deadline);
                        continue;
                    }
                    match call(budget, "timeout", || self.proto.timeout(&self.info, &mut state)) {
                        Ok(Timeout::Keep) => {
                            self.touch();
                            sleep.as_mut().reset(self.deadline);
                        }
                        Ok(Timeout::Stop(r)) => break r,
                        Err(r) => break r,
                    }
                }
            }
        };
        if matches!(reason, StopReason::Shutdown | StopReason::ListenerStopped) {
            self.drain(&mut state).await;
        }
        self.finish(reason, Some(state)).await;
    }

    /// Graceful stop: messages already queued are still written (within [`CLOSE_TIMEOUT`]),
    /// so a `send` that was accepted is either delivered or its caller gets an error.
    async fn drain(&mut self, state: &mut P::State) {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut waiting = Vec::new();
        let mut failed: Option<String> = None;
        while let Ok(cmd) = self.rx.try_recv() {
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

    async fn finish(mut self, reason: StopReason, state: Option<P::State>) {
        tracing::debug!(%reason, "connection stopping");
        if let Some((peer, _)) = self.bridge.take() {
            peer.unbridge();
        }
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
        self.feed(frame).await?;
        self.flush().await
    }

    /// Writes frames (already fed) out; applies `send_timeout`.
    /// Writes are bounded by `send_timeout`, or [`DEFAULT_WRITE_TIMEOUT`], so that a sender
    /// waiting for its write to be done always gets an answer (the timer is armed only when
    /// the write does not complete at once).
    fn write_timeout(&self) -> Duration {
        self.send_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let t = self.write_timeout();
        tokio::time::timeout(t, self.link.flush())
            .await
            .map_err(|_| Error::Timeout {
                op: "send",
                after: t,
            })?
    }

    async fn feed(&mut self, frame: Frame) -> Result<(), Error> {
        let len = frame.len();
        let r = self.feed_inner(frame).await;
        if r.is_ok() {
            self.metrics.sent(len);
        }
        r
    }

    async fn feed_inner(&mut self, frame: Frame) -> Result<(), Error> {
        let t = self.write_timeout();
        tokio::time::timeout(t, self.link.feed(frame))
            .await
            .map_err(|_| Error::Timeout {
                op: "send",
                after: t,
            })?
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
                Ok(frame) => self.feed(frame).await,
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
                match self.rx.try_recv() {
                    Ok(Command::Send { msg, reply }) => next = Some((msg, reply)),
                    Ok(other) => self.stashed = Some(other),
                    Err(_) => {}
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
            Command::Send { msg, reply } => self.send_batch((msg, reply), state).await,
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
                self.bridge = Some((peer, BridgeDir::Down));
                None
            }
            Command::Unbridge => {
                self.bridge = None;
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
            self.bridge = Some((peer, BridgeDir::Up));
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
        if let Err(e) = self.feed(frame).await {
            return Some(StopReason::ReplyError(e.to_string()));
        }
        None
    }

    async fn flush_replies(&mut self) -> Option<StopReason> {
        if let Err(e) = self.flush().await {
            return Some(StopReason::ReplyError(e.to_string()));
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
            return self.forward(frame, state).await;
        }
        match call_since(self.budget, arrived, "parse", || {
            self.proto.parse(frame, &self.info, state)
        }) {
            Ok(Parse::Continue) => None,
            Ok(Parse::Reply(m)) => match self.feed_reply(m, state).await {
                Some(r) => Some(r),
                None => self.flush_replies().await,
            },
            Ok(Parse::ReplyMany(v)) => {
                for m in v {
                    if let Some(r) = self.feed_reply(m, state).await {
                        return Some(r);
                    }
                }
                self.flush_replies().await
            }
            Ok(Parse::Bridge(peer, first)) => {
                self.start_bridge(peer);
                match first {
                    Some(f) => self.forward(f, state).await,
                    None => None,
                }
            }
            Ok(Parse::Stop(r)) => Some(r),
            Err(r) => Some(r),
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
