//! §13 tcp_test items over TCP, §5.9 errors reachable with TCP, and engine behaviour
//! (idle timers, reuse, panics, bridges, limits) on loopback.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use nkpacket::{
    Destination, Error, Frame, Nkpacket, Options, Spec, StopReason, TransportKind, echo::Echo,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn any0() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// Items 26–30: two listeners from destinations with port 0, a send with a base listener,
/// addresses, inherited idle timeouts, idle close on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_basic() {
    let nk = node();
    let mut r = Reports::new();
    let mut o1 = r.opts("l1", "dom1");
    o1.idle_timeout = Some(Duration::from_millis(1000));
    let l1 = nk
        .start_listener(Destination::new("test", TransportKind::Tcp, any0()), o1)
        .await
        .unwrap();
    r.expect("l1", "listen_init", is_listen_init).await;
    let l2 = nk
        .start_listener(
            Destination::new("test", TransportKind::Tcp, any0()),
            r.opts("l2", "dom2"),
        )
        .await
        .unwrap();
    r.expect("l2", "listen_init", is_listen_init).await;
    let (p1, p2) = (l1.info().port(), l2.info().port());
    assert_ne!(p1, p2);
    assert_eq!(l1.info().transport(), TransportKind::Tcp);
    assert_eq!(l1.info().domain(), "dom1");
    assert_eq!(l1.info().local(), format!("0.0.0.0:{p1}").parse().unwrap());
    assert_eq!(nk.listeners().len(), 2);
    assert_eq!(nk.listeners_in("dom1").len(), 1);

    // 27
    let mut copts = r.opts("c2", "dom2");
    copts.idle_timeout = Some(Duration::from_millis(5000));
    copts.debug = Some(true);
    copts.base_listener = Some(true);
    let client = nk
        .send(
            format!("<test://localhost:{p1};transport=tcp>"),
            Bytes::from_static(b"msg1"),
            copts,
        )
        .await
        .unwrap();
    // the client's conn_init and encode happen in the caller's flow; the server's arrive
    // concurrently
    let mut got = r.collect(4, 2.0).await;
    got.sort_by_key(|(t, _)| *t);
    assert!(matches!(&got[0], ("c2", Ev::ConnInit(_))), "{got:?}");
    assert!(
        matches!(&got[1], ("c2", Ev::Encode(b)) if &b[..] == b"msg1"),
        "{got:?}"
    );
    let server_info = match (&got[2], &got[3]) {
        (("l1", Ev::ConnInit(i)), ("l1", Ev::Parse(f))) if f.payload() == b"msg1" => i.clone(),
        other => panic!("{other:?}"),
    };
    // 28
    let ci = client.info();
    assert_eq!(ci.domain(), "dom2");
    assert_eq!(ci.local().ip().to_string(), "127.0.0.1");
    assert_eq!(ci.remote(), format!("127.0.0.1:{p1}").parse().unwrap());
    assert_eq!(ci.listen(), Some(l2.info().local()));
    assert_eq!(server_info.domain(), "dom1");
    assert_eq!(server_info.remote(), ci.local());
    assert_eq!(server_info.listen(), Some(l1.info().local()));
    assert_eq!(server_info.direction(), nkpacket::Direction::Inbound);
    // 29
    let left = client.remaining_timeout().await.unwrap().unwrap();
    assert!(left > Duration::from_millis(4000) && left <= Duration::from_millis(5000));
    let server = nk.connections_in("dom1").pop().unwrap();
    let left = server.remaining_timeout().await.unwrap().unwrap();
    assert!(left > Duration::ZERO && left <= Duration::from_millis(1000));
    // 30: the server times out after ~1 s, the client sees the close
    let mut got = r.collect(3, 2.5).await;
    got.sort_by_key(|(t, _)| *t);
    assert!(matches!(&got[0], ("c2", Ev::PeerClosed)), "{got:?}");
    assert!(
        matches!(&got[1], ("c2", Ev::ConnStop(StopReason::PeerClosed, _))),
        "{got:?}"
    );
    assert!(
        matches!(&got[2], ("l1", Ev::ConnStop(StopReason::IdleTimeout, _))),
        "{got:?}"
    );
    assert_eq!(nk.listeners().len(), 2);
    nk.stop_all(None).await;
    let mut got = r.collect(2, 1.0).await;
    got.sort_by_key(|(t, _)| *t);
    assert!(matches!(got[0], ("l1", Ev::ListenStop)) && matches!(got[1], ("l2", Ev::ListenStop)));
    assert!(nk.listeners().is_empty());
    r.none_pending().await;
}

/// Items 37, 38, 39, 40 and 43–46: error forms and the send target forms over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_forms_and_reuse() {
    let nk = node();
    let mut r = Reports::new();
    let mut lo = r.opts("srv", "dom2");
    lo.tcp_packet = Some(nkpacket::Framing::Prefix4);
    let l = nk
        .start_listener("test://127.0.0.1:0;transport=tcp", lo)
        .await
        .unwrap();
    r.expect("srv", "listen_init", is_listen_init).await;
    let p = l.info().port();
    let addr: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
    // 37
    let e = nk
        .send("wrong", Bytes::from_static(b"m"), Options::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_uri");
    // 38
    let e = nk
        .send_current(
            Destination::new("test", TransportKind::Tcp, addr),
            Bytes::from_static(b"m"),
            Options::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoTransports), "{e}");
    // 39
    let e = nk
        .send(
            Destination::new("test", TransportKind::Sctp, addr),
            Bytes::from_static(b"m"),
            Options::default().with_base_listener(true),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "no_listening_transport", "{e}");
    // 40
    let e = nk
        .send(
            Destination::new("test", TransportKind::Udp, addr),
            Bytes::from(vec![7u8; 5000]),
            Options::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "no_listening_transport", "{e}");

    // A connection of domain dom1 with 4-byte framing.
    let cli_state = r.state("cli");
    let copts = || {
        let mut o = Options::default()
            .with_domain("dom1")
            .with_user_state(cli_state.clone());
        o.tcp_packet = Some(nkpacket::Framing::Prefix4);
        o
    };
    let big = Bytes::from(vec![b'z'; 5000]);
    let c1 = nk
        .send(
            Destination::new("test", TransportKind::Tcp, addr),
            big.clone(),
            copts(),
        )
        .await
        .unwrap();
    let mut got = r.collect(4, 2.0).await;
    got.sort_by_key(|(t, _)| *t);
    assert!(
        matches!(&got[3], ("srv", Ev::Parse(f)) if f.payload() == &big[..]),
        "{got:?}"
    );
    // 43: same domain, protocol, transport, address → reused
    let c2 = nk
        .send(
            Destination::new("test", TransportKind::Tcp, addr),
            Bytes::from_static(b"msg2"),
            copts(),
        )
        .await
        .unwrap();
    assert_eq!(c1, c2);
    r.expect("cli", "encode msg2", is_encode(b"msg2")).await;
    r.expect("srv", "parse msg2", is_parse(b"msg2")).await;
    // reuse needs the same domain: dom9 opens a new connection
    let c_other = nk
        .send(
            Destination::new("test", TransportKind::Tcp, addr),
            Bytes::from_static(b"other"),
            Options::default()
                .with_domain("dom9")
                .with_framing(nkpacket::Framing::Prefix4),
        )
        .await
        .unwrap();
    assert_ne!(c_other, c1);
    r.expect("srv", "conn_init", is_conn_init).await;
    r.expect("srv", "parse", is_parse(b"other")).await;
    // 44: the handle itself
    let c3 = nk
        .send(&c1, Bytes::from_static(b"msg3"), Options::default())
        .await
        .unwrap();
    assert_eq!(c3, c1);
    r.expect("cli", "encode msg3", is_encode(b"msg3")).await;
    r.expect("srv", "parse msg3", is_parse(b"msg3")).await;
    // 45: current only
    let c4 = nk
        .send_current(
            Destination::new("test", TransportKind::Tcp, addr),
            Bytes::from_static(b"msg4"),
            copts(),
        )
        .await
        .unwrap();
    assert_eq!(c4, c1);
    r.expect("cli", "encode msg4", is_encode(b"msg4")).await;
    r.expect("srv", "parse msg4", is_parse(b"msg4")).await;
    // 46: always a new one
    let c5 = nk
        .send(
            Spec::Connect(Destination::new("test", TransportKind::Tcp, addr)),
            Bytes::from_static(b"msg5"),
            copts(),
        )
        .await
        .unwrap();
    assert_ne!(c5, c1);
    let mut got = r.collect(4, 2.0).await;
    got.sort_by_key(|(t, _)| *t);
    assert!(matches!(got[0], ("cli", Ev::ConnInit(_))), "{got:?}");
    assert!(matches!(got[2], ("srv", Ev::ConnInit(_))), "{got:?}");
    // force_new does the same
    let c6 = nk
        .send(
            Destination::new("test", TransportKind::Tcp, addr),
            Bytes::from_static(b"msg6"),
            {
                let mut o = copts();
                o.force_new = Some(true);
                o
            },
        )
        .await
        .unwrap();
    assert!(c6 != c1 && c6 != c5);
    r.collect(4, 2.0).await;
    assert_eq!(
        nk.find_connections("dom1", "test", TransportKind::Tcp, addr)
            .len(),
        3
    );

    // 47-like: stopping the listener stops its server connections; the clients see the close
    l.stop().await;
    let got = r.collect(4 + 3 + 3 + 1, 3.0).await;
    let srv_stops = got
        .iter()
        .filter(|(t, e)| *t == "srv" && matches!(e, Ev::ConnStop(StopReason::ListenerStopped, _)))
        .count();
    assert_eq!(srv_stops, 4, "{got:?}");
    assert!(
        got.iter()
            .any(|(t, e)| *t == "srv" && matches!(e, Ev::ListenStop))
    );
    nk.shutdown().await;
}

/// §5.9 errors reachable over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors() {
    let nk = node();
    let mut r = Reports::new();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // econnrefused (the last error of the list is returned)
    let e = nk
        .send(
            format!("test://127.0.0.1:{closed_port};transport=tcp"),
            Bytes::from_static(b"x"),
            Options::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "econnrefused", "{e}");
    let e = nk
        .connect(
            format!("test://127.0.0.1:{closed_port};transport=tcp"),
            Options::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "econnrefused", "{e}");
    // no_transports
    let e = nk
        .send(Spec::List(vec![]), Bytes::new(), Options::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoTransports));
    // invalid_default_port: no protocol, no port
    let e = nk
        .send(
            "zzz://127.0.0.1;transport=tcp",
            Bytes::new(),
            Options::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidDefaultPort(TransportKind::Tcp)),
        "{e}"
    );
    // no_listener / multiple_listeners
    let e = nk
        .start_listener(Spec::List(vec![]), Options::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoListener));
    let e = nk
        .start_listener(
            "test://127.0.0.1:0;transport=tcp, test://127.0.0.1:0;transport=tcp",
            Options::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MultipleListeners(2)));
    // already_started: the same id on the same address
    let l = nk
        .start_listener(
            "test://127.0.0.1:0;transport=tcp",
            r.opts("l", "d").with_id("L1"),
        )
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    let p = l.info().port();
    let e = nk
        .start_listener(
            format!("test://127.0.0.1:{p};transport=tcp"),
            Options::default().with_id("L1"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "already_started", "{e}");
    // eaddrinuse: another id on the same port (no retries in this node)
    let e = nk
        .start_listener(
            format!("test://127.0.0.1:{p};transport=tcp"),
            Options::default().with_id("L2"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "eaddrinuse", "{e}");
    // id lookups
    assert_eq!(nk.listener("L1").unwrap(), l);
    assert_eq!(nk.listener("nope").unwrap_err().code(), "id_not_found");
    let l_dup = nk
        .start_listener(
            "test://127.0.0.1:0;transport=tcp",
            r.opts("l", "d").with_id("L1"),
        )
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    assert_eq!(nk.listener("L1").unwrap_err().code(), "multiple_pids");
    l_dup.stop().await;
    r.expect("l", "listen_stop", is_listen_stop).await;

    // encode_error: the connection survives it
    let c = nk
        .send(
            format!("test://127.0.0.1:{p};transport=tcp"),
            Bytes::from_static(b"first"),
            r.opts("c", "d"),
        )
        .await
        .unwrap();
    r.collect(4, 2.0).await;
    let e = c
        .send(Bytes::from_static(b"unencodable"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "encode_error");
    let e = c.send(42u32).await.unwrap_err();
    assert!(e.to_string().contains("unexpected type"), "{e}");
    c.send(Bytes::from_static(b"after")).await.unwrap();
    r.expect("c", "encode after", is_encode(b"after")).await;
    r.expect("l", "parse after", is_parse(b"after")).await;
    // raw frames bypass encoding
    c.send(Frame::binary(&b"raw"[..])).await.unwrap();
    r.expect("l", "parse raw", is_parse(b"raw")).await;
    // same_process: a connection's own code sending through its handle
    let (tx, rx) = tokio::sync::oneshot::channel();
    c.cast(SendSelf(c.clone(), tx)).unwrap();
    let e = rx.await.unwrap();
    assert!(matches!(e, Error::SameProcess), "{e}");
    // no_process: a stopped connection
    c.stop_and_wait().await;
    let got = r.collect(3, 2.0).await; // c conn_stop, l peer_closed + conn_stop
    assert!(
        got.iter().any(|(t, e)| *t == "c" && is_conn_stop(e)),
        "{got:?}"
    );
    assert!(!c.is_alive());
    let e = c.send(Bytes::from_static(b"late")).await.unwrap_err();
    assert!(matches!(e, Error::NoProcess), "{e}");
    nk.shutdown().await;
}

/// Global max_connections (exact, inbound and outbound alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections() {
    let nk = Nkpacket::builder()
        .protocol("test", TestProto)
        .max_connections(2)
        .build();
    let l = nk
        .start_listener("test://127.0.0.1:0;transport=tcp", Options::default())
        .await
        .unwrap();
    let uri = format!("test://127.0.0.1:{};transport=tcp", l.info().port());
    let wait_count = |n: usize| {
        let nk = nk.clone();
        async move {
            for _ in 0..200 {
                if nk.connection_count() == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "connection count stayed {} (wanted {n})",
                nk.connection_count()
            );
        }
    };
    // one client and its server side fill the two slots
    let c1 = nk.connect(uri.as_str(), Options::default()).await.unwrap();
    wait_count(2).await;
    // outbound refused at once
    let e = nk
        .connect(uri.as_str(), Options::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MaxConnections { limit: 2 }), "{e}");
    // inbound refused: a plain client is closed without a connection being made
    let mut s = tokio::net::TcpStream::connect(l.info().local())
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(nk.connection_count(), 2);
    // slots come back when connections end
    c1.stop_and_wait().await;
    wait_count(0).await;
    let _c2 = nk.connect(uri.as_str(), Options::default()).await.unwrap();
    nk.shutdown().await;
}

/// A panic in protocol code ends that connection only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_closes_only_that_connection() {
    let nk = node();
    let mut r = Reports::new();
    let l = nk
        .start_listener("test://127.0.0.1:0;transport=tcp", r.opts("l", "d"))
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    let uri = format!("test://127.0.0.1:{};transport=tcp", l.info().port());
    let good = nk.connect(uri.as_str(), Options::default()).await.unwrap();
    r.expect("l", "conn_init", is_conn_init).await;
    let bad = nk.connect(uri.as_str(), Options::default()).await.unwrap();
    r.expect("l", "conn_init", is_conn_init).await;
    bad.send(Bytes::from_static(b"panic!")).await.unwrap();
    r.expect("l", "conn_stop panic", |e| {
        matches!(e, Ev::ConnStop(StopReason::Panic("parse"), _))
    })
    .await;
    bad.closed().await;
    good.send(Bytes::from_static(b"still")).await.unwrap();
    r.expect("l", "parse", is_parse(b"still")).await;
    assert!(l.is_running());
    nk.shutdown().await;
}

/// The echo protocol over raw TCP, with a plain socket client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_with_plain_socket_client() {
    let nk = Nkpacket::builder().protocol("echo", Echo).build();
    for host in ["127.0.0.1", "[::1]"] {
        let l = nk
            .start_listener(format!("echo://{host}:0;transport=tcp"), Options::default())
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(l.info().local())
            .await
            .unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        l.stop().await;
    }
    // with 2-byte framing the echo comes back framed
    let l = nk
        .start_listener(
            "echo://127.0.0.1:0;transport=tcp;tcp_packet=2",
            Options::default(),
        )
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(l.info().local())
        .await
        .unwrap();
    s.write_all(b"\x00\x03abc").await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"\x00\x03abc");
    // garbage declaring a huge frame closes that connection only
    let mut bad = tokio::net::TcpStream::connect(l.info().local())
        .await
        .unwrap();
    bad.write_all(b"\xff\xff").await.unwrap();
    s.write_all(b"\x00\x01z").await.unwrap();
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"\x00\x01z");
    nk.shutdown().await;
}

/// Idle timers: `timeout` answering Keep refreshes; reset and set from the handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timers() {
    let nk = node();
    let l = nk
        .start_listener("test://127.0.0.1:0;transport=tcp", Options::default())
        .await
        .unwrap();
    let uri = format!(
        "test://127.0.0.1:{};transport=tcp;idle_timeout=300",
        l.info().port()
    );
    let c = nk.connect(uri.as_str(), Options::default()).await.unwrap();
    c.set_timeout(Some(Duration::from_secs(10))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.is_alive());
    let left = c.remaining_timeout().await.unwrap().unwrap();
    assert!(left > Duration::from_secs(9));
    c.set_timeout(None).await.unwrap();
    assert_eq!(c.remaining_timeout().await.unwrap(), None);
    c.set_timeout(Some(Duration::from_millis(100)))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), c.closed())
        .await
        .unwrap();
    nk.shutdown().await;
}

/// Bridging (§6.8): data received on one side is forwarded raw to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_forwards_both_ways() {
    use nkpacket::{ConnInfo, EncodeError, Parse, Protocol};
    struct Bridger(tokio::sync::Mutex<Option<nkpacket::Connection>>);
    struct Br(std::sync::Arc<Bridger>);
    impl Protocol for Br {
        type Message = Bytes;
        type State = ();
        fn parse(&self, f: Frame, _c: &ConnInfo, _s: &mut ()) -> Parse<Bytes> {
            match self.0.0.try_lock().ok().and_then(|g| g.clone()) {
                Some(peer) => Parse::Bridge(peer, Some(f)),
                None => Parse::Continue,
            }
        }
        fn encode(&self, m: Bytes, _c: &ConnInfo, _s: &mut ()) -> Result<Frame, EncodeError> {
            Ok(Frame::Binary(m))
        }
    }
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taddr = target.local_addr().unwrap();
    let bridger = std::sync::Arc::new(Bridger(tokio::sync::Mutex::new(None)));
    let nk = Nkpacket::builder()
        .protocol("br", Br(bridger.clone()))
        .build();
    let l = nk
        .start_listener("br://127.0.0.1:0;transport=tcp", Options::default())
        .await
        .unwrap();
    // the outbound leg, to a plain socket server
    let out = nk
        .connect(format!("br://{taddr};transport=tcp"), Options::default())
        .await
        .unwrap();
    let (mut far, _) = target.accept().await.unwrap();
    *bridger.0.lock().await = Some(out.clone());
    // a client of the listener: its first bytes trigger the bridge
    let mut near = tokio::net::TcpStream::connect(l.info().local())
        .await
        .unwrap();
    near.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    far.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    far.write_all(b"pong").await.unwrap();
    near.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    // the far side closing ends the bridge on both legs
    drop(far);
    let n = tokio::time::timeout(Duration::from_secs(2), near.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    nk.shutdown().await;
}

/// `send_with`: the message sees the connection that carries it; `is_local`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_and_is_local() {
    let nk = node();
    let mut r = Reports::new();
    let l = nk
        .start_listener("test://127.0.0.1:0;transport=tcp", r.opts("l", "none"))
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    let uri = format!("test://127.0.0.1:{};transport=tcp", l.info().port());
    let c = nk
        .send_with(
            uri.as_str(),
            |ci: &nkpacket::ConnInfo| Bytes::from(format!("from {}", ci.local())),
            Options::default(),
        )
        .await
        .unwrap();
    let want = format!("from {}", c.info().local());
    r.expect("l", "conn_init", is_conn_init).await;
    match r.next().await {
        ("l", Ev::Parse(f)) => assert_eq!(f.payload(), want.as_bytes()),
        other => panic!("{other:?}"),
    }
    assert!(nk.is_local(uri.as_str(), &Options::default()).await);
    assert!(
        !nk.is_local("test://127.0.0.1:1;transport=tcp", &Options::default())
            .await
    );
    nk.shutdown().await;
}

/// A listener on a name with several addresses listens on the first (IPv4); the name
/// becomes its host.
#[tokio::test]
async fn listener_on_localhost_takes_the_first_address() {
    let nk = node();
    let l = nk
        .start_listener("test://localhost:0;transport=tcp", Options::default())
        .await
        .unwrap();
    assert_eq!(l.info().local().ip().to_string(), "127.0.0.1");
    assert_eq!(l.info().options().host.as_deref(), Some("localhost"));
    nk.shutdown().await;
}

/// A protocol-supplied codec frames the stream (here: newline-delimited lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_codec_frames_the_stream() {
    use bytes::BytesMut;
    use nkpacket::codec::FrameCodec;
    use nkpacket::{ConnInfo, EncodeError, Parse, Protocol};
    use tokio_util::codec::{Decoder, Encoder};

    #[derive(Default)]
    struct Lines;
    impl Decoder for Lines {
        type Item = Bytes;
        type Error = Error;
        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
            match src.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let line = src.split_to(i + 1).freeze();
                    Ok(Some(line.slice(..i)))
                }
                None if src.len() > 1024 => Err(Error::MessageTooLarge {
                    size: src.len(),
                    max: 1024,
                }),
                None => Ok(None),
            }
        }
    }
    impl Encoder<Bytes> for Lines {
        type Error = Error;
        fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
            dst.extend_from_slice(&item);
            dst.extend_from_slice(b"\n");
            Ok(())
        }
    }
    struct LineEcho;
    impl Protocol for LineEcho {
        type Message = Bytes;
        type State = ();
        fn framing(&self) -> Option<nkpacket::Framing> {
            Some(nkpacket::Framing::Custom(std::sync::Arc::new(|| {
                Box::new(Lines) as Box<dyn FrameCodec>
            })))
        }
        fn parse(&self, f: Frame, _c: &ConnInfo, _s: &mut ()) -> Parse<Bytes> {
            let mut v = f.payload().to_vec();
            v.reverse();
            Parse::Reply(Bytes::from(v))
        }
        fn encode(&self, m: Bytes, _c: &ConnInfo, _s: &mut ()) -> Result<Frame, EncodeError> {
            Ok(Frame::Binary(m))
        }
    }
    let nk = Nkpacket::builder().protocol("lines", LineEcho).build();
    let l = nk
        .start_listener("lines://127.0.0.1:0;transport=tcp", Options::default())
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(l.info().local())
        .await
        .unwrap();
    // two lines in one write, a third split across writes
    s.write_all(b"abc\nxyz\n12").await.unwrap();
    s.write_all(b"3\n").await.unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"cba\nzyx\n321\n");
    nk.shutdown().await;
}

/// Graceful shutdown: every send accepted before `shutdown` is written before the
/// connection closes, even when the peer is slow to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_queued_messages() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let (mut s, _) = server.accept().await.unwrap();
        go_rx.await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        all.len()
    });
    let nk = Nkpacket::default();
    let c = nk
        .connect(format!("raw://{addr};transport=tcp"), Options::default())
        .await
        .unwrap();
    const N: usize = 100;
    const SIZE: usize = 64 * 1024;
    let mut sends = Vec::new();
    for _ in 0..N {
        let c = c.clone();
        sends.push(tokio::spawn(async move {
            c.send(Bytes::from(vec![7u8; SIZE])).await
        }));
    }
    // the peer is not reading: the writes stall on full socket buffers
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopper = {
        let nk = nk.clone();
        tokio::spawn(async move { nk.shutdown_with(Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    go_tx.send(()).unwrap();
    for s in sends {
        s.await.unwrap().unwrap();
    }
    stopper.await.unwrap();
    assert_eq!(reader.await.unwrap(), N * SIZE);
    assert!(!c.is_alive());
}

/// Listener restart policy (§6.10): a failed socket is reopened, at most 10 times a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_listener_sockets_are_reopened_a_few_times() {
    use futures_core::future::BoxFuture;
    use nkpacket::TransportKind as T;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    /// A listener whose socket "fails" (its stream ends) 50 ms after it was opened.
    struct Flaky {
        addr: SocketAddr,
        dies: Pin<Box<tokio::time::Sleep>>,
    }
    impl futures_core::Stream for Flaky {
        type Item = Result<nkp_core::Accepted, Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.dies.as_mut().poll(cx).map(|_| None)
        }
    }
    impl nkp_core::Listener for Flaky {
        fn local_addr(&self) -> SocketAddr {
            self.addr
        }
    }
    struct FlakyTransport {
        opened: Arc<AtomicUsize>,
        refuse_after: usize,
    }
    impl nkp_core::Transport for FlakyTransport {
        fn kinds(&self) -> &'static [T] {
            &[T::Sctp]
        }
        fn listen(
            &self,
            req: nkp_core::ListenRequest,
        ) -> BoxFuture<'static, Result<nkp_core::BoxListener, Error>> {
            let n = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
            let refuse = n > self.refuse_after;
            Box::pin(async move {
                if refuse {
                    return Err(Error::Unsupported("no more sockets".into()));
                }
                let addr = SocketAddr::new(req.addr.ip(), 4242);
                Ok(Box::new(Flaky {
                    addr,
                    dies: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
                }) as nkp_core::BoxListener)
            })
        }
        fn connect(
            &self,
            _req: nkp_core::ConnectRequest,
        ) -> BoxFuture<'static, Result<nkp_core::BoxLink, Error>> {
            Box::pin(async { Err(Error::Unsupported("flaky".into())) })
        }
    }
    use std::future::Future;

    for (refuse_after, expected_opens) in [(usize::MAX, 11), (3, 4)] {
        let opened = Arc::new(AtomicUsize::new(0));
        let nk = Nkpacket::builder()
            .transport(Arc::new(FlakyTransport {
                opened: opened.clone(),
                refuse_after,
            }))
            .build();
        let l = nk
            .start_listener("x://127.0.0.1:0;transport=sctp", Options::default())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), l.stopped())
            .await
            .expect("the listener gives up");
        assert_eq!(opened.load(Ordering::SeqCst), expected_opens);
        assert!(nk.listeners().is_empty());
    }
}

/// `reuseport`: several sockets on one address (SO_REUSEPORT), one task each; they serve
/// together and stop together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuseport_listeners() {
    let nk = Nkpacket::builder().protocol("echo", Echo).build();
    for t in ["tcp", "udp"] {
        let first = nk
            .start_listener(
                format!("echo://127.0.0.1:0;transport={t};reuseport=4"),
                Options::default(),
            )
            .await
            .unwrap();
        let all = nk.listeners();
        assert_eq!(all.len(), 4, "{t}");
        assert!(all.iter().all(|l| l.info().local() == first.info().local()));
        let addr = first.info().local();
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let t = t.to_string();
            tasks.push(tokio::spawn(async move {
                let msg = i.to_be_bytes();
                if t == "tcp" {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    s.write_all(&msg).await.unwrap();
                    let mut b = [0u8; 4];
                    s.read_exact(&mut b).await.unwrap();
                    assert_eq!(b, msg);
                } else {
                    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    s.send_to(&msg, addr).await.unwrap();
                    let mut b = [0u8; 4];
                    let (n, from) =
                        tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut b))
                            .await
                            .unwrap()
                            .unwrap();
                    assert_eq!((n, from, b), (4, addr, msg));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        first.stop().await;
        for _ in 0..100 {
            if nk.listeners().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            nk.listeners().is_empty(),
            "{t}: the others stop with the first"
        );
    }
    nk.shutdown().await;
}
