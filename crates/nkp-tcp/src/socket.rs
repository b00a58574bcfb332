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
    bind_shared(addr, false)
}

/// [`bind`], with `SO_REUSEPORT` when `reuse_port` (several sockets on one address, the
/// kernel spreading connections over them).
pub fn bind_shared(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener, Error> {
    let err = |source| Error::io("bind", Some(addr), source);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(err)?;
    }
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

/// [`bind`], retried while the address is in use: up to `retries` more attempts, `delay`
/// apart (the original slept 1 s between 5 retries, so that a restarted listener gets its
/// port back once the old socket is gone). Other errors are returned at once; after the last
/// retry the error is the [`Error::Io`] whose [`code`](Error::code) is `eaddrinuse`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// let first = nkp_tcp::socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
/// let taken = first.local_addr().unwrap();
/// let err = nkp_tcp::socket::bind_with_retry(taken, 1, Duration::from_millis(10))
///     .await
///     .unwrap_err();
/// assert_eq!(err.code(), "eaddrinuse");
/// # }
/// ```
pub async fn bind_with_retry(
    addr: SocketAddr,
    retries: u32,
    delay: Duration,
) -> Result<TcpListener, Error> {
    bind_shared_with_retry(addr, false, retries, delay).await
}

/// [`bind_with_retry`] with the choice of `SO_REUSEPORT` (see [`bind_shared`]).
pub async fn bind_shared_with_retry(
    addr: SocketAddr,
    reuse_port: bool,
    retries: u32,
    delay: Duration,
) -> Result<TcpListener, Error> {
    let mut attempt = 0;
    loop {
        match bind_shared(addr, reuse_port) {
            Err(e) if attempt < retries && e.io_kind() == Some(std::io::ErrorKind::AddrInUse) => {
                attempt += 1;
                tracing::debug!(%addr, attempt, "address in use, retrying bind");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ipv6_listener_is_v6_only_and_separate_from_ipv4() {
        let v6 = bind("[::1]:0".parse().unwrap()).unwrap();
        let port = v6.local_addr().unwrap().port();
        assert!(SockRef::from(&v6).only_v6().unwrap());
        // The same port on IPv4 is a different socket.
        let v4 = bind(SocketAddr::from(([127, 0, 0, 1], port)));
        // The port may be taken on IPv4 by an unrelated process; only "in use" is acceptable
        // as a failure.
        if let Err(e) = v4 {
            assert_eq!(e.code(), "eaddrinuse");
        }
    }

    #[tokio::test]
    async fn connected_sockets_get_nodelay_and_keepalive() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let s = connect(addr, Duration::from_secs(10)).await.unwrap();
        assert!(s.nodelay().unwrap());
        assert!(SockRef::from(&s).keepalive().unwrap());
        assert_eq!(s.peer_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert_eq!(err.code(), "eaddrinuse");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
