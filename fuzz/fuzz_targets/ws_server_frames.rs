//! WebSocket server side: a valid upgrade request, then arbitrary bytes as the client's
//! frames, against nkp-ws's server on the shared nkp-http server, whose sessions echo every
//! data frame.
//!
//! * nothing panics (libFuzzer's panic hook aborts on a panic in any task);
//! * the upgrade is answered `101`;
//! * once the client has closed its write half, the server closes within
//!   [`loopback::DEADLINE`] (a hang is a failure);
//! * what the server sends after the 101 is well-formed server frames (unmasked, no
//!   reserved bits, known opcodes, short final control frames, nothing after a close).
//!
//! Input: byte 0 is flags (bit 0: the listener with `max_message_size=64`, so that the
//! 1009 path is reached; bit 1: offer and require the sub-protocol `sip`), then the bytes
//! sent after the upgrade request (in the same write, so they may arrive with the head).
//!
//! Runs over a loopback TCP connection per input: see `common/loopback.rs` for why.

#![no_main]

#[path = "common/loopback.rs"]
mod loopback;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;

use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use nkp_core::{Accepted, BoxListener, ListenRequest, Options, Transport, TransportKind};
use nkp_http::HttpServers;
use nkp_ws::WsTransport;

/// The shared server's address (its listeners live for the whole process).
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| loopback::runtime().block_on(start()))
}

async fn start() -> SocketAddr {
    let ws = WsTransport::new(HttpServers::new());
    let listen = |addr: SocketAddr, opts: &[(&str, &str)]| {
        let mut o = Options::default();
        for (k, v) in opts {
            o.set(k, v).expect("listener option");
        }
        ws.listen(ListenRequest {
            transport: TransportKind::Ws,
            addr,
            options: Arc::new(o),
        })
    };
    let any = listen("127.0.0.1:0".parse().expect("address"), &[("path", "/")])
        .await
        .expect("ws listener");
    let addr = any.local_addr();
    let small = listen(addr, &[("path", "/small"), ("max_message_size", "64")])
        .await
        .expect("ws listener /small");
    let sip = listen(addr, &[("path", "/sip"), ("ws_proto", "sip")])
        .await
        .expect("ws listener /sip");
    for l in [any, small, sip] {
        tokio::spawn(echo_sessions(l));
    }
    addr
}

/// Completes every upgrade and echoes data frames until the session ends.
async fn echo_sessions(mut listener: BoxListener) {
    while let Some(accepted) = listener.next().await {
        let Ok(Accepted::Pending(upgrade)) = accepted else {
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut link) = upgrade.await else {
                return;
            };
            while let Some(Ok(frame)) = link.next().await {
                if frame.is_data() && link.send(frame).await.is_err() {
                    break;
                }
            }
        });
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, frames)) = input.split_first() else {
        return;
    };
    let addr = server();
    let (path, proto) = match (flags & 1 != 0, flags & 2 != 0) {
        (true, _) => ("/small", ""),
        (false, true) => ("/sip", "Sec-WebSocket-Protocol: sip\r\n"),
        (false, false) => ("/", ""),
    };
    let mut data = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{proto}\r\n"
    )
    .into_bytes();
    data.extend_from_slice(frames);
    loopback::runtime().block_on(async {
        let mut s = loopback::connect(addr).await;
        loopback::write_and_shutdown(&mut s, &data).await;
        let out = loopback::read_to_end(&mut s, "websocket session").await;
        loopback::reset(s);
        let head_end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&out)));
        assert!(
            out.starts_with(b"HTTP/1.1 101 "),
            "upgrade not accepted: {:?}",
            String::from_utf8_lossy(&out[..head_end])
        );
        loopback::check_server_frames(&out[head_end + 4..]);
    });
});
