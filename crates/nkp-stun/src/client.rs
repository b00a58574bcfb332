//! The STUN client side: the RFC 5389 §7.2.1 retransmission schedule as a pure value
//! ([`Retransmit`]), request and response helpers, a transaction table that matches
//! responses arriving on a *shared* listener socket ([`Transactions`]), and the async
//! queries built on them ([`query`], [`query_with`], [`discover_external`]).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use nkp_core::Error;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use crate::codec::{Class, HEADER_LEN, MAGIC_COOKIE, Message, Method, TransactionId, is_stun};
use crate::server::is_transient;

/// Default T1 (`udp_stun_t1`): 500 ms.
pub const DEFAULT_T1: Duration = nkp_core::options::defaults::UDP_STUN_T1;

/// The transmissions of one transaction: 5 in total.
const TRANSMISSIONS: u32 = 5;

/// What to do next in a client transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// (Re)transmit the request at `at` after the start of the transaction.
    Send {
        /// Offset from the first transmission.
        at: Duration,
    },
    /// If no response came by `at` after the start, the transaction has failed.
    GiveUp {
        /// Offset from the first transmission.
        at: Duration,
    },
}

/// The client retransmission schedule (RFC 5389 §7.2.1, as NkPACKET): the request is sent at
/// 0, then again after T1, the interval doubling each time while it stays at most 16·T1, and
/// the transaction fails 16·T1 after the last one. That is sends at 0, T1, 3·T1, 7·T1, 15·T1
/// and failure at 31·T1: 0, 0.5, 1.5, 3.5, 7.5 s and 15.5 s with the default T1 of 500 ms.
///
/// A pure value: no clock, no I/O. After [`Step::GiveUp`] every call returns the same
/// [`Step::GiveUp`].
///
/// ```
/// use std::time::Duration;
/// use nkp_stun::{Retransmit, Step};
///
/// let ms = Duration::from_millis;
/// let mut r = Retransmit::new(ms(500));
/// let steps: Vec<Step> = std::iter::from_fn(|| Some(r.next_step())).take(6).collect();
/// assert_eq!(steps, [
///     Step::Send { at: ms(0) }, Step::Send { at: ms(500) }, Step::Send { at: ms(1500) },
///     Step::Send { at: ms(3500) }, Step::Send { at: ms(7500) }, Step::GiveUp { at: ms(15500) },
/// ]);
/// assert_eq!(r.next_step(), Step::GiveUp { at: ms(15500) });
/// ```
#[derive(Clone, Debug)]
pub struct Retransmit {
    t1: Duration,
    sent: u32,
}

impl Retransmit {
    /// A schedule with base interval `t1` (a zero `t1` is raised to 1 ms).
    pub fn new(t1: Duration) -> Self {
        Retransmit {
            t1: t1.max(Duration::from_millis(1)),
            sent: 0,
        }
    }

    /// The base interval T1.
    pub fn t1(&self) -> Duration {
        self.t1
    }

    /// How many [`Step::Send`] were returned so far.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// The next step.
    pub fn next_step(&mut self) -> Step {
        // The n-th transmission (0-based) is at (2^n - 1)·T1; failure comes at (2^5 - 1)·T1.
        let at = |n: u32| self.t1.saturating_mul((1u32 << n) - 1);
        if self.sent < TRANSMISSIONS {
            let step = Step::Send { at: at(self.sent) };
            self.sent += 1;
            step
        } else {
            Step::GiveUp {
                at: at(TRANSMISSIONS),
            }
        }
    }
}

/// The 20-byte Binding request with this transaction id (no attributes).
fn request_bytes(tid: &TransactionId) -> Bytes {
    let mut buf = Vec::with_capacity(HEADER_LEN);
    buf.put_u16(0x0001);
    buf.put_u16(0);
    buf.put_u32(MAGIC_COOKIE);
    buf.put_slice(tid.as_bytes());
    Bytes::from(buf)
}

/// A new Binding request: a random transaction id and the 20-byte message (type 0x0001,
/// length 0, no attributes), as NkPACKET sends.
///
/// ```
/// let (tid, bytes) = nkp_stun::binding_request();
/// assert_eq!(bytes.len(), 20);
/// assert_eq!(&bytes[..4], &[0x00, 0x01, 0x00, 0x00]);
/// assert_eq!(&bytes[8..], tid.as_bytes());
/// ```
pub fn binding_request() -> (TransactionId, Bytes) {
    let tid = TransactionId::random();
    (tid, request_bytes(&tid))
}

/// The reflexive address of a Binding response for `expected`: XOR-MAPPED-ADDRESS if
/// present, else MAPPED-ADDRESS.
///
/// Errors ([`Error::Protocol`]): not a valid STUN message, another transaction, not a
/// Binding response, an error response (`"STUN error response 420 Unknown Attribute"`),
/// or no address attribute.
///
/// ```
/// let (tid, request) = nkp_stun::binding_request();
/// let from = "192.0.2.1:32853".parse().unwrap();
/// let answer = nkp_stun::respond(&request, from).unwrap();
/// assert_eq!(nkp_stun::parse_binding_response(&answer, tid).unwrap(), from);
///
/// let other = nkp_stun::binding_request().0;
/// assert!(nkp_stun::parse_binding_response(&answer, other).is_err());
/// ```
pub fn parse_binding_response(data: &[u8], expected: TransactionId) -> Result<SocketAddr, Error> {
    let msg = Message::decode(data)?;
    if msg.transaction_id != expected {
        return Err(Error::Protocol(format!(
            "STUN: response for transaction {}, expected {expected}",
            msg.transaction_id
        )));
    }
    response_result(&msg)
}

/// The outcome carried by a Binding response (success or error).
fn response_result(msg: &Message) -> Result<SocketAddr, Error> {
    if msg.method != Method::BINDING {
        return Err(Error::Protocol(format!(
            "STUN: method {:#05x} is not Binding",
            msg.method.value()
        )));
    }
    match msg.class {
        Class::SuccessResponse => msg.mapped_address().ok_or_else(|| {
            Error::Protocol("STUN: Binding response without a mapped address".into())
        }),
        Class::ErrorResponse => Err(match msg.error_code() {
            Some((code, reason)) => Error::Protocol(format!("STUN error response {code} {reason}")),
            None => Error::Protocol("STUN error response without ERROR-CODE".into()),
        }),
        Class::Request | Class::Indication => {
            Err(Error::Protocol("STUN: expected a Binding response".into()))
        }
    }
}

type Outcome = Result<SocketAddr, Error>;

/// How many finished transaction ids are remembered, so that late duplicate responses (one
/// per retransmission) are still recognised and consumed.
const RECENT: usize = 64;

#[derive(Default)]
struct Table {
    pending: HashMap<TransactionId, oneshot::Sender<Outcome>>,
    recent: VecDeque<TransactionId>,
    closed: bool,
}

impl Table {
    fn remember(&mut self, tid: TransactionId) {
        if !self.recent.contains(&tid) {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(tid);
        }
    }
}

/// The pending client transactions of one socket, so that Binding responses arriving on a
/// socket shared with other traffic (a UDP listener) reach the task waiting for them.
///
/// Cheap to clone (a shared handle). The socket's receive path calls
/// [`Transactions::on_datagram`] for every datagram; a client [`register`](Self::register)s a
/// transaction, sends the request bytes (again on each retransmission) and awaits the
/// [`PendingResponse`]. Dropping the `PendingResponse` (a timeout, a cancelled task) removes the
/// transaction; responses arriving afterwards, and duplicates, are consumed and dropped, never a
/// panic.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let table = nkp_stun::Transactions::new();
/// let (tid, request, pending) = table.register();
///
/// // ... request sent from the shared socket; the server answers:
/// let me = "198.51.100.4:5060".parse().unwrap();
/// let answer = nkp_stun::respond(&request, me).unwrap();
/// let server = "192.0.2.9:3478".parse().unwrap();
/// assert!(table.on_datagram(&answer, server)); // consumed: it was ours
/// assert_eq!(pending.await.unwrap(), me);
///
/// assert!(table.on_datagram(&answer, server)); // a late duplicate: consumed, dropped
/// assert!(!table.on_datagram(b"protocol data", server)); // not ours: for the protocol
/// # let _ = tid;
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Transactions {
    table: Arc<Mutex<Table>>,
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions")
            .field("pending", &self.pending())
            .finish()
    }
}

impl Transactions {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere while holding the lock leaves a consistent table: keep going.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a transaction: a fresh transaction id, the Binding request bytes to send (and
    /// resend), and the future of its outcome.
    pub fn register(&self) -> (TransactionId, Bytes, PendingResponse) {
        let tid = TransactionId::random();
        let (tx, rx) = oneshot::channel();
        let mut table = self.lock();
        if !table.closed {
            // The sender is dropped right away on a closed table: the receiver then fails.
            table.pending.insert(tid, tx);
        }
        drop(table);
        let pending = PendingResponse {
            tid,
            rx,
            transactions: self.clone(),
        };
        (tid, request_bytes(&tid), pending)
    }

    /// Offers a datagram received from `from`. Returns `true` when it was a Binding response
    /// (success or error) for a pending or recently finished transaction: it is consumed (the
    /// waiting client gets its outcome; a late or duplicate one is dropped). Anything else —
    /// not STUN, another class or method, an unknown transaction, a FINGERPRINT mismatch —
    /// returns `false` and belongs to the protocol.
    pub fn on_datagram(&self, data: &[u8], from: SocketAddr) -> bool {
        if !is_stun(data) {
            return false;
        }
        let Ok(msg) = Message::decode(data) else {
            return false;
        };
        if msg.method != Method::BINDING
            || !matches!(msg.class, Class::SuccessResponse | Class::ErrorResponse)
        {
            return false;
        }
        let tid = msg.transaction_id;
        let mut table = self.lock();
        match table.pending.remove(&tid) {
            Some(tx) => {
                table.remember(tid);
                drop(table);
                tracing::debug!(%from, %tid, "STUN response matched");
                // The waiter may have gone in the meantime: nothing to do then.
                let _ = tx.send(response_result(&msg));
                true
            }
            None if table.recent.contains(&tid) => {
                tracing::debug!(%from, %tid, "late STUN response dropped");
                true
            }
            None => false,
        }
    }

    /// Number of transactions waiting for a response.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Fails every pending transaction with [`Error::Closed`] and refuses new ones (they fail
    /// at once): for a listener that stops.
    pub fn close(&self) {
        let mut table = self.lock();
        table.closed = true;
        let pending: Vec<_> = table.pending.drain().collect();
        drop(table);
        for (_, tx) in pending {
            let _ = tx.send(Err(closed()));
        }
    }

    fn finish(&self, tid: TransactionId) {
        let mut table = self.lock();
        if table.pending.remove(&tid).is_some() {
            table.remember(tid);
        }
    }
}

fn closed() -> Error {
    Error::Closed(Some("the STUN transaction table was closed".into()))
}

/// The outcome of a registered transaction: a future of the mapped address (or the error
/// response). Dropping it ends the transaction.
#[derive(Debug)]
pub struct PendingResponse {
    tid: TransactionId,
    rx: oneshot::Receiver<Outcome>,
    transactions: Transactions,
}

impl PendingResponse {
    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.tid
    }
}

impl Future for PendingResponse {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|received| received.unwrap_or_else(|_| Err(closed())))
    }
}

impl Drop for PendingResponse {
    fn drop(&mut self) {
        self.transactions.finish(self.tid);
    }
}

/// Runs the retransmission schedule: `send` at each [`Step::Send`], until `outcome` is ready
/// or the schedule gives up. A send error ends the transaction at once.
async fn drive<S, SF, W>(t1: Duration, mut send: S, outcome: W) -> Outcome
where
    S: FnMut() -> SF,
    SF: Future<Output = Result<(), Error>>,
    W: Future<Output = Outcome>,
{
    let start = Instant::now();
    let mut schedule = Retransmit::new(t1);
    let mut outcome = pin!(outcome);
    loop {
        match schedule.next_step() {
            Step::Send { at } => {
                tokio::select! {
                    biased;
                    result = &mut outcome => return result,
                    () = sleep_until(start + at) => {}
                }
                send().await?;
            }
            Step::GiveUp { at } => {
                tokio::select! {
                    biased;
                    result = &mut outcome => return result,
                    () = sleep_until(start + at) => {
                        return Err(Error::Timeout { op: "stun binding", after: at });
                    }
                }
            }
        }
    }
}

/// A Binding query sent with `send` (for instance from a UDP listener's shared socket) whose
/// response the socket's receive path hands to `transactions`
/// ([`Transactions::on_datagram`]). Retransmits on the [`Retransmit`] schedule with base
/// `t1`; fails with [`Error::Timeout`] (`op` `"stun binding"`) after 31·T1, or at once with the
/// error of a failed `send`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use bytes::Bytes;
/// use nkp_stun::Transactions;
///
/// // A stand-in for a listener socket: the "network" answers at once.
/// let table = Transactions::new();
/// let me = "203.0.113.5:5060".parse().unwrap();
/// let send = |request: Bytes| {
///     let answer = nkp_stun::respond(&request, me).unwrap();
///     table.on_datagram(&answer, "192.0.2.1:3478".parse().unwrap());
///     async { Ok(()) }
/// };
/// let mapped = nkp_stun::query_with(send, &table, Duration::from_millis(500)).await;
/// assert_eq!(mapped.unwrap(), me);
/// # }
/// ```
pub async fn query_with<F, Fut>(send: F, transactions: &Transactions, t1: Duration) -> Outcome
where
    F: Fn(Bytes) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let (tid, request, pending) = transactions.register();
    tracing::debug!(%tid, "STUN Binding query");
    drive(t1, || send(request.clone()), pending).await
}

/// A Binding query to `server` from a plain (not shared) UDP socket: the mapped address of
/// `socket` as `server` sees it. Retransmits on the [`Retransmit`] schedule with base `t1`
/// ([`DEFAULT_T1`] is 500 ms) and fails with [`Error::Timeout`] (`op` `"stun binding"`) after
/// 31·T1. Datagrams other than the response are read and dropped.
///
/// See [`serve`](crate::serve) for an example.
pub async fn query(socket: &UdpSocket, server: SocketAddr, t1: Duration) -> Outcome {
    let transactions = Transactions::new();
    let receive = async {
        let mut buf = vec![0u8; 2048];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    if let Some(datagram) = buf.get(..n)
                        && !transactions.on_datagram(datagram, from)
                    {
                        tracing::trace!(%from, len = n, "non-STUN datagram dropped");
                    }
                }
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(Error::io("stun receive", socket.local_addr().ok(), e)),
            }
        }
    };
    let send = |request: Bytes| async move {
        socket
            .send_to(&request, server)
            .await
            .map(drop)
            .map_err(|e| Error::io("stun send", Some(server), e))
    };
    // Receive first: a response already in the socket wins over a retransmission due now.
    tokio::select! {
        biased;
        failed = receive => failed,
        outcome = query_with(send, &transactions, t1) => outcome,
    }
}

/// Discovers the external (server-reflexive) address by asking each STUN server in turn,
/// from a fresh UDP socket on an ephemeral port, until one answers. Opt-in and lazy: call it
/// when the address is needed, never at start-up (the public servers NkPACKET listed are
/// mostly gone). Returns the last error when none answers ([`Error::NoTransports`] for an
/// empty list).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// let addr = server.local_addr().unwrap();
/// tokio::spawn(nkp_stun::serve(server));
/// let mapped = nkp_stun::discover_external(&[addr], Duration::from_millis(500)).await.unwrap();
/// assert!(mapped.ip().is_loopback());
/// # }
/// ```
pub async fn discover_external(servers: &[SocketAddr], t1: Duration) -> Outcome {
    let mut last = Error::NoTransports;
    for &server in servers {
        let bind = if server.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        let socket = match UdpSocket::bind(bind).await {
            Ok(socket) => socket,
            Err(e) => {
                last = Error::io("bind", Some(bind), e);
                continue;
            }
        };
        match query(&socket, server, t1).await {
            Ok(mapped) => return Ok(mapped),
            Err(e) => {
                tracing::debug!(%server, error = %e, "STUN server did not answer");
                last = e;
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const T1: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn schedule_is_exact() {
        for t1 in [ms(500), ms(100), ms(1), ms(3000)] {
            let mut r = Retransmit::new(t1);
            assert_eq!(r.t1(), t1);
            for k in [0, 1, 3, 7, 15] {
                assert_eq!(r.next_step(), Step::Send { at: t1 * k });
            }
            assert_eq!(r.sent(), 5);
            for _ in 0..3 {
                assert_eq!(r.next_step(), Step::GiveUp { at: t1 * 31 });
            }
            assert_eq!(r.sent(), 5);
        }
        // Degenerate configurations stay sane.
        let mut r = Retransmit::new(Duration::ZERO);
        assert_eq!(r.t1(), ms(1));
        assert_eq!(r.next_step(), Step::Send { at: Duration::ZERO });
        let mut r = Retransmit::new(Duration::MAX);
        r.next_step();
        assert_eq!(r.next_step(), Step::Send { at: Duration::MAX });
    }

    #[test]
    fn binding_request_is_20_bytes_with_a_fresh_id() {
        let (tid, bytes) = binding_request();
        assert_eq!(bytes.len(), 20);
        let msg = Message::decode(&bytes).unwrap();
        assert_eq!(msg, Message::new(Class::Request, Method::BINDING, tid));
        assert_ne!(binding_request().0, tid);
    }

    #[test]
    fn parse_prefers_xor_mapped_address() {
        let tid = TransactionId::random();
        let xor: SocketAddr = "203.0.113.1:1000".parse().unwrap();
        let plain: SocketAddr = "198.51.100.1:2000".parse().unwrap();
        let mut m = Message::new(Class::SuccessResponse, Method::BINDING, tid);
        m.attributes = vec![
            crate::Attribute::MappedAddress(plain),
            crate::Attribute::XorMappedAddress(xor),
        ];
        assert_eq!(
            parse_binding_response(&m.encode().unwrap(), tid).unwrap(),
            xor
        );
        m.attributes.remove(1);
        assert_eq!(
            parse_binding_response(&m.encode().unwrap(), tid).unwrap(),
            plain
        );
        m.attributes.clear();
        assert!(parse_binding_response(&m.encode().unwrap(), tid).is_err());
        m.class = Class::ErrorResponse;
        assert!(parse_binding_response(&m.encode().unwrap(), tid).is_err());
        m.class = Class::Request;
        assert!(parse_binding_response(&m.encode().unwrap(), tid).is_err());
        assert!(parse_binding_response(b"junk", tid).is_err());
    }

    #[tokio::test]
    async fn transactions_match_only_their_own_responses() {
        let table = Transactions::new();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let me: SocketAddr = "[2001:db8::5]:5060".parse().unwrap();
        let (tid_a, req_a, pending_a) = table.register();
        let (tid_b, req_b, pending_b) = table.register();
        assert_ne!(tid_a, tid_b);
        assert_eq!(table.pending(), 2);

        // Requests, foreign responses and protocol data are not ours.
        assert!(!table.on_datagram(&req_a, server));
        assert!(!table.on_datagram(b"SIP/2.0 200 OK\r\n", server));
        let (_, foreign) = binding_request();
        assert!(!table.on_datagram(&crate::respond(&foreign, me).unwrap(), server));

        let answer_b = crate::respond(&req_b, me).unwrap();
        assert!(table.on_datagram(&answer_b, server));
        assert_eq!(pending_b.await.unwrap(), me);
        assert_eq!(table.pending(), 1);
        // A duplicate of it (an answer to a retransmission) is consumed quietly.
        assert!(table.on_datagram(&answer_b, server));

        // An error response completes the transaction with the error.
        let mut err = Message::new(Class::ErrorResponse, Method::BINDING, tid_a);
        err.attributes.push(crate::Attribute::ErrorCode {
            code: 500,
            reason: "Server Error".into(),
        });
        assert!(table.on_datagram(&err.encode().unwrap(), server));
        let e = pending_a.await.unwrap_err();
        assert!(e.to_string().contains("500 Server Error"), "{e}");
        assert_eq!(table.pending(), 0);
    }

    #[test]
    fn late_responses_after_the_waiter_left_never_panic() {
        let table = Transactions::new();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let (_, req, pending) = table.register();
        drop(pending); // timed out
        assert_eq!(table.pending(), 0);
        let answer = crate::respond(&req, server).unwrap();
        assert!(table.on_datagram(&answer, server));
        assert!(table.on_datagram(&answer, server));

        // The remembered set is bounded; the oldest are forgotten.
        let first = {
            let (_, req, pending) = table.register();
            drop(pending);
            crate::respond(&req, server).unwrap()
        };
        for _ in 0..RECENT {
            drop(table.register().2);
        }
        assert!(!table.on_datagram(&first, server));
        assert_eq!(table.lock().recent.len(), RECENT);
    }

    #[tokio::test]
    async fn close_fails_waiters_and_new_transactions() {
        let table = Transactions::new();
        let (_, _, pending) = table.register();
        table.close();
        assert!(matches!(pending.await, Err(Error::Closed(_))));
        let (_, _, pending) = table.register();
        assert!(matches!(pending.await, Err(Error::Closed(_))));
        assert_eq!(table.pending(), 0);
    }

    /// A server that never answers: 5 sends at 0, T1, 3·T1, 7·T1, 15·T1, failure at 31·T1.
    #[tokio::test(start_paused = true)]
    async fn schedule_under_a_paused_clock_without_answer() {
        let table = Transactions::new();
        let start = Instant::now();
        let sends = RefCell::new(Vec::new());
        let send = |_request: Bytes| {
            sends.borrow_mut().push(start.elapsed());
            async { Ok(()) }
        };
        let err = query_with(send, &table, T1).await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { op: "stun binding", after } if after == T1 * 31),
            "{err:?}"
        );
        assert_eq!(start.elapsed(), T1 * 31);
        assert_eq!(
            *sends.borrow(),
            [Duration::ZERO, T1, T1 * 3, T1 * 7, T1 * 15]
        );
        assert_eq!(table.pending(), 0);
    }

    /// A server that answers only the third retransmission (the 4th send, at 7·T1).
    #[tokio::test(start_paused = true)]
    async fn answer_to_the_third_retransmission() {
        let table = Transactions::new();
        let start = Instant::now();
        let me: SocketAddr = "198.51.100.7:4000".parse().unwrap();
        let sends = RefCell::new(Vec::new());
        let send = |request: Bytes| {
            sends.borrow_mut().push(start.elapsed());
            if sends.borrow().len() == 4 {
                let answer = crate::respond(&request, me).unwrap();
                assert!(table.on_datagram(&answer, "192.0.2.1:3478".parse().unwrap()));
            }
            async { Ok(()) }
        };
        assert_eq!(query_with(send, &table, T1).await.unwrap(), me);
        assert_eq!(start.elapsed(), T1 * 7);
        assert_eq!(*sends.borrow(), [Duration::ZERO, T1, T1 * 3, T1 * 7]);
    }

    /// The caller's own timeout expiring before the schedule ends (the original crashed), then
    /// the late response and the late retransmission timers: nothing breaks.
    #[tokio::test(start_paused = true)]
    async fn caller_timeout_then_late_response() {
        let table = Transactions::new();
        let last = RefCell::new(Bytes::new());
        let send = |request: Bytes| {
            *last.borrow_mut() = request;
            async { Ok(()) }
        };
        let cut = tokio::time::timeout(T1 * 2, query_with(send, &table, T1)).await;
        assert!(cut.is_err());
        assert_eq!(table.pending(), 0);
        tokio::time::sleep(T1 * 40).await;
        let answer = crate::respond(&last.borrow(), "127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(table.on_datagram(&answer, "127.0.0.1:3478".parse().unwrap()));
        assert_eq!(table.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_error_fails_at_once() {
        let table = Transactions::new();
        let start = Instant::now();
        let calls = RefCell::new(0);
        let send = |_request: Bytes| {
            *calls.borrow_mut() += 1;
            let n = *calls.borrow();
            async move {
                if n == 2 {
                    Err(Error::io(
                        "stun send",
                        None,
                        std::io::ErrorKind::NetworkUnreachable.into(),
                    ))
                } else {
                    Ok(())
                }
            }
        };
        let err = query_with(send, &table, T1).await.unwrap_err();
        assert_eq!(err.code(), "io_error");
        assert_eq!(start.elapsed(), T1);
        assert_eq!(*calls.borrow(), 2);
        assert_eq!(table.pending(), 0);
    }
}
