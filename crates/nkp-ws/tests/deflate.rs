//! permessage-deflate (RFC 7692) over loopback: negotiation on both sides, fallbacks,
//! compressed frames on the wire, the decompression cap, idle footprint, backpressure.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use nkp_core::{Error, Frame, TransportKind};
use nkp_http::HttpServers;
use nkp_ws::{WsLink, WsTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn link(ws: &WsTransport, to: SocketAddr, pairs: &[(&str, &str)]) -> WsLink {
    ws.connect_link(TransportKind::Ws, to, &opts(pairs))
        .await
        .unwrap()
}

async fn echo_link(link: &mut WsLink, f: Frame) {
    use futures_util::StreamExt;
    link.send(f.clone()).await.unwrap();
    let got = tokio::time::timeout(WAIT, link.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, f);
}

fn compressible(n: usize) -> String {
    (0..)
        .map(|i| format!("message line {} with repeated words; ", i % 50))
        .flat_map(|s| s.into_bytes())
        .take(n)
        .map(char::from)
        .collect()
}

#[tokio::test]
async fn both_sides_on_compress_and_echo() {
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(
        &ws,
        TransportKind::Ws,
        addr(),
        opts(&[("ws_deflate", "true")]),
    )
    .await
    .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    let mut c = link(&ws, a, &[("ws_deflate", "true")]).await;
    let p = c.deflate().expect("negotiated");
    assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (15, 15)
    );
    // several in a row: the contexts carry over between messages
    for i in 0..5 {
        echo_link(&mut c, Frame::text(format!("small {i}"))).await;
        echo_link(&mut c, Frame::text(compressible(100 * 1024))).await;
        echo_link(&mut c, Frame::binary(compressible(100 * 1024).into_bytes())).await;
        echo_link(&mut c, Frame::binary(vec![i as u8; 10])).await;
        echo_link(&mut c, Frame::binary(Bytes::new())).await;
    }
    // control frames are never compressed and still work
    c.send(Frame::Ping(Bytes::from_static(b"p"))).await.unwrap();
    use futures_util::StreamExt;
    assert_eq!(
        tokio::time::timeout(WAIT, c.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Frame::Pong(Bytes::from_static(b"p"))
    );
    // an idle link holds no buffers once it has been polled with nothing to read (as the
    // engine does); cancelling the poll loses nothing
    assert!(
        tokio::time::timeout(Duration::from_millis(50), c.next())
            .await
            .is_err()
    );
    assert_eq!(c.buffered_capacity(), 0);
    echo_link(&mut c, Frame::text(compressible(1000))).await;
    assert!(matches!(recv(&mut events).await, Event::Accepted(_)));
    c.close().await.unwrap();
}

#[tokio::test]
async fn one_side_only_falls_back_to_no_compression() {
    let ws = WsTransport::new(HttpServers::new());
    for (server, client) in [("true", "false"), ("false", "true"), ("false", "false")] {
        let l = listen(
            &ws,
            TransportKind::Ws,
            addr(),
            opts(&[("ws_deflate", server)]),
        )
        .await
        .unwrap();
        let a = l.local_addr();
        let _events = serve_echo(l);
        let mut c = link(&ws, a, &[("ws_deflate", client)]).await;
        assert_eq!(c.deflate(), None, "server {server} client {client}");
        echo_link(&mut c, Frame::text(compressible(50_000))).await;
        echo_link(&mut c, Frame::binary(vec![1u8; 1000])).await;
    }
}

/// A raw client: offers, and reads what the server sends on the wire.
#[tokio::test]
async fn the_server_answers_offers_and_compresses_on_the_wire() {
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(
        &ws,
        TransportKind::Ws,
        addr(),
        opts(&[("ws_deflate", "true"), ("max_message_size", "100000")]),
    )
    .await
    .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    // declined offers (an 8-bit server window, an unknown parameter) then an accepted one
    let (mut raw, head) = Raw::handshake(
        a,
        &Raw::request(
            "/",
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, permessage-deflate; foo\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; client_no_context_takeover\r\n",
        ),
    )
    .await;
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains(
            "sec-websocket-extensions: permessage-deflate; client_no_context_takeover; server_max_window_bits=10"
        ),
        "{head}"
    );
    // RFC 7692 §7.2.3.1: "Hello" compressed, RSV1 set
    raw.write_frame_rsv(true, 0x40, 0x1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        .await;
    // the reply is short: sent uncompressed
    let (fin, op, payload) = raw.read_frame().await.unwrap();
    assert_eq!((fin, op, payload.as_slice()), (true, 0x1, &b"Hello"[..]));
    assert_eq!(raw.last_rsv, 0);
    // a large compressible message: compressed both ways (the client promised
    // client_no_context_takeover: a fresh compressor per message)
    let big = compressible(60_000);
    let c = Deflate::new(10).compress(big.as_bytes());
    raw.write_frame_rsv(true, 0x40, 0x1, &c).await;
    let (_, op, payload) = raw.read_frame().await.unwrap();
    assert_eq!((op, raw.last_rsv), (0x1, 0x40), "RSV1 set on the reply");
    assert!(payload.len() < 10_000, "{}", payload.len());
    let mut inf = Inflate::new();
    assert_eq!(inf.inflate(&payload), big.as_bytes());
    // the second reply refers to the first (server context takeover): it inflates only
    // with the first one's context
    raw.write_frame_rsv(true, 0x40, 0x1, &Deflate::new(10).compress(big.as_bytes()))
        .await;
    let (_, op, payload2) = raw.read_frame().await.unwrap();
    assert_eq!((op, raw.last_rsv), (0x1, 0x40));
    assert!(
        payload2.len() < payload.len(),
        "{} {}",
        payload2.len(),
        payload.len()
    );
    assert_eq!(inf.inflate(&payload2), big.as_bytes());
    assert!(
        Inflate::new()
            .try_inflate(&payload2)
            .is_none_or(|o| o != big.as_bytes())
    );
    // breaking the promise (a second message referring to the first) fails the
    // connection: the server forgets the client's context
    let mut d = Deflate::new(10);
    d.compress(big.as_bytes());
    raw.write_frame_rsv(true, 0x40, 0x1, &d.compress(big.as_bytes()))
        .await;
    let (_, op, payload) = raw.read_frame().await.unwrap();
    assert_eq!(op, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    assert!(matches!(recv(&mut events).await, Event::Accepted(_)));
    let (mut raw, _) = Raw::handshake(
        a,
        &Raw::request("/", "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
    )
    .await;

    // a decompression bomb: 10 MB of zeros in a few KB, over the 100 000 byte limit
    let bomb = Deflate::new(15).compress(&vec![0u8; 10_000_000]);
    assert!(bomb.len() < 20_000);
    raw.write_frame_rsv(true, 0x40, 0x2, &bomb).await;
    loop {
        let (_, op, payload) = raw.read_frame().await.unwrap();
        if op == 0x8 {
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
            break;
        }
    }
    // the first connection's 1002 and the bomb's 1009 (in either order)
    let mut errors = Vec::new();
    while errors.len() < 2 {
        if let Event::Error(e) = recv(&mut events).await {
            errors.push(e);
        }
    }
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::Protocol(m) if m.contains("compressed"))),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::MessageTooLarge { max: 100_000, .. })),
        "{errors:?}"
    );

    // RSV1 on a listener without deflate (or without an offer) → 1002
    let (mut raw, head) = Raw::handshake(a, &Raw::request("/", "")).await;
    assert!(!head.to_ascii_lowercase().contains("extensions"), "{head}");
    raw.write_frame_rsv(true, 0x40, 0x1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        .await;
    let (_, op, payload) = raw.read_frame().await.unwrap();
    assert_eq!(op, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
}

/// A fake server answering with `answer` as Sec-WebSocket-Extensions; returns the
/// client's request head.
async fn fake_server(answer: &'static str) -> (SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fa = fake.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
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
        let ext = if answer.is_empty() {
            String::new()
        } else {
            format!("Sec-WebSocket-Extensions: {answer}\r\n")
        };
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{ext}\r\n",
            nkp_ws::accept_key(&key)
        );
        s.write_all(resp.as_bytes()).await.unwrap();
        let _ = tx.send(text);
        tokio::time::sleep(WAIT).await;
    });
    (fa, rx)
}

#[tokio::test]
async fn the_client_offers_and_checks_the_answer() {
    let ws = WsTransport::new(HttpServers::new());
    // the offer is in the request; an accepted answer with parameters is honoured
    let (fa, head) =
        fake_server("permessage-deflate; server_no_context_takeover; client_max_window_bits=9")
            .await;
    let c = link(&ws, fa, &[("ws_deflate", "true")]).await;
    let p = c.deflate().unwrap();
    assert!(p.server_no_context_takeover);
    assert_eq!(p.client_max_window_bits, 9);
    let head = head.await.unwrap();
    assert!(
        head.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        ),
        "{head}"
    );
    // without ws_deflate: no offer
    let (fa, head) = fake_server("").await;
    let c = link(&ws, fa, &[]).await;
    assert_eq!(c.deflate(), None);
    assert!(!head.await.unwrap().contains("Extensions"));
    // answers that fail the handshake, with the reason
    for (answer, client, why) in [
        ("permessage-deflate", "false", "not offered"),
        ("x-webkit-deflate-frame", "true", "not offered"),
        (
            "permessage-deflate; client_max_window_bits=8",
            "true",
            "client_max_window_bits=8",
        ),
        (
            "permessage-deflate; server_max_window_bits=99",
            "true",
            "server_max_window_bits",
        ),
        ("permessage-deflate; bogus", "true", "unknown parameter"),
        (
            "permessage-deflate, permessage-deflate",
            "true",
            "2 extensions",
        ),
    ] {
        let (fa, _) = fake_server(answer).await;
        match ws
            .connect_link(TransportKind::Ws, fa, &opts(&[("ws_deflate", client)]))
            .await
        {
            Err(Error::Protocol(m)) => assert!(m.contains(why), "{answer}: {m}"),
            other => panic!("{answer}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn no_context_takeover_and_window_bits_between_our_sides() {
    // the server side parameters come from the client's offer; our client only offers
    // the default, so drive the server with a raw offer and check both directions
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(
        &ws,
        TransportKind::Ws,
        addr(),
        opts(&[("ws_deflate", "true")]),
    )
    .await
    .unwrap();
    let a = l.local_addr();
    let _events = serve_echo(l);
    let (mut raw, head) = Raw::handshake(
        a,
        &Raw::request(
            "/",
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9\r\n",
        ),
    )
    .await;
    assert!(head.contains("server_no_context_takeover"), "{head}");
    let big = compressible(30_000);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        // no context on our side either: a fresh compressor every message
        let c = Deflate::new(9).compress(big.as_bytes());
        raw.write_frame_rsv(true, 0x40, 0x1, &c).await;
        let (_, _, payload) = raw.read_frame().await.unwrap();
        assert_eq!(raw.last_rsv, 0x40);
        // each reply inflates alone
        assert_eq!(Inflate::new().inflate(&payload), big.as_bytes());
        sizes.push(payload.len());
    }
    assert!(sizes.iter().all(|s| *s == sizes[0]), "{sizes:?}");
}

#[tokio::test]
async fn a_writer_facing_a_peer_that_does_not_read_is_held_back() {
    // a server that completes the handshake and never reads
    let (fa, _) = fake_server("").await;
    let ws = WsTransport::new(HttpServers::new());
    let mut c = link(&ws, fa, &[]).await;
    let chunk = Frame::binary(vec![1u8; 1 << 20]);
    let mut blocked = false;
    for _ in 0..256 {
        match tokio::time::timeout(Duration::from_millis(300), c.feed(chunk.clone())).await {
            Ok(r) => r.unwrap(),
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "poll_ready never said pending");
    assert!(
        c.buffered_capacity() < 4 << 20,
        "{} bytes buffered",
        c.buffered_capacity()
    );
}

// ---- a reference deflate for the raw peer (flate2, independent of the crate's code) ----

struct Deflate(flate2::Compress);

impl Deflate {
    fn new(bits: u8) -> Self {
        Deflate(flate2::Compress::new_with_window_bits(
            flate2::Compression::default(),
            false,
            bits,
        ))
    }

    fn compress(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 1024);
        self.0
            .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }
}

struct Inflate(flate2::Decompress);

impl Inflate {
    fn new() -> Self {
        Inflate(flate2::Decompress::new(false))
    }

    fn inflate(&mut self, input: &[u8]) -> Vec<u8> {
        self.try_inflate(input).expect("valid deflate data")
    }

    fn try_inflate(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let mut data = input.to_vec();
        data.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 20);
        self.0
            .decompress_vec(&data, &mut out, flate2::FlushDecompress::Sync)
            .ok()?;
        Some(out)
    }
}
