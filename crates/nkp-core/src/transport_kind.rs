//! The eight transports and their properties.

use std::fmt;
use std::str::FromStr;

/// One of the transports nkpacket can carry a protocol over.
///
/// Parsed case-insensitively from text:
///
/// ```
/// use nkp_core::TransportKind;
/// assert_eq!("WsS".parse::<TransportKind>().unwrap(), TransportKind::Wss);
/// assert_eq!(TransportKind::Udp.to_string(), "udp");
/// assert!("smtp".parse::<TransportKind>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportKind {
    /// Datagrams; "connections" are per remote ip:port over the listener's socket.
    Udp,
    /// A TCP byte stream, optionally length-prefix framed.
    Tcp,
    /// TCP with TLS.
    Tls,
    /// Kernel SCTP, one association per connection.
    Sctp,
    /// WebSocket over TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// HTTP/1.1 over TCP.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
}

impl TransportKind {
    /// All transports, in the order used by the spec.
    pub const ALL: [TransportKind; 8] = [
        TransportKind::Udp,
        TransportKind::Tcp,
        TransportKind::Tls,
        TransportKind::Sctp,
        TransportKind::Ws,
        TransportKind::Wss,
        TransportKind::Http,
        TransportKind::Https,
    ];

    /// The lower-case name (`"udp"`, `"tls"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Sctp => "sctp",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
            TransportKind::Http => "http",
            TransportKind::Https => "https",
        }
    }

    /// True for the transports that run over TLS (`tls`, `wss`, `https`).
    pub const fn is_secure(self) -> bool {
        matches!(
            self,
            TransportKind::Tls | TransportKind::Wss | TransportKind::Https
        )
    }

    /// True for byte-stream transports, where framing is needed (`tcp`, `tls`).
    pub const fn is_stream(self) -> bool {
        matches!(self, TransportKind::Tcp | TransportKind::Tls)
    }

    /// True for transports that keep message boundaries (`udp`, `sctp`, `ws`, `wss`).
    pub const fn is_message(self) -> bool {
        matches!(
            self,
            TransportKind::Udp | TransportKind::Sctp | TransportKind::Ws | TransportKind::Wss
        )
    }

    /// True for connection-less transports whose "connections" share the listener's socket.
    pub const fn is_datagram(self) -> bool {
        matches!(self, TransportKind::Udp | TransportKind::Sctp)
    }

    /// True for the transports served by the shared HTTP server (`ws`, `wss`, `http`, `https`).
    pub const fn is_http_based(self) -> bool {
        matches!(
            self,
            TransportKind::Ws | TransportKind::Wss | TransportKind::Http | TransportKind::Https
        )
    }

    /// The transport that carries this one: `tls`, `ws`, `http` … run over `tcp`.
    pub const fn carrier(self) -> TransportKind {
        match self {
            TransportKind::Udp => TransportKind::Udp,
            TransportKind::Sctp => TransportKind::Sctp,
            _ => TransportKind::Tcp,
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text did not name one of the eight transports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?} (expected udp, tcp, tls, sctp, ws, wss, http or https)")]
pub struct ParseTransportError(pub String);

impl FromStr for TransportKind {
    type Err = ParseTransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        TransportKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseTransportError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_and_round_trips() {
        for k in TransportKind::ALL {
            assert_eq!(k.as_str().parse::<TransportKind>().unwrap(), k);
            assert_eq!(
                k.as_str().to_uppercase().parse::<TransportKind>().unwrap(),
                k
            );
        }
        assert_eq!(
            "other".parse::<TransportKind>(),
            Err(ParseTransportError("other".into()))
        );
    }

    #[test]
    fn properties() {
        use TransportKind::*;
        let secure: Vec<_> = TransportKind::ALL
            .into_iter()
            .filter(|k| k.is_secure())
            .collect();
        assert_eq!(secure, vec![Tls, Wss, Https]);
        assert!(Tcp.is_stream() && Tls.is_stream() && !Ws.is_stream());
        assert!(Udp.is_message() && Sctp.is_message() && Ws.is_message() && !Http.is_message());
        assert_eq!(Wss.carrier(), Tcp);
        assert_eq!(Udp.carrier(), Udp);
    }
}
