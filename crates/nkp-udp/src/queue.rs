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

    /// A producer thread pushes while the link's task reads, registering its waker as a
    /// datagram may be arriving, then the producer goes: every datagram that was queued
    /// arrives, in order, and the stream ends (no lost wake-up, no hang).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stress_producer_thread_and_reader_task() {
        const N: u32 = 200_000;
        let (tx, mut rx) = queue(16);
        let producer = std::thread::spawn(move || {
            let mut queued = Vec::new();
            for i in 0..N {
                let mut d = Bytes::copy_from_slice(&i.to_be_bytes());
                loop {
                    match tx.try_push(d) {
                        Ok(()) => {
                            queued.push(i);
                            break;
                        }
                        // Full: drop some, retry others (the listener drops them all).
                        Err(PushError::Full) if i % 3 == 0 => break,
                        Err(PushError::Full) => {
                            std::thread::yield_now();
                            d = Bytes::copy_from_slice(&i.to_be_bytes());
                        }
                        Err(PushError::Closed(_)) => panic!("receiver gone"),
                    }
                }
            }
            queued
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(d) = poll_fn(|cx| rx.poll_recv(cx)).await {
                got.push(u32::from_be_bytes(d[..].try_into().unwrap()));
            }
            got
        });
        let got = match tokio::time::timeout(std::time::Duration::from_secs(120), reader).await {
            Ok(r) => r.unwrap(),
            Err(_) => panic!("hung: the reader did not see every datagram and the end"),
        };
        assert_eq!(got, producer.join().unwrap());
    }

    /// The link goes while the listener pushes: pushes fail with the datagram handed
    /// back, never block, and nothing is kept queued.
    #[test]
    fn receiver_dropped_while_pushing() {
        let (tx, rx) = queue(1 << 20);
        let pusher = std::thread::spawn(move || {
            let mut closed = 0u32;
            for i in 0..100_000u32 {
                if let Err(PushError::Closed(d)) =
                    tx.try_push(Bytes::copy_from_slice(&i.to_be_bytes()))
                {
                    assert_eq!(d.len(), 4);
                    closed += 1;
                }
            }
            (closed, tx)
        });
        std::thread::yield_now();
        drop(rx);
        let (_, tx) = pusher.join().unwrap();
        assert!(matches!(
            tx.try_push(Bytes::from_static(b"z")),
            Err(PushError::Closed(_))
        ));
        assert!(tx.0.inner.lock().items.is_empty());
    }
}
