//! The load clients: one trait per transport, plain tokio sockets (no nkpacket code on the
//! client side, so the server is checked against an independent implementation), and the
//! driver that runs one client's messages with a window of messages in flight.
//!
//! A new transport (WebSocket, say) needs a [`LoadTransport`] with its [`LoadConn`]; the
//! driver and the counting stay as they are.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// One client connection: sends whole messages and receives whole messages.
pub trait LoadConn: Send {
    /// Sends one message.
    fn send(&mut self, msg: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Receives one message; `Ok(None)` when the server closed the connection.
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;
}

/// A transport the load test drives.
pub trait LoadTransport: Send + Sync + 'static {
    /// Its connection type.
    type Conn: LoadConn;
    /// Name in reports (`tcp`, `udp`).
    fn name(&self) -> &'static str;
    /// Whether every message must come back (a loss fails the run) or loss is only counted.
    fn reliable(&self) -> bool;
    /// Messages in flight per client.
    fn window(&self) -> usize;
    /// How long to wait for an echo before the messages in flight count as lost (unreliable)
    /// or the client fails (reliable).
    fn recv_timeout(&self) -> Duration;
    /// Opens a connection to the server.
    fn connect(&self, server: SocketAddr) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

/// TCP with a 4-byte big-endian length prefix (the server's `tcp_packet=4`).
#[derive(Debug, Clone, Copy)]
pub struct Tcp;

/// A TCP client connection.
pub struct TcpConn {
    stream: TcpStream,
    out: BytesMut,
}

impl LoadTransport for Tcp {
    type Conn = TcpConn;

    fn name(&self) -> &'static str {
        "tcp"
    }

    fn reliable(&self) -> bool {
        true
    }

    fn window(&self) -> usize {
        32
    }

    fn recv_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn connect(&self, server: SocketAddr) -> io::Result<TcpConn> {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        Ok(TcpConn {
            stream,
            out: BytesMut::new(),
        })
    }
}

impl LoadConn for TcpConn {
    async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let len = u32::try_from(msg.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
        self.out.clear();
        self.out.put_u32(len);
        self.out.put_slice(msg);
        self.stream.write_all(&self.out).await
    }

    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        let mut prefix = [0u8; 4];
        match self.stream.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(prefix) as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await?;
        Ok(Some(Bytes::from(body)))
    }
}

/// UDP: one socket per client, connected to the server.
#[derive(Debug, Clone, Copy)]
pub struct Udp;

/// A UDP client socket.
pub struct UdpConn {
    socket: UdpSocket,
    buf: Vec<u8>,
}

impl LoadTransport for Udp {
    type Conn = UdpConn;

    fn name(&self) -> &'static str {
        "udp"
    }

    fn reliable(&self) -> bool {
        false
    }

    fn window(&self) -> usize {
        8
    }

    fn recv_timeout(&self) -> Duration {
        Duration::from_millis(500)
    }

    async fn connect(&self, server: SocketAddr) -> io::Result<UdpConn> {
        let local: SocketAddr = if server.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        Ok(UdpConn {
            socket,
            buf: vec![0u8; 65_536],
        })
    }
}

impl LoadConn for UdpConn {
    async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.socket.send(msg).await.map(|_| ())
    }

    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.socket.recv(&mut self.buf).await {
                Ok(n) => return Ok(Some(Bytes::copy_from_slice(&self.buf[..n]))),
                // An ICMP error of an earlier datagram: the socket is still usable.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// What one client saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientReport {
    /// Messages sent.
    pub sent: u64,
    /// Distinct messages echoed back intact.
    pub echoed: u64,
    /// Echoes that did not match any message of this client (corrupted or foreign).
    pub corrupt: u64,
    /// Echoes of a message already echoed.
    pub duplicate: u64,
    /// Whether the client stopped on an error (connect, I/O, closed, stalled).
    pub failed: bool,
}

/// Header of every message: client id and sequence number; the rest is a pattern derived
/// from both, so a corrupted or misrouted echo is recognised.
const HEADER: usize = 8;

/// The message `seq` of client `id`, `size` bytes (at least the header).
pub fn message(id: u32, seq: u32, size: usize) -> Vec<u8> {
    let size = size.max(HEADER);
    let mut m = Vec::with_capacity(size);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    let mut x = id.wrapping_mul(0x9E37_79B9) ^ seq;
    while m.len() < size {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        m.push((x >> 24) as u8);
    }
    m
}

/// The sequence number of an echo, if it is exactly a message client `id` sent.
pub fn check_echo(echo: &[u8], id: u32, size: usize) -> Option<u32> {
    let head: &[u8; HEADER] = echo.first_chunk()?;
    let got_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let seq = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    (got_id == id && echo == message(id, seq, size).as_slice()).then_some(seq)
}

/// Runs client `id`: connects (holding a permit of `connects` meanwhile), sends `messages`
/// messages of `size` bytes keeping up to the transport's window in flight, and counts the
/// echoes.
pub async fn run_client<T: LoadTransport>(
    transport: &T,
    server: SocketAddr,
    connects: &Semaphore,
    id: u32,
    messages: u32,
    size: usize,
) -> (ClientReport, Option<String>) {
    let mut report = ClientReport::default();
    // A closed semaphore only means no pacing.
    let permit = connects.acquire().await.ok();
    let connected = transport.connect(server).await;
    drop(permit);
    let mut conn = match connected {
        Ok(c) => c,
        Err(e) => {
            report.failed = true;
            return (report, Some(format!("{} connect: {e}", transport.name())));
        }
    };
    let window = transport.window().max(1);
    let mut next: u32 = 0;
    // Sent and not yet echoed; for an unreliable transport, those given up on move to `late`.
    let mut in_flight: HashSet<u32> = HashSet::with_capacity(window);
    let mut late: HashSet<u32> = HashSet::new();
    let mut seen: HashSet<u32> = HashSet::with_capacity(messages as usize);
    loop {
        while next < messages && in_flight.len() < window {
            if let Err(e) = conn.send(&message(id, next, size)).await {
                report.failed = true;
                return (report, Some(format!("send: {e}")));
            }
            in_flight.insert(next);
            report.sent += 1;
            next += 1;
        }
        if in_flight.is_empty() {
            break;
        }
        match tokio::time::timeout(transport.recv_timeout(), conn.recv()).await {
            Ok(Ok(Some(echo))) => match check_echo(&echo, id, size) {
                Some(seq) if in_flight.remove(&seq) || late.remove(&seq) => {
                    seen.insert(seq);
                    report.echoed += 1;
                }
                Some(seq) if seen.contains(&seq) => report.duplicate += 1,
                _ => report.corrupt += 1,
            },
            Ok(Ok(None)) => {
                report.failed = true;
                return (report, Some("the server closed the connection".into()));
            }
            Ok(Err(e)) => {
                report.failed = true;
                return (report, Some(format!("receive: {e}")));
            }
            Err(_) if transport.reliable() => {
                report.failed = true;
                return (
                    report,
                    Some(format!(
                        "no echo for {} s with {} messages in flight",
                        transport.recv_timeout().as_secs(),
                        in_flight.len()
                    )),
                );
            }
            Err(_) => late.extend(in_flight.drain()),
        }
    }
    (report, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_recognised() {
        let m = message(7, 42, 64);
        assert_eq!(m.len(), 64);
        assert_eq!(check_echo(&m, 7, 64), Some(42));
        assert_eq!(check_echo(&m, 8, 64), None);
        let mut bad = m.clone();
        bad[40] ^= 1;
        assert_eq!(check_echo(&bad, 7, 64), None);
        assert_eq!(check_echo(&m[..63], 7, 64), None);
        assert_eq!(message(1, 2, 3).len(), HEADER);
        assert_ne!(message(1, 2, 64), message(1, 3, 64));
    }
}
