//! A per-peer UDP link.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use futures_core::future::BoxFuture;
use futures_sink::Sink;

use nkp_core::{Error, Frame, Link, LinkInfo, Options, TransportKind};

use crate::listener::{AbortOnDrop, RecvCtx, Shared, spawn_receiver};
use crate::socket::{Sock, SockConfig, send_error};

/// Frames buffered by the sink before `poll_ready` flushes them (they may go out together
/// in one GSO send).
const MAX_PENDING: usize = 64;

/// A "connection" to one remote over UDP: a [`Link`] whose stream yields each datagram from
/// the remote as a [`Frame::Binary`] and whose sink sends each data frame as one datagram
/// (text as its UTF-8 bytes; ping, pong and close frames are ignored).
///
/// Links made by a [`UdpListener`](crate::UdpListener) share its socket: datagrams leave from
/// the listener's address. A data frame larger than the link's `udp_max_size` (default
/// 1300) fails with [`Error::UdpTooLarge`], as does one the OS refuses as too big
/// (`EMSGSIZE`). Frames fed without a flush are sent together on the next flush, using GSO
/// where the kernel supports it.
///
/// The stream ends (`None`) when the listener stops. Dropping the link removes it from
/// the listener's table.
pub struct UdpLink {
    info: LinkInfo,
    shared: Arc<Shared>,
    id: u64,
    max_size: usize,
    rx: crate::queue::Receiver,
    pending: Vec<Bytes>,
    flushing: Option<BoxFuture<'static, Result<(), Error>>>,
    /// The receive task of an ephemeral link's own socket.
    _task: Option<AbortOnDrop>,
}

impl std::fmt::Debug for UdpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpLink")
            .field("local", &self.info.local)
            .field("remote", &self.info.remote)
            .field("max_size", &self.max_size)
            .finish()
    }
}

impl UdpLink {
    pub(crate) fn new(
        shared: Arc<Shared>,
        remote: SocketAddr,
        id: u64,
        max_size: usize,
        rx: crate::queue::Receiver,
    ) -> Self {
        UdpLink {
            info: LinkInfo::new(TransportKind::Udp, shared.local(), remote),
            shared,
            id,
            max_size,
            rx,
            pending: Vec::new(),
            flushing: None,
            _task: None,
        }
    }

    /// A link over a new socket of its own, bound to an ephemeral port (`0.0.0.0:0` or
    /// `[::]:0`) and connected to `remote`.
    pub(crate) async fn ephemeral(
        remote: SocketAddr,
        options: &Options,
        cfg: SockConfig,
        link_queue: usize,
    ) -> Result<UdpLink, Error> {
        let bind: SocketAddr = if remote.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        // One datagram buffer, not a batch: ephemeral links are many and quiet.
        let cfg = SockConfig {
            batched: false,
            ..cfg
        };
        let sock = Arc::new(Sock::bind(bind, Some(remote), cfg)?);
        let max = options.effective_udp_max_size();
        let shared = Shared::new(sock.clone(), link_queue, max);
        let mut link = shared
            .register(remote, max, None)
            .ok_or(Error::Closed(None))?;
        link._task = Some(spawn_receiver(
            shared,
            RecvCtx {
                sock,
                accept: None,
                no_connections: false,
                interceptor: None,
            },
        ));
        Ok(link)
    }

    /// The largest datagram this link sends.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if let Some(fut) = self.flushing.as_mut() {
                let res = ready!(fut.as_mut().poll(cx));
                self.flushing = None;
                res?;
            }
            if self.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let sock = self.shared.sock()?;
            let (to, max) = (self.info.remote, self.max_size);
            if self.pending.len() == 1 {
                // Common case: one datagram, sent at once unless the socket buffer is full.
                match sock.try_send_to(&self.pending[0], to) {
                    Ok(()) => {
                        self.pending.clear();
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        let size = self.pending[0].len();
                        self.pending.clear();
                        return Poll::Ready(Err(send_error(e, size, max, to)));
                    }
                }
            }
            let items = std::mem::take(&mut self.pending);
            self.flushing = Some(Box::pin(async move {
                sock.send_many(&items, to)
                    .await
                    .map_err(|(size, e)| send_error(e, size, max, to))
            }));
        }
    }
}

impl Drop for UdpLink {
    fn drop(&mut self) {
        self.shared.unregister(self.info.remote, self.id);
    }
}

impl Stream for UdpLink {
    type Item = Result<Frame, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|d| Ok(Frame::Binary(d))))
    }
}

impl Sink<Frame> for UdpLink {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.flushing.is_some() || this.pending.len() >= MAX_PENDING {
            this.poll_flush_inner(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), Error> {
        let this = self.get_mut();
        let Some(data) = item.into_data() else {
            return Ok(());
        };
        if data.len() > this.max_size {
            return Err(Error::UdpTooLarge {
                size: data.len(),
                max: this.max_size,
            });
        }
        this.pending.push(data);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_inner(cx)
    }
}

impl Link for UdpLink {
    fn info(&self) -> &LinkInfo {
        &self.info
    }
}
