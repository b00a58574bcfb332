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

/// WebSocket over TCP.
pub struct Ws;

/// WebSocket over TLS.
pub struct Wss;

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
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
/// connection; any other request gets fastwebsockets' error (400 from hyper).
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
        let (mut ws, _) = fastwebsockets::handshake::client(&TokioExecutor::new(), req, io)
            .await
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
        Box::pin(self.round_trip(wire))
    }
}
