//! One message unit on a link.

use bytes::Bytes;

/// One unit of data travelling on a link.
///
/// * UDP and SCTP carry one datagram / message per [`Frame::Binary`];
/// * TCP and TLS carry a chunk of the byte stream (raw framing) or exactly one frame
///   payload (length-prefix framing) per [`Frame::Binary`];
/// * WebSocket carries every kind, and keeps text apart from binary.
///
/// Transports that have no notion of text send a [`Frame::Text`] as its UTF-8 bytes; control
/// frames (ping, pong, close) are only meaningful on WebSocket and are ignored elsewhere.
///
/// ```
/// use nkp_core::Frame;
/// let f = Frame::text("hello");
/// assert_eq!(f.payload(), b"hello".as_slice());
/// assert!(f.is_data());
/// assert!(!Frame::Ping(Default::default()).is_data());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Binary data (or a stream chunk).
    Binary(Bytes),
    /// UTF-8 text (WebSocket text messages).
    Text(String),
    /// WebSocket ping with its payload.
    Ping(Bytes),
    /// WebSocket pong with its payload.
    Pong(Bytes),
    /// WebSocket close, with an optional status code and reason.
    Close(Option<CloseReason>),
}

/// The status code and reason of a WebSocket close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// RFC 6455 status code (1000 normal, 1001 going away, 1009 too big, ...).
    pub code: u16,
    /// Human-readable reason.
    pub reason: String,
}

impl Frame {
    /// A binary frame from anything convertible to [`Bytes`].
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Frame::Binary(data.into())
    }

    /// A text frame.
    pub fn text(text: impl Into<String>) -> Self {
        Frame::Text(text.into())
    }

    /// A close frame with a code and reason.
    pub fn close(code: u16, reason: impl Into<String>) -> Self {
        Frame::Close(Some(CloseReason {
            code,
            reason: reason.into(),
        }))
    }

    /// True for binary and text frames (the data the protocol sees).
    pub fn is_data(&self) -> bool {
        matches!(self, Frame::Binary(_) | Frame::Text(_))
    }

    /// The payload bytes (empty for a close frame).
    pub fn payload(&self) -> &[u8] {
        match self {
            Frame::Binary(b) | Frame::Ping(b) | Frame::Pong(b) => b,
            Frame::Text(s) => s.as_bytes(),
            Frame::Close(_) => &[],
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload().is_empty()
    }

    /// The payload as [`Bytes`] for data frames (text is converted without copying), `None`
    /// for control frames.
    pub fn into_data(self) -> Option<Bytes> {
        match self {
            Frame::Binary(b) => Some(b),
            Frame::Text(s) => Some(Bytes::from(s)),
            _ => None,
        }
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        Frame::Binary(b)
    }
}

impl From<Vec<u8>> for Frame {
    fn from(b: Vec<u8>) -> Self {
        Frame::Binary(Bytes::from(b))
    }
}

impl From<&'static [u8]> for Frame {
    fn from(b: &'static [u8]) -> Self {
        Frame::Binary(Bytes::from_static(b))
    }
}
