//! TCP, raw (`tcp`) and with a 4-byte length prefix (`tcp4`, `tcp_packet=4`).
//!
//! Baselines: a raw echo written on tokio alone (read into a buffer, write it back), and a
//! tokio-util `Framed<TcpStream, LengthDelimitedCodec>` echo.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::{BoxFut, Certs, ClientCtx, Conn, Rows, Transport};
use crate::client::{Plan, Samples, stream_loop, stream_ping};

/// Size of the hand-written raw echo's read buffer.
pub const BASELINE_BUF: usize = 4096;

/// Plain TCP, raw or length-prefixed.
pub struct Tcp {
    prefix4: bool,
}

impl Tcp {
    /// Raw TCP: whatever arrives is echoed.
    pub fn raw() -> Tcp {
        Tcp { prefix4: false }
    }

    /// TCP with `tcp_packet=4`.
    pub fn prefix4() -> Tcp {
        Tcp { prefix4: true }
    }
}

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        if self.prefix4 { "tcp4" } else { "tcp" }
    }

    fn rows(&self) -> Rows {
        Rows {
            echo: true,
            setup: !self.prefix4,
            idle_kib: (!self.prefix4).then_some(4.0),
            min_ratio: 0.9,
        }
    }

    fn nk_uri(&self, _certs: &Certs) -> String {
        let framing = if self.prefix4 { ";tcp_packet=4" } else { "" };
        format!("echo://127.0.0.1:0;transport=tcp{framing};tcp_max_connections=30000")
    }

    fn wire(&self, payload: &[u8]) -> Vec<u8> {
        if !self.prefix4 {
            return payload.to_vec();
        }
        let mut v = Vec::with_capacity(payload.len() + 4);
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn baseline(
        &self,
        _certs: &Certs,
    ) -> BoxFut<'static, io::Result<(SocketAddr, BoxFut<'static, ()>)>> {
        let prefix4 = self.prefix4;
        Box::pin(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let serve: BoxFut<'static, ()> = Box::pin(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    if prefix4 {
                        tokio::spawn(framed_echo(stream));
                    } else {
                        tokio::spawn(raw_echo(stream));
                    }
                }
            });
            Ok((addr, serve))
        })
    }

    fn connect(
        &self,
        addr: SocketAddr,
        _ctx: &ClientCtx,
    ) -> BoxFut<'static, io::Result<Box<dyn Conn>>> {
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(StreamConn::new(s)) as Box<dyn Conn>)
        })
    }
}

/// The hand-written raw echo of one connection.
pub async fn raw_echo<S>(mut s: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BASELINE_BUF];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The tokio-util echo of one length-prefixed connection.
async fn framed_echo(s: TcpStream) {
    let mut framed = Framed::new(s, LengthDelimitedCodec::new());
    while let Some(Ok(frame)) = framed.next().await {
        if framed.send(frame.freeze()).await.is_err() {
            return;
        }
    }
}

/// A client connection over any byte stream.
pub struct StreamConn<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S> StreamConn<S> {
    /// Wraps a connected stream.
    pub fn new(io: S) -> Self {
        StreamConn {
            io,
            buf: Vec::new(),
        }
    }
}

impl<S> Conn for StreamConn<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn run(
        mut self: Box<Self>,
        wire: Arc<[u8]>,
        plan: Plan,
    ) -> BoxFut<'static, io::Result<Samples>> {
        Box::pin(async move { stream_loop(&mut self.io, &wire, plan).await })
    }

    fn ping<'a>(&'a mut self, wire: &'a [u8]) -> BoxFut<'a, io::Result<()>> {
        Box::pin(async move {
            self.buf.resize(wire.len(), 0);
            stream_ping(&mut self.io, wire, &mut self.buf).await
        })
    }
}
