//! What the network targets (`ws_client_handshake`, `ws_server_frames`, `http_head`) share: a
//! current-thread tokio runtime kept for the whole process, and loopback sockets with bounded
//! reads.
//!
//! Neither nkp-ws nor nkp-http exposes an entry point taking an in-memory stream (the client
//! handshake and the shared server's per-connection function are private), so these targets
//! talk to the real code through a loopback TCP connection per input. Every input ends with
//! the fuzzer's side closing its write half; the code under test must then finish within
//! [`DEADLINE`], otherwise the target panics (a hang). Sockets are dropped with a zero linger
//! (a reset): thousands of connections a second would otherwise leave as many in TIME_WAIT.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

/// How long the code under test may take to finish with one input once the fuzzer's side has
/// closed (far above what a correct run takes, far below libFuzzer's `-timeout`).
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Largest output read back from the code under test.
pub const MAX_OUTPUT: usize = 1 << 20;

/// The process's runtime (current-thread: inputs run one after the other, the server's tasks
/// run while an input is driven).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A client socket connected to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("loopback connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Drops `s` with a reset instead of a FIN (no TIME_WAIT).
pub fn reset(s: TcpStream) {
    // a socket already reset by the peer refuses the option: nothing to do then
    let _ = s.set_zero_linger();
    drop(s);
}

/// Reads until the peer closes (or resets), keeping at most [`MAX_OUTPUT`] bytes; panics when
/// that takes longer than [`DEADLINE`].
pub async fn read_to_end(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(out.len());
                    out.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
    };
    if tokio::time::timeout(DEADLINE, read).await.is_err() {
        panic!(
            "{what}: still open {} s after the fuzzer's side closed",
            DEADLINE.as_secs()
        );
    }
    out
}

/// Reads an HTTP head: `(head up to and including the blank line, bytes read after it)`;
/// `None` if the peer closed or sent more than 64 KiB without one. Panics after [`DEADLINE`].
pub async fn read_head(s: &mut TcpStream, what: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(i + 4);
            }
            if buf.len() > 64 * 1024 {
                return None;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(DEADLINE, read).await {
        Ok(Some(end)) => {
            let rest = buf.split_off(end);
            Some((buf, rest))
        }
        Ok(None) => None,
        Err(_) => panic!("{what}: no complete head within {} s", DEADLINE.as_secs()),
    }
}

/// Writes `data` (a peer that stopped reading is fine) and closes the write half.
pub async fn write_and_shutdown(s: &mut TcpStream, data: &[u8]) {
    let _ = s.write_all(data).await;
    let _ = s.shutdown().await;
}

/// Walks frames sent by a WebSocket *server* (RFC 6455 §5.2): none masked, no reserved bits
/// (no extension was negotiated), known opcodes, control frames final and at most 125 bytes,
/// nothing after a close frame. A frame cut short at the end is accepted (the connection may
/// be reset while the server writes). Panics naming the first violation.
pub fn check_server_frames(mut b: &[u8]) {
    let mut closed = false;
    while b.len() >= 2 {
        assert!(!closed, "server frame after its close frame: {b:02x?}");
        let (b0, b1) = (b[0], b[1]);
        let opcode = b0 & 0x0f;
        assert_eq!(
            b0 & 0x70,
            0,
            "reserved bits set in a server frame: {b0:02x}"
        );
        assert!(
            matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10),
            "unknown opcode {opcode} in a server frame"
        );
        assert_eq!(b1 & 0x80, 0, "masked server frame");
        let (len, head) = match b1 & 0x7f {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(l), 10)
            }
            126 | 127 => return,
            n => (u64::from(n), 2),
        };
        if opcode >= 8 {
            assert!(b0 & 0x80 != 0, "fragmented control frame");
            assert!(len <= 125, "control frame of {len} bytes");
            if opcode == 8 {
                assert!(len != 1, "close frame with a 1-byte payload");
                closed = true;
            }
        }
        let end = head as u64 + len;
        if end > b.len() as u64 {
            return;
        }
        b = &b[end as usize..];
    }
}
