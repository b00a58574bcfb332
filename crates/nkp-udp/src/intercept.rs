//! The hook that sees every received datagram before demultiplexing (STUN, keep-alives).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use nkp_core::Options;

/// What an interceptor decided about one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intercept {
    /// Not for the interceptor: demultiplex it as usual.
    Pass,
    /// Handled: drop it.
    Consumed,
    /// Handled: send these bytes back to the sender from the listener's socket, and drop
    /// the datagram.
    Reply(Bytes),
}

/// Looks at every datagram a listener receives (bursts included), before it reaches a link
/// or the listener stream. Used by STUN to answer Binding requests on a shared port.
///
/// It runs on the listener's receive task, so it must be quick and must not block.
///
/// ```
/// use std::net::SocketAddr;
/// use bytes::Bytes;
/// use nkp_udp::{DatagramInterceptor, Intercept};
///
/// /// Answers `ping` with `pong`, lets everything else through.
/// struct Pinger;
/// impl DatagramInterceptor for Pinger {
///     fn intercept(&self, data: &[u8], _from: SocketAddr, _local: SocketAddr) -> Intercept {
///         if data == b"ping" { Intercept::Reply(Bytes::from_static(b"pong")) } else { Intercept::Pass }
///     }
/// }
/// let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
/// assert_eq!(Pinger.intercept(b"ping", a, a), Intercept::Reply(Bytes::from_static(b"pong")));
/// ```
pub trait DatagramInterceptor: Send + Sync {
    /// Decides about `data`, received from `from` on the listener bound to `local`.
    fn intercept(&self, data: &[u8], from: SocketAddr, local: SocketAddr) -> Intercept;
}

/// Builds the interceptor of a listener from its options (`None`: no interception), e.g.
/// a STUN responder when `udp_stun_reply` is set.
pub type InterceptorFactory =
    Arc<dyn Fn(&Options) -> Option<Arc<dyn DatagramInterceptor>> + Send + Sync>;
