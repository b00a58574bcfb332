//! The one error type of nkpacket.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::TransportKind;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a listen, connect, send or resolve operation can report.
///
/// The variants follow the error values of the original NkPACKET (`no_transports`,
/// `udp_too_large`, `{syntax_error, Key}`, ...), each with the context needed to act on it.
///
/// ```
/// use nkp_core::Error;
/// let e = Error::Syntax { key: "idle_timeout".into(), value: "soon".into(), expected: "a whole number of milliseconds" };
/// assert_eq!(e.to_string(), "invalid value \"soon\" for option idle_timeout: expected a whole number of milliseconds");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing to send to: the destination list was empty or every entry was skipped.
    #[error("no transports: no destination could be used")]
    NoTransports,
    /// Port 0 and the protocol has no default port for this transport.
    #[error("no port given and the protocol has no default port for {0}")]
    InvalidDefaultPort(TransportKind),
    /// A UDP or SCTP send needs a listener of the same domain, protocol and IP family.
    #[error("no {transport} listener to send from (domain {domain:?}, {family})")]
    NoListeningTransport {
        /// The transport that was asked for.
        transport: TransportKind,
        /// The domain searched.
        domain: String,
        /// `"IPv4"` or `"IPv6"`.
        family: &'static str,
    },
    /// The encoded datagram is larger than `udp_max_size` (or the OS refused it as too big).
    #[error("datagram of {size} bytes is larger than udp_max_size {max}")]
    UdpTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// A frame exceeded the configured maximum message size.
    #[error("message of {size} bytes exceeds the maximum of {max}")]
    MessageTooLarge {
        /// Declared or actual size.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The global or per-listener connection cap was reached.
    #[error("maximum number of connections ({limit}) reached")]
    MaxConnections {
        /// The cap.
        limit: usize,
    },
    /// Protocol code tried to send through its own connection's handle (use a reply).
    #[error("a connection cannot send to itself through its handle; return a reply instead")]
    SameProcess,
    /// The connection or listener is gone (stopped, or its task ended).
    #[error("the connection is no longer running")]
    NoProcess,
    /// The protocol could not encode the message.
    #[error("encode error: {0}")]
    Encode(String),
    /// The URI (or spec) could not be parsed.
    #[error("invalid URI {uri:?}: {reason}")]
    InvalidUri {
        /// The text given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The transport is unknown, or not accepted by the protocol for this scheme.
    #[error("invalid transport {0:?}")]
    InvalidTransport(String),
    /// The scheme is not usable (the protocol rejected it).
    #[error("invalid scheme {0:?}")]
    InvalidScheme(String),
    /// An option had a value of the wrong type or range.
    #[error("invalid value {value:?} for option {key}: expected {expected}")]
    Syntax {
        /// The option name.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An option name that nkpacket (and the protocol) do not know.
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    /// A listener spec resolved to no address.
    #[error("the listener spec resolved to no address")]
    NoListener,
    /// A listener spec resolved to more than one address.
    #[error("the listener spec resolved to {0} addresses; a listener needs exactly one")]
    MultipleListeners(usize),
    /// A listener with the same id and address is already running.
    #[error("listener {id:?} on {endpoint} is already started")]
    AlreadyStarted {
        /// Listener id.
        id: String,
        /// Its endpoint text.
        endpoint: String,
    },
    /// A WS/HTTP listener could not join the shared server on its port.
    #[error("cannot share port: {0}")]
    SharedFailed(String),
    /// The connection was closed (by the peer, or during a handshake).
    #[error("connection closed{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
    /// An operation did not finish in time.
    #[error("{op} timed out after {} ms", .after.as_millis())]
    Timeout {
        /// What was being done (`"connect"`, `"send"`, ...).
        op: &'static str,
        /// The limit that expired.
        after: Duration,
    },
    /// A socket operation failed.
    #[error("{op}{}: {source}", .addr.map(|a| format!(" {a}")).unwrap_or_default())]
    Io {
        /// What was being done (`"bind"`, `"connect"`, `"send"`, ...).
        op: &'static str,
        /// The address involved, if any.
        addr: Option<SocketAddr>,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No listener has this id.
    #[error("no listener with id {0:?}")]
    IdNotFound(String),
    /// Several listeners share this id where one was expected.
    #[error("several listeners have id {0:?}")]
    MultipleIds(String),
    /// The transport is not available (not compiled in, or not supported by the OS).
    #[error("{0}")]
    Unsupported(String),
    /// Name resolution failed.
    #[error("DNS: {0}")]
    Dns(String),
    /// A TLS configuration or handshake problem.
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer broke the transport's protocol (bad frame, bad handshake, ...).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The user's protocol code panicked.
    #[error("protocol callback {0} panicked")]
    Panic(&'static str),
}

impl From<io::Error> for Error {
    /// An I/O error on an established stream (the framing codecs need this conversion).
    fn from(source: io::Error) -> Self {
        Error::Io {
            op: "stream",
            addr: None,
            source,
        }
    }
}

impl Error {
    /// Wraps an I/O error with the operation and address it came from.
    pub fn io(op: &'static str, addr: Option<SocketAddr>, source: io::Error) -> Self {
        Error::Io { op, addr, source }
    }

    /// The OS error kind, for [`Error::Io`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// A short stable name for the error, as the original's error atoms
    /// (`"no_transports"`, `"udp_too_large"`, `"econnrefused"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoTransports => "no_transports",
            Error::InvalidDefaultPort(_) => "invalid_default_port",
            Error::NoListeningTransport { .. } => "no_listening_transport",
            Error::UdpTooLarge { .. } => "udp_too_large",
            Error::MessageTooLarge { .. } => "message_too_large",
            Error::MaxConnections { .. } => "max_connections",
            Error::SameProcess => "same_process",
            Error::NoProcess => "no_process",
            Error::Encode(_) => "encode_error",
            Error::InvalidUri { .. } => "invalid_uri",
            Error::InvalidTransport(_) => "invalid_transport",
            Error::InvalidScheme(_) => "invalid_scheme",
            Error::Syntax { .. } => "syntax_error",
            Error::UnknownOption(_) => "unknown_option",
            Error::NoListener => "no_listener",
            Error::MultipleListeners(_) => "multiple_listeners",
            Error::AlreadyStarted { .. } => "already_started",
            Error::SharedFailed(_) => "shared_failed",
            Error::Closed(_) => "closed",
            Error::Timeout { .. } => "timeout",
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::ConnectionRefused => "econnrefused",
                io::ErrorKind::AddrInUse => "eaddrinuse",
                io::ErrorKind::AddrNotAvailable => "eaddrnotavail",
                io::ErrorKind::ConnectionReset => "econnreset",
                io::ErrorKind::TimedOut => "timeout",
                io::ErrorKind::PermissionDenied => "eacces",
                _ => "io_error",
            },
            Error::IdNotFound(_) => "id_not_found",
            Error::MultipleIds(_) => "multiple_pids",
            Error::Unsupported(_) => "unsupported",
            Error::Dns(_) => "dns_error",
            Error::Tls(_) => "tls_error",
            Error::Protocol(_) => "protocol_error",
            Error::Panic(_) => "panic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_codes_follow_the_os_error() {
        let e = Error::io(
            "connect",
            Some("127.0.0.1:1".parse().unwrap()),
            io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(e.code(), "econnrefused");
        assert!(e.to_string().starts_with("connect 127.0.0.1:1: "));
        assert_eq!(Error::Closed(None).to_string(), "connection closed");
        assert_eq!(
            Error::Closed(Some("404".into())).to_string(),
            "connection closed: 404"
        );
    }
}
