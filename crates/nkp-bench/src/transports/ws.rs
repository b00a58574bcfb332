//! WebSocket (`ws`) and WebSocket over TLS (`wss`), binary messages echoed as binary.
//!
//! Baseline: hyper 1 (`http1` connection served with upgrades) answering the upgrade request
//! with fastwebsockets' `upgrade`, then a fastwebsockets echo of each data frame (pings
//! answered, the close handshake completed); for wss behind the
//! tokio-rustls acceptor of [`tls::server_config`]. The load client is fastwebsockets'
//! `handshake::client` (masked frames) over a `TcpStream`, or over the tokio-rustls stream of
//! `tls.rs` for wss.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::Request;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{BoxFut, Certs, ClientCtx, Conn, Rows, Transport, tls};
use crate::client::{Plan, Samples};

/// Largest message either side accepts (nkpacket's default `max_message_size`).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Longest a client waits for the opening handshake or for one [`Conn::ping`] (the echo
/// loop itself is bounded by the suite): a server that stops answering fails the row.
pub const CLIENT_WAIT: Duration = Duration::from_secs(10);

/// WebSocket over TCP.
pub struct Ws;

/// WebSocket over TLS.
pub struct Wss;

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} took over {CLIENT_WAIT:?}"),
    )
}

fn ws_err(e: WebSocketError) -> io::Error {
    match e {
        WebSocketError::IoError(e) => e,
        other => bad(format!("websocket: {other}")),
    }
}

impl Transport for Ws {
    fn name(&self) -> &'static str {
        "ws"
    }

    fn rows(&self) -> Rows {
        Rows {
            echo: true,
            setup: true,
            idle_kib: Some(8.0),
            min_ratio: 0.9,
        }
    }

    fn nk_uri(&self, _certs: &Certs) -> String {
        "echo://127.0.0.1:0;transport=ws;tcp_max_connections=30000".to_string()
    }

    fn baseline(
        &self,
        _certs: &Certs,
    ) -> BoxFut<'static, io::Result<(SocketAddr, BoxFut<'static, ()>)>> {
        baseline_server(None)
    }

    fn connect(
        &self,
        addr: SocketAddr,
        _ctx: &ClientCtx,
    ) -> BoxFut<'static, io::Result<Box<dyn Conn>>> {
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let conn = WsConn::handshake(s, &addr.to_string()).await?;
            Ok(Box::new(conn) as Box<dyn Conn>)
        })
    }
}

impl Transport for Wss {
    fn name(&self) -> &'static str {
        "wss"
    }

    fn rows(&self) -> Rows {
        Rows {
            echo: true,
            setup: true,
            idle_kib: Some(32.0),
            min_ratio: 0.9,
        }
    }

    fn nk_uri(&self, certs: &Certs) -> String {
        format!(
            "echo://127.0.0.1:0;transport=wss;tcp_max_connections=30000;tls_certfile={};tls_keyfile={}",
            certs.cert.display(),
            certs.key.display()
        )
    }

    fn baseline(
        &self,
        certs: &Certs,
    ) -> BoxFut<'static, io::Result<(SocketAddr, BoxFut<'static, ()>)>> {
        match tls::server_config(certs) {
            Ok(config) => baseline_server(Some(TlsAcceptor::from(config))),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn connect(
        &self,
        addr: SocketAddr,
        ctx: &ClientCtx,
    ) -> BoxFut<'static, io::Result<Box<dyn Conn>>> {
        let connector = TlsConnector::from(ctx.tls.clone());
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let name = ServerName::try_from("localhost").map_err(bad)?;
            let tls = connector.connect(name, s).await?;
            let conn = WsConn::handshake(tls, &format!("localhost:{}", addr.port())).await?;
            Ok(Box::new(conn) as Box<dyn Conn>)
        })
    }
}

/// Binds the baseline on 127.0.0.1 port 0: plain TCP, or TLS when `acceptor` is given.
fn baseline_server(
    acceptor: Option<TlsAcceptor>,
) -> BoxFut<'static, io::Result<(SocketAddr, BoxFut<'static, ()>)>> {
    Box::pin(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let serve: BoxFut<'static, ()> = Box::pin(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                match &acceptor {
                    None => {
                        tokio::spawn(serve_http(stream));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                serve_http(tls).await;
                            }
                        });
                    }
                }
            }
        });
        Ok((addr, serve))
    })
}

/// Serves HTTP/1.1 on one connection until it is upgraded to a WebSocket (or closed).
async fn serve_http<S>(io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service_fn(upgrade_request))
        .with_upgrades();
    let _ = conn.await;
}

/// Answers a WebSocket upgrade request (101) and spawns the echo of the upgraded
/// connection; any other request is an error, on which hyper closes the connection.
async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<hyper::Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        if let Ok(ws) = fut.await {
            ws_echo(ws).await;
        }
    });
    Ok(response)
}

/// The hand-written echo of one WebSocket: every data frame back as it came (type and `fin`
/// kept, so a fragmented message comes back fragmented), flushed (TLS).
async fn ws_echo(mut ws: WebSocket<TokioIo<Upgraded>>) {
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_MESSAGE);
    loop {
        let Ok(frame) = ws.read_frame().await else {
            return;
        };
        match frame.opcode {
            OpCode::Binary | OpCode::Text | OpCode::Continuation => {
                // A fresh frame: the received one keeps the client's masking key, and a
                // server's frames are unmasked.
                let reply = Frame::new(frame.fin, frame.opcode, None, frame.payload);
                if ws.write_frame(reply).await.is_err() || ws.flush().await.is_err() {
                    return;
                }
            }
            // auto_close has already answered it.
            OpCode::Close => return,
            OpCode::Ping | OpCode::Pong => {}
        }
    }
}

/// A load-client WebSocket (fastwebsockets, client role: every frame masked).
pub struct WsConn {
    ws: WebSocket<TokioIo<Upgraded>>,
    /// The outgoing payload, copied afresh for each message (masking is in place).
    out: Vec<u8>,
}

impl WsConn {
    /// Makes the opening handshake (`GET /`, `Host: host`) over a connected stream.
    pub async fn handshake<S>(io: S, host: &str) -> io::Result<WsConn>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let req = Request::builder()
            .method("GET")
            .uri("/")
            .header(HOST, host)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header(
                "Sec-WebSocket-Key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("Sec-WebSocket-Version", "13")
            .body(Empty::<Bytes>::new())
            .map_err(bad)?;
        let executor = TokioExecutor::new();
        let handshake = fastwebsockets::handshake::client(&executor, req, io);
        let (mut ws, _) = tokio::time::timeout(CLIENT_WAIT, handshake)
            .await
            .map_err(|_| timed_out("the websocket handshake"))?
            .map_err(ws_err)?;
        ws.set_auto_close(true);
        ws.set_auto_pong(true);
        ws.set_max_message_size(MAX_MESSAGE);
        Ok(WsConn {
            ws,
            out: Vec::new(),
        })
    }

    /// One round trip: `wire` out as one binary message, one binary message of the same
    /// length back (in one frame or several).
    async fn round_trip(&mut self, wire: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(wire);
        let frame = Frame::binary(Payload::BorrowedMut(&mut self.out));
        self.ws.write_frame(frame).await.map_err(ws_err)?;
        self.ws.flush().await.map_err(ws_err)?;
        let mut got = 0usize;
        let mut started = false;
        loop {
            let frame = self.ws.read_frame().await.map_err(ws_err)?;
            match frame.opcode {
                OpCode::Binary if !started => {}
                OpCode::Continuation if started => {}
                OpCode::Close => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the server closed the websocket",
                    ));
                }
                // Pings (answered by auto_pong), pongs.
                OpCode::Ping | OpCode::Pong => continue,
                other => return Err(bad(format!("echo: unexpected {other:?} frame"))),
            }
            started = true;
            got += frame.payload.len();
            if frame.fin {
                if got != wire.len() {
                    return Err(bad(format!(
                        "echo: {got} bytes back for {} sent",
                        wire.len()
                    )));
                }
                return Ok(());
            }
        }
    }
}

impl Conn for WsConn {
    fn run(
        mut self: Box<Self>,
        wire: Arc<[u8]>,
        plan: Plan,
    ) -> BoxFut<'static, io::Result<Samples>> {
        Box::pin(async move {
            let mut s = Samples::default();
            let mut n = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= plan.end || n >= plan.max_msgs {
                    break;
                }
                self.round_trip(&wire).await?;
                s.record(t0, t0.elapsed(), &plan);
                n += 1;
            }
            Ok(s)
        })
    }

    fn ping<'a>(&'a mut self, wire: &'a [u8]) -> BoxFut<'a, io::Result<()>> {
        Box::pin(async move {
            tokio::time::timeout(CLIENT_WAIT, self.round_trip(wire))
                .await
                .map_err(|_| timed_out("the echo"))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_through_baseline(t: &dyn Transport) {
        let dir =
            std::env::temp_dir().join(format!("nkp-bench-ws-{}-{}", t.name(), std::process::id()));
        nkpacket::tls::write_self_signed(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let certs = Certs::in_dir(&dir);
        let ctx = ClientCtx {
            tls: tls::client_config(&certs).unwrap(),
        };
        let (addr, serve) = t.baseline(&certs).await.unwrap();
        let server = tokio::spawn(serve);
        let mut conn = t.connect(addr, &ctx).await.unwrap();
        for size in [1, 64, 1024, 70_000] {
            conn.ping(&vec![b'x'; size]).await.unwrap();
        }
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn ws_baseline_echoes() {
        echo_through_baseline(&Ws).await;
    }

    #[tokio::test]
    async fn wss_baseline_echoes() {
        echo_through_baseline(&Wss).await;
    }

    #[tokio::test]
    async fn plain_tcp_is_not_a_websocket() {
        let (addr, serve) = Ws
            .baseline(&Certs::in_dir(std::path::Path::new("/nonexistent")))
            .await
            .unwrap();
        let server = tokio::spawn(serve);
        // A raw TCP echo would answer these bytes; the baseline wants an HTTP upgrade first.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"\x82\x05hello").await.unwrap();
        let n = tokio::time::timeout(CLIENT_WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert!(!buf[..n].starts_with(b"hello") && !buf[..n].windows(5).any(|w| w == b"hello"));
        server.abort();
    }
}
