//! One association as a link.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::sync::mpsc;

use nkp_core::{Error, Frame, Link, LinkInfo, TransportKind};

use crate::listener::{AbortOnDrop, Shared, Streams};
use crate::sys::{self, AssocId};

/// Messages buffered by the sink before `poll_ready` flushes them.
const MAX_PENDING: usize = 64;

/// One SCTP association as a [`Link`]: its stream yields each message from the peer as
/// one [`Frame::Binary`] (boundaries kept, whatever the size), its sink sends each data
/// frame as one message on stream 0, in order (text as its UTF-8 bytes; ping, pong and
/// close frames are ignored).
///
/// The stream ends (`None`) when the association ends: the peer shut it down or aborted
/// it, or the listener stopped. A message larger than `max_message_size` yields
/// [`Error::MessageTooLarge`] instead. Closing the sink, or dropping the link, shuts the
/// association down gracefully (`SCTP_EOF`: data already sent is still delivered).
pub struct SctpLink {
    info: LinkInfo,
    shared: Arc<Shared>,
    assoc: AssocId,
    id: u64,
    streams: Streams,
    rx: mpsc::Receiver<Result<Bytes, Error>>,
    pending: VecDeque<Bytes>,
    released: bool,
    /// The receive task of a link's own socket (outbound links made without a listener).
    task: Option<AbortOnDrop>,
}

impl std::fmt::Debug for SctpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SctpLink")
            .field("local", &self.info.local)
            .field("remote", &self.info.remote)
            .field("assoc", &self.assoc)
            .field("streams", &self.streams)
            .finish()
    }
}

impl SctpLink {
    pub(crate) fn new(
        shared: Arc<Shared>,
        assoc: AssocId,
        id: u64,
        remote: SocketAddr,
        streams: Streams,
        rx: mpsc::Receiver<Result<Bytes, Error>>,
    ) -> Self {
        SctpLink {
            info: LinkInfo::new(TransportKind::Sctp, shared.local(), remote),
            shared,
            assoc,
            id,
            streams,
            rx,
            pending: VecDeque::new(),
            released: false,
            task: None,
        }
    }

    /// Makes the link own its socket's receive task (a link without a listener).
    pub(crate) fn with_task(mut self, task: AbortOnDrop) -> Self {
        self.task = Some(task);
        self
    }

    /// The peer's address (its primary address when multi-homed).
    pub fn remote(&self) -> SocketAddr {
        self.info.remote
    }

    /// The local address: the listener's (or the link's own socket's).
    pub fn local(&self) -> SocketAddr {
        self.info.local
    }

    /// The kernel's association id.
    pub fn association_id(&self) -> i32 {
        self.assoc
    }

    /// The stream counts negotiated for the association (zero when the association came
    /// up before the link's socket saw it, which does not happen in practice).
    pub fn streams(&self) -> Streams {
        self.streams
    }

    /// Ends the link's claim on the association and shuts it down gracefully if it is
    /// still up (once).
    fn release(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        if self.shared.release(self.assoc, self.id)
            && let Ok(sock) = self.shared.sock()
        {
            tracing::debug!(assoc = self.assoc, remote = %self.info.remote, "SCTP association shutdown");
            sock.signal(self.assoc, sys::SCTP_EOF);
        }
        self.rx.close();
    }

    fn send_error(&self, e: std::io::Error, size: usize) -> Error {
        match e.raw_os_error() {
            Some(libc::EPIPE | libc::EINVAL | libc::ENOTCONN | libc::ESHUTDOWN) => {
                Error::Closed(Some(format!("the SCTP association ended ({e})")))
            }
            Some(libc::EMSGSIZE) => Error::MessageTooLarge {
                size,
                // The kernel refuses messages larger than the socket's send buffer.
                max: self
                    .shared
                    .sock()
                    .ok()
                    .and_then(|s| s.fd.get_ref().send_buffer_size().ok())
                    .unwrap_or(0),
            },
            _ => Error::io("send", Some(self.info.remote), e),
        }
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if self.released {
            self.pending.clear();
            return Poll::Ready(Err(Error::Closed(Some("the SCTP link was closed".into()))));
        }
        let sock = self.shared.sock()?;
        while let Some(data) = self.pending.front() {
            let mut guard = ready!(sock.fd.poll_write_ready(cx))
                .map_err(|e| Error::io("send", Some(self.info.remote), e))?;
            match guard.try_io(|s| sys::send(s.get_ref().as_fd(), self.assoc, data, 0)) {
                Ok(Ok(_)) => {
                    self.pending.pop_front();
                }
                Ok(Err(e)) => {
                    let size = data.len();
                    self.pending.clear();
                    return Poll::Ready(Err(self.send_error(e, size)));
                }
                Err(_would_block) => continue,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SctpLink {
    fn drop(&mut self) {
        self.release();
    }
}

impl Stream for SctpLink {
    type Item = Result<Frame, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(Frame::Binary)))
    }
}

impl Sink<Frame> for SctpLink {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.pending.len() >= MAX_PENDING {
            this.poll_flush_inner(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), Error> {
        let this = self.get_mut();
        if this.released {
            return Err(Error::Closed(Some("the SCTP link was closed".into())));
        }
        if let Some(data) = item.into_data() {
            this.pending.push_back(data);
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        let res = ready!(this.poll_flush_inner(cx));
        this.release();
        Poll::Ready(res)
    }
}

impl Link for SctpLink {
    fn info(&self) -> &LinkInfo {
        &self.info
    }
}
