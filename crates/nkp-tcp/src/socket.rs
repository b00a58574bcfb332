//! Socket set-up shared by every stream transport (TCP, TLS, WS, HTTP).

use std::net::SocketAddr;
use std::time::Duration;

use nkp_core::Error;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};

/// Listen backlog of stream listeners.
pub const BACKLOG: i32 = 1024;

/// Binds a TCP listening socket: address reuse on (a restarted listener rebinds its port at
/// once), IPv6 sockets IPv6-only (so `[::]:p` and `0.0.0.0:p` are separate listeners), backlog
/// [`BACKLOG`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let l = nkp_tcp::socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
/// assert_ne!(l.local_addr().unwrap().port(), 0);
/// # }
/// ```
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let err = |source| Error::io("bind", Some(addr), source);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

/// Connects to `remote` within `timeout`, then sets no-delay and keep-alive.
///
/// Errors: [`Error::Timeout`] with op `"connect"`, or [`Error::Io`] (refused, unreachable).
pub async fn connect(remote: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(remote)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Error::io("connect", Some(remote), e)),
        Err(_) => {
            return Err(Error::Timeout {
                op: "connect",
                after: timeout,
            });
        }
    };
    configure(&stream).map_err(|e| Error::io("configure socket", Some(remote), e))?;
    Ok(stream)
}

/// Options set on every stream socket, accepted or connected: no-delay (signalling messages
/// are small and latency-bound) and TCP keep-alive (dead peers are found even when idle
/// timeouts are off).
pub fn configure(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let keepalive = TcpKeepalive::new().with_time(Duration::from_secs(60));
    SockRef::from(stream).set_tcp_keepalive(&keepalive)
}
