//! The test protocol of the original suite (§13): every callback reports to the test runner
//! through the user state, tagged.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nkpacket::{
    ConnInfo, Connection, EncodeError, Frame, Handled, ListenerInfo, Options, Parse, Protocol,
    StopReason, TransportKind, TransportRule, UserState,
};
use tokio::sync::mpsc;

/// One report.
#[derive(Debug, Clone)]
pub enum Ev {
    ListenInit(ListenerInfo),
    ConnInit(ConnInfo),
    Parse(Frame),
    Encode(Bytes),
    ListenParse(SocketAddr, Bytes),
    ConnStop(StopReason, ConnInfo),
    ListenStop,
    PeerClosed,
}

/// Where a listener's or connection's reports go.
#[derive(Clone)]
pub struct Reporter {
    pub tag: &'static str,
    pub tx: mpsc::UnboundedSender<(&'static str, Ev)>,
}

/// Receives reports.
pub struct Reports {
    rx: mpsc::UnboundedReceiver<(&'static str, Ev)>,
    tx: mpsc::UnboundedSender<(&'static str, Ev)>,
}

impl Reports {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Reports { rx, tx }
    }

    /// User state that reports under `tag`.
    pub fn state(&self, tag: &'static str) -> UserState {
        UserState::new(Reporter {
            tag,
            tx: self.tx.clone(),
        })
    }

    /// Options with `domain` and a reporting user state.
    pub fn opts(&self, tag: &'static str, domain: &str) -> Options {
        Options::default()
            .with_domain(domain)
            .with_user_state(self.state(tag))
    }

    /// The next report, within `secs` seconds.
    pub async fn next_within(&mut self, secs: f64) -> (&'static str, Ev) {
        tokio::time::timeout(Duration::from_secs_f64(secs), self.rx.recv())
            .await
            .expect("timed out waiting for a report")
            .expect("report channel closed")
    }

    /// The next report (1 s).
    pub async fn next(&mut self) -> (&'static str, Ev) {
        self.next_within(1.0).await
    }

    /// Waits for a report of `tag` matching `pred`, failing on any other report in between.
    pub async fn expect(&mut self, tag: &str, what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
        self.expect_within(tag, what, 1.0, pred).await
    }

    pub async fn expect_within(
        &mut self,
        tag: &str,
        what: &str,
        secs: f64,
        pred: impl Fn(&Ev) -> bool,
    ) -> Ev {
        let (t, ev) = tokio::time::timeout(Duration::from_secs_f64(secs), self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {tag}: {what}"))
            .expect("report channel closed");
        assert!(
            t == tag && pred(&ev),
            "expected {tag}: {what}, got {t}: {ev:?}"
        );
        ev
    }

    /// Collects `n` reports in any order.
    pub async fn collect(&mut self, n: usize, secs: f64) -> Vec<(&'static str, Ev)> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.next_within(secs).await);
        }
        v
    }

    /// Asserts nothing else arrives within 50 ms.
    pub async fn none_pending(&mut self) {
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(50), self.rx.recv()).await {
            let text: String = format!("{r:?}").chars().take(300).collect();
            panic!("unexpected report {text}");
        }
    }
}

fn report(state: Option<&UserState>, ev: Ev) {
    if let Some(r) = state.and_then(|s| s.downcast_ref::<Reporter>()) {
        let _ = r.tx.send((r.tag, ev));
    }
}

/// The test protocol: transports http, https, udp, tcp, tls, sctp, ws, wss; default ports
/// udp 1234, tcp 1235, tls 1236, sctp 1237, ws 1238, wss 1239, http 1240, https 1241.
/// Messages are `Bytes`, encoded as they are; `Frame`s bypass encoding (the original's
/// `{nkraw, ...}`).
#[derive(Clone, Default)]
pub struct TestProto;

pub fn test_default_port(t: TransportKind) -> u16 {
    match t {
        TransportKind::Udp => 1234,
        TransportKind::Tcp => 1235,
        TransportKind::Tls => 1236,
        TransportKind::Sctp => 1237,
        TransportKind::Ws => 1238,
        TransportKind::Wss => 1239,
        TransportKind::Http => 1240,
        TransportKind::Https => 1241,
    }
}

/// A message the test protocol understands in `handle`: send through this connection
/// handle from inside the connection's own task.
pub struct SendSelf(
    pub Connection,
    pub tokio::sync::oneshot::Sender<nkpacket::Error>,
);

impl Protocol for TestProto {
    type Message = Bytes;
    type State = ();

    fn transports(&self, _scheme: &str) -> Option<Vec<TransportRule>> {
        use TransportKind::*;
        Some(
            [Http, Https, Udp, Tcp, Tls, Sctp, Ws, Wss]
                .into_iter()
                .map(TransportRule::Plain)
                .collect(),
        )
    }

    fn default_port(&self, t: TransportKind) -> Option<u16> {
        Some(test_default_port(t))
    }

    fn conn_init(&self, conn: &ConnInfo) -> nkpacket::Init<()> {
        report(conn.user_state(), Ev::ConnInit(conn.clone()));
        nkpacket::Init::Ok(())
    }

    fn parse(&self, frame: Frame, conn: &ConnInfo, _s: &mut ()) -> Parse<Bytes> {
        if frame.payload() == b"panic!" {
            panic!("test protocol asked to panic");
        }
        report(conn.user_state(), Ev::Parse(frame));
        Parse::Continue
    }

    fn peer_closed(&self, conn: &ConnInfo, _s: &mut ()) {
        report(conn.user_state(), Ev::PeerClosed);
    }

    fn encode(&self, msg: Bytes, conn: &ConnInfo, _s: &mut ()) -> Result<Frame, EncodeError> {
        if &msg[..] == b"unencodable" {
            return Err(EncodeError::new("asked not to encode"));
        }
        report(conn.user_state(), Ev::Encode(msg.clone()));
        Ok(Frame::Binary(msg))
    }

    fn handle(&self, msg: Box<dyn std::any::Any + Send>, _conn: &ConnInfo, _s: &mut ()) -> Handled {
        if let Ok(m) = msg.downcast::<SendSelf>() {
            let SendSelf(conn, tx) = *m;
            let r = futures::executor::block_on(conn.send(Bytes::from_static(b"x")));
            let _ = tx.send(r.expect_err("sending to itself must fail"));
        }
        Handled::Continue
    }

    fn conn_stop(&self, reason: &StopReason, conn: &ConnInfo, _s: Option<()>) {
        report(
            conn.user_state(),
            Ev::ConnStop(reason.clone(), conn.clone()),
        );
    }

    fn listen_init(&self, l: &ListenerInfo) {
        report(l.user_state(), Ev::ListenInit(l.clone()));
    }

    fn listen_parse(&self, remote: SocketAddr, data: Bytes, l: &ListenerInfo) -> Handled {
        report(l.user_state(), Ev::ListenParse(remote, data));
        Handled::Continue
    }

    fn listen_stop(&self, _reason: &StopReason, l: &ListenerInfo) {
        report(l.user_state(), Ev::ListenStop);
    }
}

/// A node with the test protocol under scheme `test`, fast bind retries.
pub fn node() -> nkpacket::Nkpacket {
    nkpacket::Nkpacket::builder()
        .protocol("test", TestProto)
        .bind_retries(0, Duration::from_millis(10))
        .build()
}

pub fn is_conn_init(e: &Ev) -> bool {
    matches!(e, Ev::ConnInit(_))
}
pub fn is_listen_init(e: &Ev) -> bool {
    matches!(e, Ev::ListenInit(_))
}
pub fn is_parse(data: &'static [u8]) -> impl Fn(&Ev) -> bool {
    move |e| matches!(e, Ev::Parse(f) if f.payload() == data)
}
pub fn is_encode(data: &'static [u8]) -> impl Fn(&Ev) -> bool {
    move |e| matches!(e, Ev::Encode(b) if &b[..] == data)
}
pub fn is_conn_stop(e: &Ev) -> bool {
    matches!(e, Ev::ConnStop(..))
}
pub fn is_listen_stop(e: &Ev) -> bool {
    matches!(e, Ev::ListenStop)
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
