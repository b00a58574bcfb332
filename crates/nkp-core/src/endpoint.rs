//! A transport plus a socket address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::TransportKind;

/// Where a listener listens or a connection goes: a transport and an ip:port.
///
/// Displayed as `transport:ip:port`, IPv6 in brackets:
///
/// ```
/// use nkp_core::{Endpoint, TransportKind};
/// let e = Endpoint::new(TransportKind::Udp, "[::1]:5060".parse().unwrap());
/// assert_eq!(e.to_string(), "udp:[::1]:5060");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The transport.
    pub transport: TransportKind,
    /// The socket address.
    pub addr: SocketAddr,
}

impl Endpoint {
    /// Builds an endpoint.
    pub const fn new(transport: TransportKind, addr: SocketAddr) -> Self {
        Endpoint { transport, addr }
    }

    /// The IP address.
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}
