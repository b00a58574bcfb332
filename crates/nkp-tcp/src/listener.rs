//! The TCP listener: accepts connections up to the per-listener cap.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_core::Stream;
use nkp_core::{Accepted, Error, Listener, Options};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::PollSemaphore;

use crate::{socket, tcp_link};

/// How long the listener waits before accepting again after the process or system ran out of
/// file descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A TCP connection taken off a [`TcpStreamListener`], before any framing: what TLS, HTTP and
/// WebSocket listeners build on.
#[derive(Debug)]
pub struct AcceptedStream {
    /// The socket, already configured with [`socket::configure`] (no-delay, keep-alive).
    pub stream: TcpStream,
    /// Its local address (the real socket name).
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
    /// The listener's connection slot: keep it as long as the connection lives (dropping it
    /// lets the listener accept one more connection).
    pub slot: OwnedSemaphorePermit,
}

/// A bound TCP listener: a [`Stream`] of accepted, framed links (an [`nkp_core::Listener`]).
///
/// Each accepted socket is configured (no-delay, keep-alive) and wrapped in a
/// [`StreamLink`](nkp_core::StreamLink) with the listener's framing (`tcp_packet`),
/// `max_message_size` and `send_timeout`.
///
/// At most `tcp_max_connections` links from this listener are alive at a time: each link holds
/// a connection slot until it is dropped, and while none is free the listener does not call
/// `accept`, so new clients wait in the kernel backlog (they are never accepted and dropped).
///
/// An `Err` item is a failed accept (the listener goes on); after running out of file
/// descriptors the listener pauses [`ACCEPT_BACKOFF`] before accepting again. The stream never
/// ends by itself; dropping the listener closes its socket (accepted links stay open).
pub struct TcpStreamListener {
    listener: TcpListener,
    local: SocketAddr,
    options: Arc<Options>,
    slots: PollSemaphore,
    limit: usize,
    permit: Option<OwnedSemaphorePermit>,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl TcpStreamListener {
    /// Wraps a bound, listening socket (from [`socket::bind`]) with `options`.
    ///
    /// Errors: [`Error::Io`] if the socket has no local address.
    pub fn new(listener: TcpListener, options: Arc<Options>) -> Result<Self, Error> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("listener address", None, e))?;
        let limit = options
            .effective_tcp_max_connections()
            .clamp(1, Semaphore::MAX_PERMITS);
        Ok(TcpStreamListener {
            listener,
            local,
            options,
            slots: PollSemaphore::new(Arc::new(Semaphore::new(limit))),
            limit,
            permit: None,
            backoff: None,
        })
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The listener's options.
    pub fn options(&self) -> &Arc<Options> {
        &self.options
    }

    /// The cap on live connections (`tcp_max_connections`).
    pub fn max_connections(&self) -> usize {
        self.limit
    }

    /// How many accepted connections are alive (their slot not yet dropped).
    pub fn active_connections(&self) -> usize {
        let held = usize::from(self.permit.is_some());
        self.limit
            .saturating_sub(self.slots.available_permits() + held)
    }

    /// Waits for the next connection, once a connection slot is free.
    ///
    /// Cancel-safe: a pending call that is dropped loses no connection.
    pub async fn accept_stream(&mut self) -> Result<AcceptedStream, Error> {
        std::future::poll_fn(|cx| self.poll_accept_stream(cx)).await
    }

    /// Polls for the next connection (see [`accept_stream`](Self::accept_stream)).
    pub fn poll_accept_stream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<AcceptedStream, Error>> {
        if let Some(sleep) = self.backoff.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            self.backoff = None;
        }
        let permit = match self.permit.take() {
            Some(p) => p,
            None => match ready!(self.slots.poll_acquire(cx)) {
                Some(p) => p,
                // The semaphore is never closed while the listener exists.
                None => return Poll::Ready(Err(Error::Closed(Some("listener stopped".into())))),
            },
        };
        match self.listener.poll_accept(cx) {
            Poll::Pending => {
                self.permit = Some(permit);
                Poll::Pending
            }
            Poll::Ready(Err(e)) => {
                self.permit = Some(permit);
                if is_resource_exhaustion(&e) {
                    tracing::warn!(local = %self.local, error = %e, "accept failed; pausing");
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                } else {
                    tracing::debug!(local = %self.local, error = %e, "accept failed");
                }
                Poll::Ready(Err(Error::io("accept", Some(self.local), e)))
            }
            Poll::Ready(Ok((stream, remote))) => {
                let local = match configure_accepted(&stream, remote) {
                    Ok(local) => local,
                    Err(e) => {
                        self.permit = Some(permit);
                        tracing::debug!(local = %self.local, %remote, error = %e, "accepted socket unusable");
                        return Poll::Ready(Err(e));
                    }
                };
                tracing::debug!(listener = %self.local, %local, %remote, "accepted tcp connection");
                Poll::Ready(Ok(AcceptedStream {
                    stream,
                    local,
                    remote,
                    slot: permit,
                }))
            }
        }
    }
}

fn configure_accepted(stream: &TcpStream, remote: SocketAddr) -> Result<SocketAddr, Error> {
    socket::configure(stream).map_err(|e| Error::io("configure socket", Some(remote), e))?;
    stream
        .local_addr()
        .map_err(|e| Error::io("local address", Some(remote), e))
}

/// True for accept errors that mean "out of descriptors or memory": retrying at once would
/// fail again, so the listener pauses.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || e.kind() == io::ErrorKind::OutOfMemory
}

impl fmt::Debug for TcpStreamListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStreamListener")
            .field("local", &self.local)
            .field("max_connections", &self.limit)
            .field("active_connections", &self.active_connections())
            .field("framing", &self.options.framing())
            .finish_non_exhaustive()
    }
}

impl Stream for TcpStreamListener {
    type Item = Result<Accepted, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let accepted = ready!(this.poll_accept_stream(cx));
        Poll::Ready(Some(accepted.map(|a| {
            if this.options.proxy_protocol == Some(true) {
                return Accepted::Pending(proxied_link(a, this.options.clone()));
            }
            let link = tcp_link(a.stream, &this.options, a.local, a.remote).with_guard(a.slot);
            Accepted::Link(Box::new(link))
        })))
    }
}

/// Longest wait for the PROXY header when `connect_timeout` is not set.
const PROXY_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A listener with `proxy_protocol`: the stream starts with a PROXY header whose source
/// address becomes the link's remote address. Runs in the connection's task.
fn proxied_link(
    a: AcceptedStream,
    options: Arc<Options>,
) -> futures_core::future::BoxFuture<'static, Result<nkp_core::BoxLink, Error>> {
    Box::pin(async move {
        let timeout = options.connect_timeout.unwrap_or(PROXY_HEADER_TIMEOUT);
        let io = crate::SendTimeoutStream::from_options(a.stream, &options);
        let (header, io) = nkp_core::proxy::read_header(io, timeout)
            .await
            .inspect_err(|e| tracing::info!(peer = %a.remote, error = %e, "bad PROXY header: connection closed"))?;
        let remote = match header {
            nkp_core::proxy::ProxyHeader::Proxy { source, .. } => source,
            _ => a.remote,
        };
        let codec =
            nkp_core::StreamCodec::new(&options.framing(), options.effective_max_message_size());
        let link = nkp_core::StreamLink::new(
            io,
            codec,
            nkp_core::LinkInfo::new(nkp_core::TransportKind::Tcp, a.local, remote),
        )
        .with_guard(a.slot);
        Ok(Box::new(link) as nkp_core::BoxLink)
    })
}

impl Listener for TcpStreamListener {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_errors_are_recognised() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
