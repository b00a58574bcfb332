//! TLS handshakes on TCP streams, and the stream adapter used by TLS links.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nkp_core::{Error, Options};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, CommonState, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// Runs the server side of a TLS handshake on an accepted socket, within `timeout`.
///
/// Errors: [`Error::Timeout`] with op `"tls handshake"`, or [`Error::Tls`] naming the peer
/// and what failed (bad certificate, no shared version, not TLS at all, ...).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// let dir = std::env::temp_dir().join(format!("nkp-tls-doc-acc-{}", std::process::id()));
/// let (cert, key) = nkp_tls::write_self_signed(&dir, &["localhost".into()]).unwrap();
/// let mut opts = nkp_core::Options::default();
/// opts.set("tls_certfile", cert.to_str().unwrap()).unwrap();
/// opts.set("tls_keyfile", key.to_str().unwrap()).unwrap();
/// let acceptor = tokio_rustls::TlsAcceptor::from(nkp_tls::server_config(&opts).unwrap());
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let addr = listener.local_addr().unwrap();
/// let server = tokio::spawn(async move {
///     let (tcp, _) = listener.accept().await.unwrap();
///     let tls = nkp_tls::accept(&acceptor, tcp, Duration::from_secs(5)).await.unwrap();
///     tls.get_ref().1.server_name().map(str::to_string)
/// });
///
/// let mut copts = nkp_core::Options::default();
/// copts.set("tls_cacertfile", cert.to_str().unwrap()).unwrap();
/// copts.set("host", "localhost").unwrap();
/// let config = nkp_tls::client_config(&copts).unwrap();
/// let name = nkp_tls::server_name(&copts, addr).unwrap();
/// let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
/// let tls = nkp_tls::connect_tls(config, name, tcp, Duration::from_secs(5)).await.unwrap();
/// assert!(tls.get_ref().1.protocol_version().is_some());
/// assert_eq!(server.await.unwrap().as_deref(), Some("localhost"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # }
/// ```
pub async fn accept(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<server::TlsStream<TcpStream>, Error> {
    let peer = tcp.peer_addr().ok();
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(handshake_error("from", peer, e)),
        Err(_) => Err(Error::Timeout {
            op: "tls handshake",
            after: timeout,
        }),
    }
}

/// Runs the client side of a TLS handshake on a connected socket, within `timeout`,
/// checking the server's certificate for `server_name` (unless the configuration does not
/// verify) and sending it as SNI when it is a DNS name.
///
/// Errors: [`Error::Timeout`] with op `"tls handshake"`, or [`Error::Tls`] naming the peer
/// and what failed (e.g. `invalid peer certificate: UnknownIssuer`).
pub async fn connect_tls(
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<client::TlsStream<TcpStream>, Error> {
    let peer = tcp.peer_addr().ok();
    let connector = TlsConnector::from(config);
    match tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(handshake_error("with", peer, e)),
        Err(_) => Err(Error::Timeout {
            op: "tls handshake",
            after: timeout,
        }),
    }
}

pub(crate) fn handshake_error(dir: &str, peer: Option<SocketAddr>, e: io::Error) -> Error {
    let peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "peer".into());
    let what = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        // our own verifiers' messages (tls_depth) read better without rustls' prefix
        Some(rustls::Error::General(msg)) => msg.clone(),
        Some(tls) => tls.to_string(),
        None if e.kind() == io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the handshake".to_string()
        }
        None => e.to_string(),
    };
    Error::Tls(format!("handshake {dir} {peer} failed: {what}"))
}

/// The name a client checks the server certificate against: option `host` when given (a
/// DNS name, or an IP literal, with or without brackets), else the IP address of `remote`.
/// Only a DNS name is sent as SNI.
///
/// ```
/// let remote = "127.0.0.1:443".parse().unwrap();
/// let mut opts = nkp_core::Options::default();
/// assert_eq!(nkp_tls::server_name(&opts, remote).unwrap().to_str(), "127.0.0.1");
/// opts.set("host", "example.com").unwrap();
/// assert_eq!(nkp_tls::server_name(&opts, remote).unwrap().to_str(), "example.com");
/// opts.set("host", "[::1]").unwrap();
/// assert_eq!(nkp_tls::server_name(&opts, remote).unwrap().to_str(), "::1");
/// opts.set("host", "bad name!").unwrap();
/// assert!(nkp_tls::server_name(&opts, remote).is_err());
/// ```
pub fn server_name(opts: &Options, remote: SocketAddr) -> Result<ServerName<'static>, Error> {
    let Some(host) = opts.host.as_deref() else {
        return Ok(ServerName::IpAddress(remote.ip().into()));
    };
    let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    let name = bare.trim_end_matches('.').to_string();
    ServerName::try_from(name)
        .map_err(|e| Error::Tls(format!("host {host:?} is not a valid TLS server name: {e}")))
}

/// What was negotiated on a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Protocol version (`TLSv1_2`, `TLSv1_3`).
    pub version: Option<ProtocolVersion>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// Name of the negotiated cipher suite.
    pub cipher_suite: Option<String>,
    /// The SNI host name the client sent (known on the server side).
    pub sni: Option<String>,
}

impl SessionInfo {
    /// Reads the negotiated parameters from a rustls connection state.
    pub fn from_state(state: &CommonState, sni: Option<&str>) -> Self {
        SessionInfo {
            version: state.protocol_version(),
            alpn: state.alpn_protocol().map(<[u8]>::to_vec),
            cipher_suite: state
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
            sni: sni.map(str::to_string),
        }
    }

    /// Reads the negotiated parameters of a TLS stream (client or server side).
    pub fn of<T>(stream: &tokio_rustls::TlsStream<T>) -> Self {
        match stream {
            tokio_rustls::TlsStream::Client(c) => Self::from_state(c.get_ref().1, None),
            tokio_rustls::TlsStream::Server(s) => {
                let conn = s.get_ref().1;
                Self::from_state(conn, conn.server_name())
            }
        }
    }
}

/// A stream adapter that turns the `UnexpectedEof` rustls reports when the peer closes TCP
/// without a TLS `close_notify` into a normal end of stream.
///
/// Many peers (and most of the protocols nkpacket carries, which delimit their own messages)
/// just close the socket; treating that as an error would log every such close as a failure.
/// Writes pass through; shutting down sends `close_notify`.
#[derive(Debug)]
pub struct CleanEof<S> {
    inner: S,
}

impl<S> CleanEof<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CleanEof { inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CleanEof<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CleanEof<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
