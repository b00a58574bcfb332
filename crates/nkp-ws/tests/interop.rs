//! Interoperability with Python `websockets` (client against our server, our client against
//! its server). Skipped with a message when it is not installed, unless NKP_REQUIRE_PEERS.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use nkp_core::{Frame, TransportKind};
use nkp_http::HttpServers;
use nkp_ws::WsTransport;
use tokio::io::{AsyncBufReadExt, BufReader};

const CLIENT: &str = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], subprotocols=["other", "sip"]) as ws:
        assert ws.subprotocol == "sip", ws.subprotocol
        await ws.send("hello text")
        r = await ws.recv()
        assert r == "hello text" and isinstance(r, str), repr(r)
        await ws.send(b"\x00\x01bin")
        r = await ws.recv()
        assert r == b"\x00\x01bin" and isinstance(r, bytes), repr(r)
        await ws.send(["frag", "mented"])
        r = await ws.recv()
        assert r == "fragmented", repr(r)
        big = bytes(range(256)) * 40
        await ws.send(big)
        assert await ws.recv() == big
        await asyncio.wait_for(await ws.ping(b"pp"), 5)
    print("OK", ws.close_code)
asyncio.run(asyncio.wait_for(main(), 10))
"#;

const SERVER: &str = r#"
import asyncio, sys, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, subprotocols=["sip"]) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(20)
asyncio.run(main())
"#;

/// Starts a python server script that prints its port on its first line; the child is
/// killed when dropped.
async fn python_server(python: &str, script: &str) -> (tokio::process::Child, u16) {
    let mut child = tokio::process::Command::new(python)
        .args(["-c", script])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("python server did not start in time")
        .unwrap()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (child, port)
}

#[tokio::test]
async fn python_client_against_our_server() {
    let Some(python) = require_python("python_client_against_our_server") else {
        return;
    };
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(
        &ws,
        TransportKind::Ws,
        "127.0.0.1:0".parse().unwrap(),
        opts(&[("path", "/p"), ("ws_proto", "sip")]),
    )
    .await
    .unwrap();
    let a = l.local_addr();
    let mut events = serve_echo(l);
    let out = tokio::time::timeout(
        WAIT * 2,
        tokio::process::Command::new(&python)
            .args(["-c", CLIENT, &format!("ws://{a}/p/sub")])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("OK 1000"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = accepted(&mut events).await;
    assert_eq!(info.meta.ws_proto.as_deref(), Some("sip"));
    assert_eq!(info.meta.path.as_deref(), Some("/p/sub"));
}

#[tokio::test]
async fn our_client_against_a_python_server() {
    let Some(python) = require_python("our_client_against_a_python_server") else {
        return;
    };
    let (mut child, port) = python_server(&python, SERVER).await;
    let ws = WsTransport::new(HttpServers::new());
    let remote = ([127, 0, 0, 1], port).into();
    let mut c = connect(
        &ws,
        TransportKind::Ws,
        remote,
        opts(&[("ws_proto", "sip"), ("path", "/x")]),
    )
    .await
    .unwrap();
    assert_eq!(c.info().meta.ws_proto.as_deref(), Some("sip"));
    echo(&mut c, Frame::text("hello python")).await;
    echo(&mut c, Frame::binary(&b"\xffbinary"[..])).await;
    echo(&mut c, Frame::binary(vec![3u8; 100_000])).await;
    c.send(Frame::Ping(Bytes::from_static(b"pp")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut c).await.unwrap().unwrap(),
        Frame::Pong(Bytes::from_static(b"pp"))
    );
    c.send(Frame::close(1000, "done")).await.unwrap();
    match next(&mut c).await {
        Some(Ok(Frame::Close(Some(r)))) => assert_eq!(r.code, 1000),
        other => panic!("{other:?}"),
    }
    assert!(next(&mut c).await.is_none());
    // a sub-protocol the server does not speak: it answers without one, which we accept
    let c2 = connect(
        &ws,
        TransportKind::Ws,
        remote,
        opts(&[("ws_proto", "nope")]),
    )
    .await;
    match c2 {
        Ok(l) => assert_eq!(l.info().meta.ws_proto, None),
        Err(e) => assert!(e.to_string().contains("HTTP 4"), "{e}"),
    }
    child.kill().await.unwrap();
}

// ---- permessage-deflate ----

/// Python client: for each configuration (JSON: null = websockets' default
/// `compression="deflate"`, else the ClientPerMessageDeflateFactory arguments), a
/// connection that checks the negotiated header and echoes text and binary, small and
/// 100 KiB compressible, several in a row.
const DEFLATE_CLIENT: &str = r#"
import asyncio, json, sys, websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
async def one(url, conf):
    if conf is None:
        kw = {}
    else:
        kw = {"compression": None, "extensions": [ClientPerMessageDeflateFactory(**conf)]}
    async with websockets.connect(url, max_size=2**24, **kw) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ext.startswith("permessage-deflate"), repr(ext)
        big_text = "".join("line %d of a compressible message; " % (i % 97) for i in range(3000))[:100 * 1024]
        big_bin = bytes(range(256)) * 400
        for i in range(4):
            for m in ["hi %d" % i, big_text, b"\x00\x01" * i, big_bin, "é" * 500, ""]:
                await ws.send(m)
                r = await ws.recv()
                assert r == m and type(r) == type(m), (i, repr(r)[:80])
        await ws.send(["frag", "mented " * 20])
        assert await ws.recv() == "frag" + "mented " * 20
        await asyncio.wait_for(await ws.ping(b"pp"), 5)
        return ext
async def main():
    url, confs = sys.argv[1], json.loads(sys.argv[2])
    for conf in confs:
        print("EXT", await one(url, conf), flush=True)
    print("OK")
asyncio.run(asyncio.wait_for(main(), 30))
"#;

/// Python server with its default compression (it answers with
/// `server_max_window_bits=12; client_max_window_bits=12`).
const DEFLATE_SERVER: &str = r#"
import asyncio, sys, websockets
async def echo(ws):
    ext = ws.request.headers.get("Sec-WebSocket-Extensions", "")
    assert "permessage-deflate" in ext, ext
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=2**24) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(30)
asyncio.run(main())
"#;

#[tokio::test]
async fn python_deflate_clients_against_our_server() {
    let Some(python) = require_python("python_deflate_clients_against_our_server") else {
        return;
    };
    let ws = WsTransport::new(HttpServers::new());
    let l = listen(
        &ws,
        TransportKind::Ws,
        "127.0.0.1:0".parse().unwrap(),
        opts(&[("ws_deflate", "true")]),
    )
    .await
    .unwrap();
    let a = l.local_addr();
    let _events = serve_echo(l);
    let confs = r#"[
        null,
        {"client_max_window_bits": 11, "server_max_window_bits": 10},
        {"server_no_context_takeover": true, "client_no_context_takeover": true},
        {"server_no_context_takeover": true, "client_no_context_takeover": true,
         "server_max_window_bits": 9, "client_max_window_bits": 9},
        {"client_max_window_bits": null, "server_max_window_bits": 15}
    ]"#;
    let out = tokio::time::timeout(
        WAIT * 4,
        tokio::process::Command::new(&python)
            .args(["-c", DEFLATE_CLIENT, &format!("ws://{a}/"), confs])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exts: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("EXT "))
        .collect();
    assert_eq!(
        exts,
        vec![
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=15",
        ],
        "{stdout}"
    );
}

#[tokio::test]
async fn our_deflate_client_against_a_python_server() {
    let Some(python) = require_python("our_deflate_client_against_a_python_server") else {
        return;
    };
    let (mut child, port) = python_server(&python, DEFLATE_SERVER).await;
    let ws = WsTransport::new(HttpServers::new());
    let remote = ([127, 0, 0, 1], port).into();
    let mut c = ws
        .connect_link(TransportKind::Ws, remote, &opts(&[("ws_deflate", "true")]))
        .await
        .unwrap();
    let p = c.deflate().expect("python's server accepts the offer");
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (12, 12)
    );
    let big_text: String = (0..3000)
        .map(|i| format!("line {} of a compressible message; ", i % 97))
        .collect::<String>()[..100 * 1024]
        .to_string();
    let big_bin: Vec<u8> = (0..=255u8).cycle().take(102_400).collect();
    for i in 0..4u8 {
        for f in [
            Frame::text(format!("hello python {i}")),
            Frame::text(big_text.clone()),
            Frame::binary(vec![i; 3]),
            Frame::binary(big_bin.clone()),
            Frame::text("é".repeat(500)),
        ] {
            c.send(f.clone()).await.unwrap();
            let got = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut c))
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(got, f);
        }
    }
    c.send(Frame::close(1000, "done")).await.unwrap();
    match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut c))
        .await
        .unwrap()
    {
        Some(Ok(Frame::Close(Some(r)))) => assert_eq!(r.code, 1000),
        other => panic!("{other:?}"),
    }
    child.kill().await.unwrap();
}
