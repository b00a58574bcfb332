//! WebSocket transport over loopback: echo, fragments, control frames, close, limits,
//! routing on a shared port, wss.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use nkp_core::{Error, Frame, Transport, TransportKind};
use nkp_http::HttpServers;
use nkp_ws::WsTransport;

const V4: &str = "127.0.0.1:0";
const V6: &str = "[::1]:0";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

async fn echo_on(bind: &str) {
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(&ws, TransportKind::Ws, addr(bind), opts(&[]))
        .await
        .unwrap();
    let port_addr = l.local_addr();
    let mut events = serve_echo(l);
    let mut c = connect(&ws, TransportKind::Ws, port_addr, opts(&[]))
        .await
        .unwrap();
    assert_eq!(c.info().meta.path.as_deref(), Some("/"));
    assert_eq!(c.info().remote, port_addr);
    echo(&mut c, Frame::text("hello")).await;
    echo(&mut c, Frame::binary(&b"\x00\x01binary"[..])).await;
    // text stays text even when it looks binary-ish, binary stays binary even when UTF-8
    echo(&mut c, Frame::binary(&b"plain ascii"[..])).await;
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    echo(&mut c, Frame::Binary(Bytes::from(big))).await;
    echo(&mut c, Frame::text("x".repeat(10_000))).await;
    match recv(&mut events).await {
        Event::Accepted(info) => {
            assert_eq!(info.transport, TransportKind::Ws);
            assert_eq!(info.remote, c.info().local);
            assert_eq!(info.local, port_addr);
            assert_eq!(info.meta.path.as_deref(), Some("/"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(recv(&mut events).await, Event::Frame(Frame::Text(t)) if t == "hello"));
}

#[tokio::test]
async fn echo_keeps_text_and_binary_apart_ipv4() {
    echo_on(V4).await;
}

#[tokio::test]
async fn echo_keeps_text_and_binary_apart_ipv6() {
    echo_on(V6).await;
}

#[tokio::test]
async fn fragmented_message_from_a_raw_client_is_reassembled() {
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(&ws, TransportKind::Ws, addr(V4), opts(&[]))
        .await
        .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    let (mut raw, head) = Raw::handshake(a, &Raw::request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("server: nkpacket"),
        "{head}"
    );
    raw.write_frame(false, 0x1, b"hel").await;
    // a ping in the middle of a fragmented message is allowed
    raw.write_frame(true, 0x9, b"mid").await;
    raw.write_frame(false, 0x0, b"lo ").await;
    raw.write_frame(true, 0x0, b"world").await;
    let mut pongs = 0;
    loop {
        let (fin, op, payload) = raw.read_frame().await.unwrap();
        assert!(fin);
        match op {
            0xA => {
                assert_eq!(payload, b"mid");
                pongs += 1;
            }
            0x1 => {
                assert_eq!(payload, b"hello world");
                break;
            }
            other => panic!("opcode {other}"),
        }
    }
    assert_eq!(pongs, 1);
    assert!(matches!(recv(&mut events).await, Event::Accepted(_)));
    assert!(matches!(recv(&mut events).await, Event::Frame(Frame::Text(t)) if t == "hello world"));
}

#[tokio::test]
async fn a_ping_gets_exactly_one_pong_and_pongs_are_passed_up() {
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(&ws, TransportKind::Ws, addr(V4), opts(&[]))
        .await
        .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    let (mut raw, _) = Raw::handshake(a, &Raw::request("/", "")).await;
    raw.write_frame(true, 0x9, b"p1").await;
    raw.write_frame(true, 0xA, b"unsolicited").await;
    raw.write_frame(true, 0x2, b"after").await;
    let mut seen = Vec::new();
    loop {
        let (_, op, payload) = raw.read_frame().await.unwrap();
        seen.push((op, payload.clone()));
        if op == 0x2 {
            break;
        }
    }
    assert_eq!(seen, vec![(0xA, b"p1".to_vec()), (0x2, b"after".to_vec())]);
    assert!(matches!(recv(&mut events).await, Event::Accepted(_)));
    // the server link saw the pong, not the ping
    assert!(
        matches!(recv(&mut events).await, Event::Frame(Frame::Pong(p)) if &p[..] == b"unsolicited")
    );
    assert!(
        matches!(recv(&mut events).await, Event::Frame(Frame::Binary(b)) if &b[..] == b"after")
    );

    // our client: a ping written is answered by one pong, passed up as a frame
    let mut c = connect(&ws, TransportKind::Ws, a, opts(&[])).await.unwrap();
    c.send(Frame::Ping(Bytes::from_static(b"c1")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut c).await.unwrap().unwrap(),
        Frame::Pong(Bytes::from_static(b"c1"))
    );
    echo(&mut c, Frame::text("then data")).await;
}

#[tokio::test]
async fn close_handshake_started_by_the_client() {
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(&ws, TransportKind::Ws, addr(V4), opts(&[]))
        .await
        .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    let mut c = connect(&ws, TransportKind::Ws, a, opts(&[])).await.unwrap();
    echo(&mut c, Frame::text("hi")).await;
    c.send(Frame::close(1000, "bye")).await.unwrap();
    // the server's reply comes back as a close frame, then the stream ends
    match next(&mut c).await {
        Some(Ok(Frame::Close(Some(r)))) => assert_eq!(r.code, 1000),
        other => panic!("{other:?}"),
    }
    assert!(next(&mut c).await.is_none());
    // data can no longer be written
    assert!(c.send(Frame::text("late")).await.is_err());
    assert!(matches!(recv(&mut events).await, Event::Accepted(_)));
    assert!(matches!(
        recv(&mut events).await,
        Event::Frame(Frame::Text(_))
    ));
    match recv(&mut events).await {
        Event::Frame(Frame::Close(Some(r))) => {
            assert_eq!(r.code, 1000);
            assert_eq!(r.reason, "bye");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(recv(&mut events).await, Event::End));
}

#[tokio::test]
async fn close_handshake_started_by_the_server() {
    let ws = WsTransport::new(HttpServers::new());
    let mut l = listen(&ws, TransportKind::Ws, addr(V4), opts(&[]))
        .await
        .unwrap();
    let a = l.local_addr();
    let mut c = connect(&ws, TransportKind::Ws, a, opts(&[])).await.unwrap();
    let mut s = match l.next().await.unwrap().unwrap() {
        nkp_core::Accepted::Pending(p) => p.await.unwrap(),
        other => panic!("{other:?}"),
    };
    // as the facade does on shutdown: a going-away close, then close()
    s.feed(Frame::close(1001, "going away")).await.unwrap();
    s.close().await.unwrap();
    match next(&mut c).await {
        Some(Ok(Frame::Close(Some(r)))) => {
            assert_eq!((r.code, r.reason.as_str()), (1001, "going away"))
        }
        other => panic!("{other:?}"),
    }
    // the server side sees the client's reply, then the end
    match tokio::time::timeout(WAIT, s.next()).await.unwrap() {
        Some(Ok(Frame::Close(Some(r)))) => assert_eq!(r.code, 1001),
        other => panic!("{other:?}"),
    }
    assert!(
        tokio::time::timeout(WAIT, s.next())
            .await
            .unwrap()
            .is_none()
    );
    // the server drops the TCP connection (as the connection task does); the client's
    // stream ends
    drop(s);
    assert!(next(&mut c).await.is_none());

    // closing a client link without a close frame sends 1000
    let mut c2 = connect(&ws, TransportKind::Ws, a, opts(&[])).await.unwrap();
    let mut s2 = match l.next().await.unwrap().unwrap() {
        nkp_core::Accepted::Pending(p) => p.await.unwrap(),
        other => panic!("{other:?}"),
    };
    c2.close().await.unwrap();
    match tokio::time::timeout(WAIT, s2.next()).await.unwrap() {
        Some(Ok(Frame::Close(Some(r)))) => assert_eq!(r.code, 1000),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_message_is_refused_with_1009() {
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(
        &ws,
        TransportKind::Ws,
        addr(V4),
        opts(&[("max_message_size", "1000")]),
    )
    .await
    .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    let mut c = connect(&ws, TransportKind::Ws, a, opts(&[])).await.unwrap();
    echo(&mut c, Frame::binary(vec![7u8; 1000])).await;
    c.send(Frame::binary(vec![7u8; 1001])).await.unwrap();
    match next(&mut c).await {
        Some(Ok(Frame::Close(Some(r)))) => assert_eq!(r.code, 1009),
        other => panic!("{other:?}"),
    }
    assert!(matches!(recv(&mut events).await, Event::Accepted(_)));
    assert!(matches!(recv(&mut events).await, Event::Frame(_)));
    match recv(&mut events).await {
        Event::Error(Error::MessageTooLarge { max, .. }) => assert_eq!(max, 1000),
        other => panic!("{other:?}"),
    }

    // a fragmented message over the limit too (each fragment small)
    let mut events2 = events;
    let (mut raw, _) = Raw::handshake(a, &Raw::request("/", "")).await;
    raw.write_frame(false, 0x2, &[1u8; 400]).await;
    for _ in 0..2 {
        raw.write_frame(false, 0x0, &[1u8; 400]).await;
    }
    raw.write_frame(true, 0x0, &[1u8; 400]).await;
    let (_, op, payload) = raw.read_frame().await.unwrap();
    assert_eq!(op, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
    assert!(matches!(recv(&mut events2).await, Event::Accepted(_)));
    assert!(matches!(
        recv(&mut events2).await,
        Event::Error(Error::MessageTooLarge { .. })
    ));

    // a client link refuses oversized messages from the server the same way
    let l2 = listen(&ws, TransportKind::Ws, addr(V4), opts(&[]))
        .await
        .unwrap();
    let a2 = l2.local_addr();
    let _events3 = serve_echo(l2);
    let mut c = connect(
        &ws,
        TransportKind::Ws,
        a2,
        opts(&[("max_message_size", "100")]),
    )
    .await
    .unwrap();
    c.send(Frame::binary(vec![1u8; 200])).await.unwrap();
    match next(&mut c).await {
        Some(Err(Error::MessageTooLarge { max: 100, .. })) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_input_gets_a_close_code_or_a_status_never_a_panic() {
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(&ws, TransportKind::Ws, addr(V4), opts(&[]))
        .await
        .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    // invalid UTF-8 in a text frame → 1007
    let (mut raw, _) = Raw::handshake(a, &Raw::request("/", "")).await;
    raw.write_frame(true, 0x1, &[0xff, 0xfe]).await;
    let (_, op, payload) = raw.read_frame().await.unwrap();
    assert_eq!(op, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1007);
    assert!(matches!(recv(&mut events).await, Event::Accepted(_)));
    assert!(matches!(
        recv(&mut events).await,
        Event::Error(Error::Protocol(_))
    ));
    // a reserved opcode → 1002
    let (mut raw, _) = Raw::handshake(a, &Raw::request("/", "")).await;
    raw.write_frame(true, 0x3, b"??").await;
    let (_, op, payload) = raw.read_frame().await.unwrap();
    assert_eq!(op, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    // bad upgrade requests → 400
    let (_, head) = Raw::handshake(
        a,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (_, head) = Raw::handshake(
        a,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // garbage instead of HTTP → 400 from the HTTP server, then close
    let (_, head) = Raw::handshake(a, "\x16\x03\x01garbage\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

/// Spec §13 ws_test multi (items 58–64), adapted.
#[tokio::test]
async fn several_ws_listeners_share_a_port_routed_by_path_host_and_proto() {
    let servers = HttpServers::new();
    let ws = WsTransport::new(servers.clone());
    let l1 = listen(
        &ws,
        TransportKind::Ws,
        addr("127.0.0.1:0"),
        opts(&[("path", "/dom1/more")]),
    )
    .await
    .unwrap();
    let a = l1.local_addr();
    let l2 = listen(&ws, TransportKind::Ws, a, opts(&[("path", "/dom2")]))
        .await
        .unwrap();
    let l3 = listen(
        &ws,
        TransportKind::Ws,
        a,
        opts(&[
            ("host", "LocalHost"),
            ("path", "dom3"),
            ("ws_proto", "proto1"),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(l2.local_addr(), a);
    assert_eq!(l3.local_addr(), a);
    let info = servers.servers();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].local, a);
    let order: Vec<_> = info[0]
        .filters
        .iter()
        .map(|f| {
            (
                f.spec.host.clone(),
                f.spec.path.clone(),
                f.spec.ws_proto.clone(),
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            (
                Some("localhost".into()),
                "/dom3".into(),
                Some("proto1".into())
            ),
            (None, "/dom2".into(), None),
            (None, "/dom1/more".into(), None),
        ]
    );
    let mut e1 = serve_echo(l1);
    let mut e2 = serve_echo(l2);
    let mut e3 = serve_echo(l3);

    // item 60: routed to dom1 (and a sub-path below it too)
    for path in ["/dom1/more", "/dom1/more/sub"] {
        let mut c = connect(&ws, TransportKind::Ws, a, opts(&[("path", path)]))
            .await
            .unwrap();
        assert_eq!(c.info().meta.path.as_deref(), Some(path));
        echo(&mut c, Frame::text("to dom1")).await;
        assert_eq!(accepted(&mut e1).await.meta.path.as_deref(), Some(path));
    }
    // item 61: no filter matches → the handshake fails with the 404
    for path in [None, Some("/"), Some("/dom1")] {
        let o = match path {
            Some(p) => opts(&[("path", p)]),
            None => opts(&[]),
        };
        match connect(&ws, TransportKind::Ws, a, o).await {
            Err(Error::Closed(Some(m))) => assert!(m.contains("404"), "{m}"),
            Err(other) => panic!("{path:?}: {other}"),
            Ok(_) => panic!("{path:?}: connected"),
        }
    }
    // item 62: dom2
    let mut c = connect(
        &ws,
        TransportKind::Ws,
        a,
        opts(&[("path", "/dom2"), ("host", "127.0.0.1")]),
    )
    .await
    .unwrap();
    assert_eq!(c.info().meta.host.as_deref(), Some("127.0.0.1"));
    echo(&mut c, Frame::text("to dom2")).await;
    accepted(&mut e2).await;
    // item 63: dom3 needs host localhost and proto1
    for o in [
        opts(&[
            ("path", "/dom3"),
            ("host", "127.0.0.1"),
            ("ws_proto", "proto1"),
        ]),
        opts(&[("path", "/dom3"), ("host", "localhost")]),
        opts(&[
            ("path", "/dom3"),
            ("host", "localhost"),
            ("ws_proto", "proto2"),
        ]),
    ] {
        match connect(&ws, TransportKind::Ws, a, o).await {
            Err(Error::Closed(Some(m))) => assert!(m.contains("404"), "{m}"),
            other => panic!("{:?}", other.map(|l| l.info().clone())),
        }
    }
    let mut c = connect(
        &ws,
        TransportKind::Ws,
        a,
        opts(&[
            ("path", "/dom3"),
            ("host", "LOCALHOST"),
            ("ws_proto", "proto1"),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(c.info().meta.ws_proto.as_deref(), Some("proto1"));
    echo(&mut c, Frame::text("to dom3")).await;
    let i = accepted(&mut e3).await;
    assert_eq!(i.meta.ws_proto.as_deref(), Some("proto1"));
    assert_eq!(i.meta.host.as_deref(), Some("localhost"));
    // a client offering several protocols matches the filter requiring one of them, and the
    // 101 names the filter's protocol
    let (_, head) = Raw::handshake(
        a,
        &Raw::request("/dom3", "Sec-WebSocket-Protocol: proto2, proto1\r\n")
            .replace("Host: 127.0.0.1", "Host: localhost:1"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: proto1"),
        "{head}"
    );
    // a plain HTTP request to a path only ws listeners serve → 404
    let (_, head) = Raw::handshake(a, "GET /dom2 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("server: nkpacket"),
        "{head}"
    );
}

#[tokio::test]
async fn a_stopped_listener_frees_its_path_and_the_last_one_the_port() {
    let servers = HttpServers::new();
    let ws = WsTransport::new(servers.clone());
    let l1 = listen(&ws, TransportKind::Ws, addr(V4), opts(&[("path", "/a")]))
        .await
        .unwrap();
    let a = l1.local_addr();
    let l2 = listen(&ws, TransportKind::Ws, a, opts(&[("path", "/b")]))
        .await
        .unwrap();
    let _e1 = serve_echo(l1);
    drop(l2);
    match connect(&ws, TransportKind::Ws, a, opts(&[("path", "/b")])).await {
        Err(Error::Closed(Some(m))) => assert!(m.contains("404"), "{m}"),
        other => panic!("{:?}", other.map(|l| l.info().clone())),
    }
    let mut c = connect(&ws, TransportKind::Ws, a, opts(&[("path", "/a")]))
        .await
        .unwrap();
    echo(&mut c, Frame::text("still there")).await;
    assert_eq!(servers.servers().len(), 1);
    // port 0 never shares: a second port-0 listener gets its own server
    let l3 = listen(&ws, TransportKind::Ws, addr(V4), opts(&[]))
        .await
        .unwrap();
    assert_ne!(l3.local_addr(), a);
    assert_eq!(servers.servers().len(), 2);
    drop(l3);
    assert_eq!(servers.servers().len(), 1);
}

#[tokio::test]
async fn plain_and_tls_cannot_share_a_port_and_settings_must_agree() {
    let dir = std::env::temp_dir().join(format!("nkp-ws-mix-{}", std::process::id()));
    let (cert, key) = nkp_tls::write_self_signed(&dir, &[]).unwrap();
    let tls = [
        ("tls_certfile", cert.to_str().unwrap()),
        ("tls_keyfile", key.to_str().unwrap()),
    ];
    let servers = HttpServers::new();
    let ws = WsTransport::new(servers.clone());
    let http = nkp_http::HttpTransport::new(servers.clone());
    let l = listen(&ws, TransportKind::Ws, addr(V4), opts(&[]))
        .await
        .unwrap();
    let a = l.local_addr();
    match listen(&ws, TransportKind::Wss, a, opts(&tls)).await {
        Err(e @ Error::SharedFailed(_)) => assert!(e.to_string().contains("plain and TLS"), "{e}"),
        other => panic!("{:?}", other.map(|l| l.local_addr())),
    }
    // http on the same plain port shares it
    let h = http
        .listen(nkp_core::ListenRequest {
            transport: TransportKind::Http,
            addr: a,
            options: std::sync::Arc::new(opts(&[("path", "/web")])),
        })
        .await
        .unwrap();
    assert_eq!(h.local_addr(), a);
    // a later listener asking for other limits is refused
    match listen(
        &ws,
        TransportKind::Ws,
        a,
        opts(&[("http_max_head_size", "1024")]),
    )
    .await
    {
        Err(e @ Error::SharedFailed(_)) => {
            assert!(e.to_string().contains("http_max_head_size"), "{e}")
        }
        other => panic!("{:?}", other.map(|l| l.local_addr())),
    }
    // the reverse: TLS first, then plain
    let s = listen(&ws, TransportKind::Wss, addr(V4), opts(&tls))
        .await
        .unwrap();
    assert!(matches!(
        listen(&ws, TransportKind::Ws, s.local_addr(), opts(&[])).await,
        Err(Error::SharedFailed(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn wss_echo(bind: &str) {
    let dir =
        std::env::temp_dir().join(format!("nkp-ws-wss-{}-{}", std::process::id(), bind.len()));
    let (cert, key) = nkp_tls::write_self_signed(&dir, &[]).unwrap();
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(
        &ws,
        TransportKind::Wss,
        addr(bind),
        opts(&[
            ("tls_certfile", cert.to_str().unwrap()),
            ("tls_keyfile", key.to_str().unwrap()),
        ]),
    )
    .await
    .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    let mut c = connect(&ws, TransportKind::Wss, a, opts(&[("tls_verify", "false")]))
        .await
        .unwrap();
    echo(&mut c, Frame::text("secure")).await;
    echo(&mut c, Frame::binary(vec![9u8; 10_000])).await;
    match recv(&mut events).await {
        Event::Accepted(i) => assert_eq!(i.transport, TransportKind::Wss),
        other => panic!("{other:?}"),
    }
    // verified against the CA file, by name
    let mut c = connect(
        &ws,
        TransportKind::Wss,
        a,
        opts(&[
            ("tls_cacertfile", cert.to_str().unwrap()),
            ("host", "localhost"),
        ]),
    )
    .await
    .unwrap();
    echo(&mut c, Frame::text("verified")).await;
    // verification on without the CA: refused
    match connect(&ws, TransportKind::Wss, a, opts(&[("host", "localhost")])).await {
        Err(Error::Tls(m)) => assert!(m.contains("certificate"), "{m}"),
        other => panic!("{:?}", other.map(|l| l.info().clone())),
    }
    // a plain ws client on the TLS port does not get a WebSocket
    assert!(
        connect(
            &ws,
            TransportKind::Ws,
            a,
            opts(&[("connect_timeout", "2000")])
        )
        .await
        .is_err()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn wss_echo_ipv4() {
    wss_echo(V4).await;
}

#[tokio::test]
async fn wss_echo_ipv6() {
    wss_echo(V6).await;
}

#[tokio::test]
async fn client_errors_are_typed() {
    let ws = WsTransport::new(HttpServers::new());
    // nothing listening
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = connect(&ws, TransportKind::Ws, free, opts(&[]))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), "econnrefused");
    // a server that never answers the handshake → timeout within connect_timeout
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sa = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (s, _) = silent.accept().await.unwrap();
        tokio::time::sleep(common::WAIT).await;
        drop(s);
    });
    let e = connect(
        &ws,
        TransportKind::Ws,
        sa,
        opts(&[("connect_timeout", "300")]),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    hold.abort();
    // a server answering with a wrong accept key, split across writes, with a frame right after
    for (resp, expect) in [
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bogus\r\n\r\n",
            "Sec-WebSocket-Accept",
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: other\r\n\r\n",
            "not offered",
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n{EARLY}",
            "",
        ),
    ] {
        let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fa = fake.local_addr().unwrap();
        let resp = resp.to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = fake.accept().await.unwrap();
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut c = [0u8; 1024];
                let n = s.read(&mut c).await.unwrap();
                buf.extend_from_slice(&c[..n]);
            }
            let text = String::from_utf8(buf).unwrap();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_string();
            let early = resp.contains("{EARLY}");
            let resp = resp
                .replace("{ACCEPT}", &nkp_ws::accept_key(&key))
                .replace("{EARLY}", "");
            let mut bytes = resp.clone().into_bytes();
            if early {
                bytes.extend_from_slice(b"\x81\x05early");
            }
            // the head split across two writes, in the middle of the blank line
            let cut = resp.find("\r\n\r\n").unwrap() + 2;
            s.write_all(&bytes[..cut]).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            s.write_all(&bytes[cut..]).await.unwrap();
            tokio::time::sleep(common::WAIT).await;
        });
        let r = connect(&ws, TransportKind::Ws, fa, opts(&[("ws_proto", "mine")])).await;
        if expect.is_empty() {
            // bytes after the head are the first frame
            let mut link = r.unwrap();
            assert_eq!(
                next(&mut link).await.unwrap().unwrap(),
                Frame::text("early")
            );
            assert_eq!(link.info().meta.ws_proto, None);
        } else {
            match r {
                Err(Error::Protocol(m)) => assert!(m.contains(expect), "{m}"),
                other => panic!("{:?}", other.map(|l| l.info().clone())),
            }
        }
    }
}
