//! The queue of datagrams from one peer to its link: a bounded single-producer,
//! single-consumer queue under a mutex, far cheaper per datagram than a tokio `mpsc`
//! channel (no semaphore, no block list) and allocating nothing until a datagram is queued.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;

/// Why a datagram was not queued.
pub(crate) enum PushError {
    /// The queue is full: the link is slow.
    Full,
    /// The link is gone (the datagram is handed back).
    Closed(Bytes),
}

struct Inner {
    items: VecDeque<Bytes>,
    /// The link's task, waiting for a datagram.
    waker: Option<Waker>,
    /// The demultiplexing entry is gone: the link's stream ends once the queue is empty.
    sender_gone: bool,
    /// The link is gone.
    receiver_gone: bool,
}

/// The shared queue.
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    cap: usize,
}

/// The listener's end (in the demultiplexing table); dropping it ends the link's stream.
pub(crate) struct Sender(Arc<Queue>);

/// The link's end; dropping it makes pushes fail with [`PushError::Closed`].
pub(crate) struct Receiver(Arc<Queue>);

/// A queue holding at most `cap` datagrams.
pub(crate) fn queue(cap: usize) -> (Sender, Receiver) {
    let q = Arc::new(Queue {
        inner: Mutex::new(Inner {
            items: VecDeque::new(),
            waker: None,
            sender_gone: false,
            receiver_gone: false,
        }),
        cap: cap.max(1),
    });
    (Sender(q.clone()), Receiver(q))
}

impl Sender {
    /// Queues a datagram unless the queue is full or the link gone.
    pub(crate) fn try_push(&self, data: Bytes) -> Result<(), PushError> {
        let waker = {
            let mut q = self.0.inner.lock();
            if q.receiver_gone {
                return Err(PushError::Closed(data));
            }
            if q.items.len() >= self.0.cap {
                return Err(PushError::Full);
            }
            q.items.push_back(data);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut q = self.0.inner.lock();
            q.sender_gone = true;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Receiver {
    /// The next datagram; `None` once the sender is gone and the queue empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut q = self.0.inner.lock();
        if let Some(d) = q.items.pop_front() {
            return Poll::Ready(Some(d));
        }
        if q.sender_gone {
            return Poll::Ready(None);
        }
        match &q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let left = {
            let mut q = self.0.inner.lock();
            q.receiver_gone = true;
            q.waker = None;
            std::mem::take(&mut q.items)
        };
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn bounded_ordered_and_closing() {
        let (tx, mut rx) = queue(2);
        assert!(tx.try_push(Bytes::from_static(b"a")).is_ok());
        assert!(tx.try_push(Bytes::from_static(b"b")).is_ok());
        assert!(matches!(
            tx.try_push(Bytes::from_static(b"c")),
            Err(PushError::Full)
        ));
        assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await.unwrap(), "a");
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(d) = poll_fn(|cx| rx.poll_recv(cx)).await {
                got.push(d);
            }
            got
        });
        tokio::task::yield_now().await;
        assert!(tx.try_push(Bytes::from_static(b"d")).is_ok());
        drop(tx);
        // What was queued before the sender went is still delivered, then the end.
        assert_eq!(waiter.await.unwrap(), vec!["b", "d"]);

        let (tx, rx) = queue(4);
        drop(rx);
        assert!(matches!(
            tx.try_push(Bytes::from_static(b"x")),
            Err(PushError::Closed(d)) if d == "x"
        ));
    }
}
