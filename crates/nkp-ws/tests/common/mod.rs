//! Helpers shared by the WebSocket integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::type_complexity)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nkp_core::{
    Accepted, BoxLink, BoxListener, ConnectRequest, Error, Frame, ListenRequest, Options,
    Transport, TransportKind,
};
use nkp_ws::WsTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Upper bound on any single wait in these tests (never reached when things work).
pub const WAIT: Duration = Duration::from_secs(10);

pub fn opts(pairs: &[(&str, &str)]) -> Options {
    let mut o = Options::default();
    for (k, v) in pairs {
        o.set(k, v).unwrap();
    }
    o
}

pub async fn listen(
    ws: &WsTransport,
    transport: TransportKind,
    addr: SocketAddr,
    o: Options,
) -> Result<BoxListener, Error> {
    ws.listen(ListenRequest {
        transport,
        addr,
        options: Arc::new(o),
    })
    .await
}

pub async fn connect(
    ws: &WsTransport,
    transport: TransportKind,
    remote: SocketAddr,
    o: Options,
) -> Result<BoxLink, Error> {
    ws.connect(ConnectRequest {
        transport,
        remote,
        options: Arc::new(o),
    })
    .await
}

/// What a served server link saw.
#[derive(Debug)]
pub enum Event {
    /// A link was accepted, with its info.
    Accepted(nkp_core::LinkInfo),
    /// A frame was read.
    Frame(Frame),
    /// The stream failed.
    Error(Error),
    /// The stream ended.
    End,
}

/// Serves `listener`: every link echoes data frames back and reports what it sees.
pub fn serve_echo(mut listener: BoxListener) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = listener.next().await {
            let tx = tx.clone();
            let pending = match item {
                Ok(Accepted::Pending(p)) => p,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => {
                    let _ = tx.send(Event::Error(e));
                    continue;
                }
            };
            tokio::spawn(async move {
                let mut link = match pending.await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Event::Error(e));
                        return;
                    }
                };
                let _ = tx.send(Event::Accepted(link.info().clone()));
                loop {
                    match link.next().await {
                        Some(Ok(f)) => {
                            let data = f.is_data();
                            let _ = tx.send(Event::Frame(f.clone()));
                            if data && link.send(f).await.is_err() {
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            let _ = tx.send(Event::Error(e));
                            break;
                        }
                        None => {
                            let _ = tx.send(Event::End);
                            break;
                        }
                    }
                }
            });
        }
    });
    rx
}

pub async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("channel closed")
}

/// Waits for the next accepted link, skipping the events of earlier ones.
pub async fn accepted(rx: &mut mpsc::UnboundedReceiver<Event>) -> nkp_core::LinkInfo {
    loop {
        if let Event::Accepted(i) = recv(rx).await {
            return i;
        }
    }
}

pub async fn next(link: &mut BoxLink) -> Option<Result<Frame, Error>> {
    tokio::time::timeout(WAIT, link.next())
        .await
        .expect("timed out waiting for a frame")
}

/// Sends `f` and expects the same frame back.
pub async fn echo(link: &mut BoxLink, f: Frame) {
    link.send(f.clone()).await.unwrap();
    assert_eq!(next(link).await.unwrap().unwrap(), f);
}

/// A raw TCP client that speaks WebSocket by hand.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// The RSV bits (`0x70` mask of the first byte) of the last frame read.
    pub last_rsv: u8,
}

impl Raw {
    /// Connects and sends `request` (a full HTTP head); returns the client and the response
    /// head (status line and headers, as text).
    pub async fn handshake(addr: SocketAddr, request: &str) -> (Raw, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            last_rsv: 0,
        };
        let head = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8(raw.buf[..i].to_vec()).unwrap();
                    raw.buf.drain(..i + 4);
                    return head;
                }
                let mut chunk = [0u8; 4096];
                let n = raw.stream.read(&mut chunk).await.unwrap();
                assert!(
                    n > 0,
                    "closed during handshake: {:?}",
                    String::from_utf8_lossy(&raw.buf)
                );
                raw.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .unwrap();
        (raw, head)
    }

    /// A standard upgrade request for `path` with extra header lines.
    pub fn request(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        )
    }

    /// Writes one masked frame.
    pub async fn write_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.write_frame_rsv(fin, 0, opcode, payload).await
    }

    /// Writes one masked frame with RSV bits (`0x40` is RSV1).
    pub async fn write_frame_rsv(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | (rsv & 0x70) | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len <= 0xffff {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).await.unwrap();
    }

    /// Reads one (unmasked, server) frame: (fin, opcode, payload); `None` on EOF.
    pub async fn read_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some((frame, used)) = parse(&self.buf) {
                    self.last_rsv = self.buf[0] & 0x70;
                    self.buf.drain(..used);
                    return Some(frame);
                }
                let mut chunk = [0u8; 65536];
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("timed out reading a frame")
    }
}

fn parse(b: &[u8]) -> Option<((bool, u8, Vec<u8>), usize)> {
    if b.len() < 2 {
        return None;
    }
    let fin = b[0] & 0x80 != 0;
    let op = b[0] & 0x0f;
    assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
    let (len, mut at) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([b[2], b[3]]) as usize, 4)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            )
        }
        n => (n as usize, 2),
    };
    if b.len() < at + len {
        return None;
    }
    let payload = b[at..at + len].to_vec();
    at += len;
    Some(((fin, op, payload), at))
}

/// The Python interpreter with `websockets` installed, if any: `.venv/bin/python` at the
/// workspace root first, then `python3`.
pub fn python_with_websockets() -> Option<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // canonical, so that Python finds its venv from the interpreter path
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let venv = root.join(".venv/bin/python");
    let candidates = [venv.to_string_lossy().to_string(), "python3".to_string()];
    candidates.into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import websockets"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `Some(python)`, or `None` after printing the skip line (or panics when peers are required).
pub fn require_python(test: &str) -> Option<String> {
    match python_with_websockets() {
        Some(p) => Some(p),
        None if std::env::var_os("NKP_REQUIRE_PEERS").is_some() => {
            panic!("{test}: python websockets is required (NKP_REQUIRE_PEERS is set)")
        }
        None => {
            eprintln!("SKIPPED {test}: python websockets not installed");
            None
        }
    }
}
