//! The shared HTTP server (nkp-http on hyper): arbitrary bytes as what a client sends, on a
//! server with an http listener on `/` (echoing request bodies) and a ws listener on `/ws`
//! (echoing data frames), the routing, limits and upgrade checks in between.
//!
//! * nothing panics (libFuzzer's panic hook aborts on a panic in any task);
//! * once the client has closed its write half, the server closes within
//!   [`loopback::DEADLINE`] (a hang is a failure);
//! * whatever the server answers is HTTP/1.x responses (1.0 to a 1.0 request): the output is
//!   empty or starts with `HTTP/1.1 ` or `HTTP/1.0 ` and a three-digit status, and every response head carries
//!   `server: NkPACKET` unless hyper wrote it itself for an unparsable request (400, 431,
//!   505, ...).
//!
//! Input: the bytes sent, in one write.
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
use nkp_core::{Accepted, BoxLink, BoxListener, ListenRequest, Options, Transport, TransportKind};
use nkp_http::{HttpServers, HttpTransport};
use nkp_ws::WsTransport;

/// The shared server's address (its listeners live for the whole process).
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| loopback::runtime().block_on(start()))
}

fn request(transport: TransportKind, addr: SocketAddr, path: &str) -> ListenRequest {
    let mut o = Options::default();
    o.set("path", path).expect("path option");
    // short limits, reachable by small inputs
    o.set("http_max_head_size", "2048")
        .expect("head size option");
    o.set("max_message_size", "256")
        .expect("message size option");
    ListenRequest {
        transport,
        addr,
        options: Arc::new(o),
    }
}

async fn start() -> SocketAddr {
    let servers = HttpServers::new();
    let http = HttpTransport::new(servers.clone());
    let ws = WsTransport::new(servers);
    let any = "127.0.0.1:0".parse().expect("address");
    let h = http
        .listen(request(TransportKind::Http, any, "/"))
        .await
        .expect("http listener");
    let addr = h.local_addr();
    let w = ws
        .listen(request(TransportKind::Ws, addr, "/ws"))
        .await
        .expect("ws listener");
    tokio::spawn(serve(h));
    tokio::spawn(serve(w));
    addr
}

/// Echoes on every link the listener yields.
async fn serve(mut listener: BoxListener) {
    while let Some(accepted) = listener.next().await {
        match accepted {
            Ok(Accepted::Link(link)) => {
                tokio::spawn(echo(link));
            }
            Ok(Accepted::Pending(upgrade)) => {
                tokio::spawn(async move {
                    if let Ok(link) = upgrade.await {
                        echo(link).await;
                    }
                });
            }
            _ => {}
        }
    }
}

async fn echo(mut link: BoxLink) {
    while let Some(Ok(frame)) = link.next().await {
        if frame.is_data() && link.send(frame).await.is_err() {
            break;
        }
    }
}

/// Checks the response heads in `out` (bodies are skipped by searching the next status line
/// only where a head's `content-length` says the body ends; other framings stop the walk).
fn check_responses(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    let mut rest = out;
    loop {
        assert!(
            rest.len() >= 12
                && (rest.starts_with(b"HTTP/1.1 ") || rest.starts_with(b"HTTP/1.0 "))
                && rest[9..12].iter().all(u8::is_ascii_digit),
            "not an HTTP/1.x response: {:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(200)])
        );
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let status = &head[9..12];
        // hyper answers unparsable requests itself, without our header
        let ours = !matches!(
            status,
            "400" | "408" | "413" | "414" | "431" | "501" | "505"
        );
        if ours {
            assert!(
                head.contains("\r\nserver: nkpacket"),
                "response without `server: NkPACKET`: {head:?}"
            );
        }
        if status == "101" {
            loopback::check_server_frames(&rest[end + 4..]);
            return;
        }
        let Some(len) = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        else {
            return;
        };
        let next = end + 4 + len;
        if next >= rest.len() {
            return;
        }
        rest = &rest[next..];
    }
}

fuzz_target!(|input: &[u8]| {
    let addr = server();
    loopback::runtime().block_on(async {
        let mut s = loopback::connect(addr).await;
        loopback::write_and_shutdown(&mut s, input).await;
        let out = loopback::read_to_end(&mut s, "http connection").await;
        loopback::reset(s);
        check_responses(&out);
    });
});
