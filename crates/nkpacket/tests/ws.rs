//! §13 ws_test items (48–69) through the facade: WebSocket listeners sharing a port,
//! routing by path, host and sub-protocol, reuse by metadata, control frames, large messages.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use nkpacket::{Destination, Error, Frame, Options, Spec, StopReason, TransportKind};
use support::*;

/// Waits for `n` conn_stop reports, passing over the close frames and peer-closed reports
/// that come with them (WebSocket close frames are handed to `parse` before the end).
async fn stops(r: &mut Reports, n: usize, secs: f64) -> Vec<(&'static str, Ev)> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = r.next_within(secs).await;
        match ev.1 {
            Ev::ConnStop(..) => out.push(ev),
            Ev::PeerClosed | Ev::Parse(Frame::Close(_)) => {}
            ref other => panic!("unexpected report while waiting for stops: {other:?}"),
        }
    }
    out
}

fn binary(data: &'static [u8]) -> impl Fn(&Ev) -> bool {
    move |e| matches!(e, Ev::Parse(Frame::Binary(b)) if &b[..] == data)
}

/// Items 48–56.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_basic() {
    let nk = node();
    let mut r = Reports::new();
    // 48
    let l = nk
        .start_listener("<test://all:0;transport=ws>", r.opts("l", "dom1"))
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    let p = l.info().port();
    assert_eq!(nk.listeners_in("dom1").len(), 1);
    // 49: bare-URI params become options
    let c = nk
        .send(
            format!("test://localhost:{p};transport=ws;connect_timeout=2000;idle_timeout=1000"),
            Bytes::from_static(b"msg1"),
            r.opts("c", "dom2"),
        )
        .await
        .unwrap();
    let mut got = r.collect(4, 2.0).await;
    got.sort_by_key(|(t, _)| *t);
    assert!(matches!(&got[0], ("c", Ev::ConnInit(_))), "{got:?}");
    assert!(matches!(&got[1], ("c", Ev::Encode(_))), "{got:?}");
    let server = match (&got[2], &got[3]) {
        (("l", Ev::ConnInit(i)), ("l", Ev::Parse(Frame::Binary(b)))) if &b[..] == b"msg1" => {
            i.clone()
        }
        other => panic!("{other:?}"),
    };
    // 50, 51
    let ci = c.info();
    assert_eq!(ci.transport(), TransportKind::Ws);
    assert_eq!(ci.domain(), "dom2");
    assert_eq!(ci.remote(), format!("127.0.0.1:{p}").parse().unwrap());
    assert_eq!(ci.listen(), None);
    assert_eq!(ci.meta().path.as_deref(), Some("/"));
    assert_eq!(server.domain(), "dom1");
    assert_eq!(server.remote(), ci.local());
    assert_eq!(server.listen(), Some(l.info().local()));
    // 52: by handle, both ways
    nk.send(&c, Bytes::from_static(b"msg1b"), Options::default())
        .await
        .unwrap();
    r.expect("c", "encode", is_encode(b"msg1b")).await;
    r.expect("l", "parse msg1b", binary(b"msg1b")).await;
    let s = nk.connections_in("dom1").pop().unwrap();
    s.send(Bytes::from_static(b"msg1c")).await.unwrap();
    r.expect("l", "encode", is_encode(b"msg1c")).await;
    r.expect("c", "parse msg1c", binary(b"msg1c")).await;
    // 53
    let left = c.remaining_timeout().await.unwrap().unwrap();
    assert!(left > Duration::ZERO && left <= Duration::from_millis(1000));
    let left = s.remaining_timeout().await.unwrap().unwrap();
    assert!(left > Duration::from_secs(179) && left <= Duration::from_secs(180));
    // 54: a raw text frame stays text
    s.send(Frame::text("my text")).await.unwrap();
    r.expect(
        "c",
        "text",
        |e| matches!(e, Ev::Parse(Frame::Text(t)) if t == "my text"),
    )
    .await;
    // 55: another path is another connection
    let c2 = nk
        .send(
            format!("test://127.0.0.1:{p}/a/b;transport=ws;idle_timeout=500"),
            Bytes::from_static(b"msg2"),
            r.opts("c", "dom2"),
        )
        .await
        .unwrap();
    assert_ne!(c2, c);
    assert_eq!(c2.info().meta().path.as_deref(), Some("/a/b"));
    assert_eq!(c2.info().meta().host.as_deref(), Some("127.0.0.1"));
    r.collect(4, 2.0).await;
    // 56: both clients idle out; their server sides follow
    let got = stops(&mut r, 4, 3.0).await;
    assert_eq!(got.iter().filter(|(t, _)| *t == "c").count(), 2, "{got:?}");
    l.stop().await;
    r.expect("l", "listen_stop", is_listen_stop).await;
    nk.shutdown().await;
}

/// Items 58–65: three listeners on one port, routing and reuse by metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_multi() {
    let nk = node();
    let mut r = Reports::new();
    // 58
    let mut o1 = r.opts("dom1", "dom1");
    o1.path = Some("/dom1/more".into());
    let l1 = nk
        .start_listener("test://all:0;transport=ws", o1)
        .await
        .unwrap();
    let p = l1.info().port();
    let mut o2 = r.opts("dom2", "dom2");
    o2.idle_timeout = Some(Duration::from_millis(1000));
    let l2 = nk
        .start_listener(format!("<test://all:{p}/dom2;transport=ws>"), o2)
        .await
        .unwrap();
    let l3 = nk
        .start_listener(
            format!(
                "test://all:{p}/any;transport=ws;host=localhost; path= \"dom3\";ws_proto=proto1"
            ),
            r.opts("dom3", "dom3"),
        )
        .await
        .unwrap();
    r.collect(3, 1.0).await;
    assert_eq!(l3.info().options().host.as_deref(), Some("localhost"));
    assert_eq!(l2.info().local(), l1.info().local());
    // 60: routed to dom1 by path
    let mut o = r.opts("c", "dom5");
    o.idle_timeout = Some(Duration::from_millis(500));
    o.path = Some("/dom1/more".into());
    let d = Destination::new(
        "test",
        TransportKind::Ws,
        format!("127.0.0.1:{p}").parse().unwrap(),
    );
    nk.send(d.clone(), Bytes::from_static(b"m1"), o)
        .await
        .unwrap();
    let got = r.collect(4, 2.0).await;
    assert!(
        got.iter().any(|(t, e)| *t == "dom1" && binary(b"m1")(e)),
        "{got:?}"
    );
    // 61: no filter matches → a clear error
    for path in [None, Some("/"), Some("/dom1")] {
        let mut o = Options::default().with_domain("dom5");
        o.path = path.map(String::from);
        let e = nk
            .send(Spec::Connect(d.clone()), Bytes::from_static(b"x"), o)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Closed(_)), "{path:?}: {e}");
        assert!(e.to_string().contains("404"), "{e}");
    }
    // 62: with a base listener, routed to dom2
    let mut o = r.opts("c2", "dom1");
    o.base_listener = Some(true);
    let c2 = nk
        .send(
            format!("<test://127.0.0.1:{p}/dom2;transport=ws>"),
            Bytes::from_static(b"m2"),
            o,
        )
        .await
        .unwrap();
    assert_eq!(c2.info().listen(), Some(l1.info().local()));
    let got = r.collect(4, 2.0).await;
    assert!(
        got.iter().any(|(t, e)| *t == "dom2" && binary(b"m2")(e)),
        "{got:?}"
    );
    // 63: dom3 needs Host localhost and sub-protocol proto1
    for uri in [
        format!("test://127.0.0.1:{p}/dom3;transport=ws"),
        format!("test://localhost:{p}/dom3;transport=ws"),
        format!("test://localhost:{p}/dom3;transport=ws;ws_proto=proto2"),
    ] {
        let e = nk
            .connect(uri.as_str(), Options::default().with_domain("dom5"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "closed", "{uri}: {e}");
    }
    let c3 = nk
        .send(
            format!("test://localhost:{p}/dom3;transport=ws;ws_proto=proto1"),
            Bytes::from_static(b"m3"),
            r.opts("c3", "dom5"),
        )
        .await
        .unwrap();
    assert_eq!(c3.info().meta().ws_proto.as_deref(), Some("proto1"));
    let got = r.collect(4, 2.0).await;
    assert!(
        got.iter().any(|(t, e)| *t == "dom3" && binary(b"m3")(e)),
        "{got:?}"
    );
    // 64: reuse needs equal host, path and sub-protocol
    let same = nk
        .send(
            format!("test://localhost:{p}/dom3;transport=ws;ws_proto=proto1"),
            Bytes::from_static(b"m4"),
            r.opts("c3", "dom5"),
        )
        .await
        .unwrap();
    assert_eq!(same, c3);
    r.expect("c3", "encode", is_encode(b"m4")).await;
    r.expect("dom3", "parse m4", binary(b"m4")).await;
    // 65
    c3.stop_and_wait().await;
    for l in [&l1, &l2, &l3] {
        l.stop().await;
        l.stop().await;
    }
    nk.shutdown().await;
}

/// Items 66–69: ping answered once, pongs delivered, close from the server, large messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_control_frames_and_large_messages() {
    let nk = node();
    let mut r = Reports::new();
    let l = nk
        .start_listener("<test://localhost:0;transport=ws>", r.opts("l", "d"))
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    let p = l.info().port();
    let c = nk
        .connect(
            format!("test://localhost:{p};transport=ws"),
            r.opts("c", "d"),
        )
        .await
        .unwrap();
    let got = r.collect(2, 2.0).await;
    assert!(got.iter().all(|(_, e)| is_conn_init(e)), "{got:?}");
    // 66: exactly one pong (the original sent two)
    c.send(Frame::Ping(Bytes::from_static(b"ping1")))
        .await
        .unwrap();
    r.expect(
        "c",
        "pong",
        |e| matches!(e, Ev::Parse(Frame::Pong(b)) if &b[..] == b"ping1"),
    )
    .await;
    // 67: the server pings, the client answers by itself
    let s = nk.connections().into_iter().find(|x| *x != c).unwrap();
    s.send(Frame::Ping(Bytes::from_static(b"ping2")))
        .await
        .unwrap();
    r.expect(
        "l",
        "pong",
        |e| matches!(e, Ev::Parse(Frame::Pong(b)) if &b[..] == b"ping2"),
    )
    .await;
    // 69: a large message arrives whole
    let big = Bytes::from(vec![b'q'; 100_000]);
    c.send(big.clone()).await.unwrap();
    r.expect(
        "c",
        "encode",
        |e| matches!(e, Ev::Encode(b) if b.len() == 100_000),
    )
    .await;
    r.expect(
        "l",
        "parse big",
        move |e| matches!(e, Ev::Parse(Frame::Binary(b)) if b.len() == 100_000),
    )
    .await;
    // 68: the server closes: both sides stop
    s.send(Frame::close(1000, "")).await.unwrap();
    let got = stops(&mut r, 2, 2.0).await;
    assert_eq!(got.len(), 2);
    let _ = StopReason::Normal;
    nk.shutdown().await;
}

/// permessage-deflate through the facade: `ws_deflate=true` as a URI parameter on the
/// listener and on the client; then with deflate on one side only (no compression).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_deflate_through_the_facade() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The 101 response head to a raw upgrade offering permessage-deflate.
    async fn offer_answer(port: u16) -> String {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut c = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut c))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&c[..n]);
        }
        String::from_utf8_lossy(&buf).to_ascii_lowercase()
    }

    let big = Bytes::from(
        (0..4000)
            .flat_map(|i| format!("compressible line {};", i % 100).into_bytes())
            .collect::<Vec<u8>>(),
    );
    for (server, client) in [(true, true), (true, false), (false, true)] {
        let nk = node();
        let mut r = Reports::new();
        let l = nk
            .start_listener(
                format!("test://127.0.0.1:0;transport=ws;ws_deflate={server}"),
                r.opts("l", "d"),
            )
            .await
            .unwrap();
        r.expect("l", "listen_init", is_listen_init).await;
        let p = l.info().port();
        // the listener option reached the transport: an offer is accepted only with it
        let head = offer_answer(p).await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert_eq!(
            head.contains("sec-websocket-extensions: permessage-deflate"),
            server,
            "{head}"
        );
        // the raw connection shows up as a connection too, and stops when dropped
        r.expect("l", "conn_init of the raw client", is_conn_init)
            .await;
        assert_eq!(stops(&mut r, 1, 2.0).await.len(), 1);
        let c = nk
            .connect(
                format!("test://127.0.0.1:{p};transport=ws;ws_deflate={client}"),
                r.opts("c", "d"),
            )
            .await
            .unwrap();
        let got = r.collect(2, 2.0).await;
        assert!(got.iter().all(|(_, e)| is_conn_init(e)), "{got:?}");
        for _ in 0..3 {
            c.send(Frame::text("hello deflate")).await.unwrap();
            r.expect(
                "l",
                "text",
                |e| matches!(e, Ev::Parse(Frame::Text(t)) if t == "hello deflate"),
            )
            .await;
            c.send(Frame::Binary(big.clone())).await.unwrap();
            let want = big.clone();
            r.expect(
                "l",
                "big",
                move |e| matches!(e, Ev::Parse(Frame::Binary(b)) if *b == want),
            )
            .await;
        }
        // and back from the server
        let s = nk
            .connections()
            .into_iter()
            .find(|x| *x != c && x.info().remote() == c.info().local())
            .unwrap();
        s.send(Frame::Binary(big.clone())).await.unwrap();
        let want = big.clone();
        r.expect(
            "c",
            "big back",
            move |e| matches!(e, Ev::Parse(Frame::Binary(b)) if *b == want),
        )
        .await;
        nk.shutdown().await;
    }

    // the client option reached the transport: a fake server sees the offer, accepts it,
    // and a large message arrives compressed (RSV1)
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fp = fake.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = fake.accept().await.unwrap();
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut c = [0u8; 1024];
            let n = s.read(&mut c).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&c[..n]);
        }
        let head = String::from_utf8(buf).unwrap();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_string();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            nkp_ws::accept_key(&key)
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        let mut first = [0u8; 2];
        s.read_exact(&mut first).await.unwrap();
        (head, first[0])
    });
    let nk = node();
    let r = Reports::new();
    let c = nk
        .connect(
            format!("test://127.0.0.1:{fp};transport=ws;ws_deflate=true"),
            r.opts("c", "d"),
        )
        .await
        .unwrap();
    c.send(Frame::Binary(big.clone())).await.unwrap();
    let (head, b0) = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert!(
        head.contains("Sec-WebSocket-Extensions: permessage-deflate"),
        "{head}"
    );
    assert_eq!(b0, 0x80 | 0x40 | 0x2, "FIN, RSV1, binary");
    nk.shutdown().await;
}
