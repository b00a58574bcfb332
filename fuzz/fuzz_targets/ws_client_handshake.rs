//! WebSocket client side: nkp-ws's client handshake (`WsTransport::connect_link`) against a
//! fake server answering arbitrary bytes, then the client link reading whatever follows the
//! response head as server frames.
//!
//! * nothing panics;
//! * once the fake server has closed its write half, the handshake ends (with a link or an
//!   error) and a link's stream ends within [`loopback::DEADLINE`] (a hang is a failure);
//! * a link is only returned for a `101` response to the request that was sent;
//! * the request is a well-formed upgrade: a complete head with a 16-byte base64
//!   `Sec-WebSocket-Key`.
//!
//! Input: byte 0 is flags (bit 0: the client offers the sub-protocol `sip`; bit 1: it sends
//! a text frame once connected), then the response. Every `{ACCEPT}` in the response is
//! replaced by the right `Sec-WebSocket-Accept` for the request's random key (as in nkp-ws's
//! tests), so that the fuzzer reaches past the key check.
//!
//! Runs over a loopback TCP connection per input: see `common/loopback.rs` for why.

#![no_main]

#[path = "common/loopback.rs"]
mod loopback;

use std::sync::OnceLock;

use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use nkp_core::{Frame, Options, TransportKind};
use nkp_http::HttpServers;
use nkp_ws::WsTransport;
use tokio::net::TcpListener;

const PLACEHOLDER: &[u8] = b"{ACCEPT}";

/// Whether the status line of a response giving a link must be exactly `HTTP/1.x 101`
/// (RFC 9112 §4: `HTTP-version SP 3DIGIT`). This target found nkp-ws's `parse_head` taking
/// `0101`, `+101` and `HTTP/1.1<NUL...> 101` as 101; fixed, so the check is strict.
const STRICT_STATUS: bool = true;

struct Fixture {
    listener: TcpListener,
    ws: WsTransport,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        loopback::runtime().block_on(async {
            Fixture {
                listener: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
                ws: WsTransport::new(HttpServers::new()),
            }
        })
    })
}

/// The `Sec-WebSocket-Key` of a request head.
fn request_key(head: &[u8]) -> String {
    let text = std::str::from_utf8(head).expect("request head is not UTF-8");
    assert!(
        text.starts_with("GET / HTTP/1.1\r\n"),
        "bad request line: {text:?}"
    );
    let key = text
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap_or_else(|| panic!("no Sec-WebSocket-Key in {text:?}"));
    assert_eq!(key.len(), 24, "key {key:?} is not 16 bytes in base64");
    key.to_string()
}

fn replace(haystack: &[u8], needle: &[u8], by: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(by);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, response)) = input.split_first() else {
        return;
    };
    let f = fixture();
    let addr = f.listener.local_addr().expect("local address");
    let mut opts = Options::default();
    if flags & 1 != 0 {
        opts.set("ws_proto", "sip").expect("ws_proto");
    }
    opts.set("connect_timeout", "20000")
        .expect("connect_timeout");

    loopback::runtime().block_on(async {
        let fake_server = async {
            let (mut s, _) = f.listener.accept().await.expect("accept");
            let (head, _) = loopback::read_head(&mut s, "client request")
                .await
                .expect("the client sent no complete request head");
            let accept = nkp_ws::accept_key(&request_key(&head));
            let answer = replace(response, PLACEHOLDER, accept.as_bytes());
            loopback::write_and_shutdown(&mut s, &answer).await;
            s
        };
        let client = async {
            let link = f.ws.connect_link(TransportKind::Ws, addr, &opts).await;
            let Ok(mut link) = link else {
                return false;
            };
            if flags & 2 != 0 {
                // the fake server may be gone already: only the outcome's absence of panic counts
                let _ = link.send(Frame::text("hello")).await;
            }
            while let Some(Ok(_)) = link.next().await {}
            true
        };
        let bounded = tokio::time::timeout(loopback::DEADLINE, async {
            tokio::join!(fake_server, client)
        });
        let (s, linked) = bounded
            .await
            .expect("the client did not finish after the server closed");
        loopback::reset(s);
        if linked {
            let line_end = response
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(response.len());
            let line = &response[..line_end];
            let mut parts = line.splitn(3, |&b| b == b' ');
            let version = parts.next().unwrap_or_default();
            let status = parts.next().unwrap_or_default();
            let is_101 = if STRICT_STATUS {
                (version == b"HTTP/1.1" || version == b"HTTP/1.0") && status == b"101"
            } else {
                std::str::from_utf8(status)
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                    == Some(101)
            };
            assert!(
                response.starts_with(b"HTTP/1.") && is_101,
                "a link from a response that is not 101: {:?}",
                String::from_utf8_lossy(&response[..response.len().min(100)])
            );
        }
    });
});
