//! WebSocket load clients (`ws`, `wss`): tokio-tungstenite, an implementation independent of
//! nkp-ws, over a plain tokio `TcpStream` or a tokio-rustls stream (ring provider, no
//! certificate verification: the server's certificate is a self-signed one made for the run).
//!
//! Every message is one binary WebSocket message; the echo must come back as one binary
//! message. Pings and pongs are skipped, a close ends the connection.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::client::{LoadConn, LoadTransport};

/// Plain WebSocket (`ws`): an HTTP/1.1 upgrade on a TCP connection, then binary messages.
#[derive(Debug, Clone, Copy)]
pub struct Ws;

/// WebSocket over TLS (`wss`), accepting any server certificate.
#[derive(Clone)]
pub struct Wss {
    tls: TlsConnector,
}

impl Wss {
    /// A `wss` transport whose TLS client (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`)
    /// verifies handshake signatures but trusts any certificate.
    pub fn new() -> Result<Self, String> {
        // nkp-tls' client configuration with `tls_verify=false`: any certificate, handshake
        // signatures still checked.
        let mut opts = nkpacket::Options::default();
        opts.tls_verify = Some(false);
        let config = nkp_tls::ConfigCache::with_alpn(vec![b"http/1.1".to_vec()])
            .client_config(&opts)
            .map_err(|e| format!("TLS client config: {e}"))?;
        Ok(Wss {
            tls: TlsConnector::from(config),
        })
    }
}

/// A WebSocket client connection over `S`.
pub struct WsConn<S> {
    ws: WebSocketStream<S>,
}

/// Connects TCP with `TCP_NODELAY`.
async fn tcp(server: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs the client handshake of `url` on `stream`.
async fn upgrade<S>(url: String, stream: S) -> io::Result<WsConn<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, _response) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(ws_error)?;
    Ok(WsConn { ws })
}

fn ws_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        e => io::Error::other(e),
    }
}

impl LoadTransport for Ws {
    type Conn = WsConn<TcpStream>;

    fn name(&self) -> &'static str {
        "ws"
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

    async fn connect(&self, server: SocketAddr) -> io::Result<Self::Conn> {
        upgrade(format!("ws://{server}/"), tcp(server).await?).await
    }
}

impl LoadTransport for Wss {
    type Conn = WsConn<tokio_rustls::client::TlsStream<TcpStream>>;

    fn name(&self) -> &'static str {
        "wss"
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

    async fn connect(&self, server: SocketAddr) -> io::Result<Self::Conn> {
        let stream = tcp(server).await?;
        let name = ServerName::IpAddress(server.ip().into());
        let tls = self.tls.connect(name, stream).await?;
        upgrade(format!("wss://{server}/"), tls).await
    }
}

impl<S> LoadConn for WsConn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(msg)))
            .await
            .map_err(ws_error)
    }

    async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                // A text echo of a binary message is wrong: it counts as corrupt.
                Some(Ok(Message::Text(t))) => return Ok(Some(Bytes::from(t))),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(None),
                Some(Err(e)) => return Err(ws_error(e)),
            }
        }
    }
}
