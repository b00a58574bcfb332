//! Stream framing for byte-stream transports (TCP, TLS).
//!
//! A [`Framing`] says how a byte stream is cut into messages: `raw` (whatever arrives is one
//! unit), a big-endian length prefix of 1, 2 or 4 bytes (`tcp_packet`), or a codec supplied by
//! the protocol. [`StreamCodec`] is the `tokio_util::codec` implementation used by the stream
//! transports.
//!
//! The length-prefix decoder never allocates the declared length up front: it grows its buffer
//! as bytes arrive, so a peer announcing a large frame and then stalling costs nothing, and a
//! declared length over the limit closes the connection at once.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use nkp_core::codec::{Framing, StreamCodec};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = StreamCodec::new(&Framing::Prefix2, 1024);
//! let mut buf = BytesMut::new();
//! codec.encode(Bytes::from_static(b"hi"), &mut buf).unwrap();
//! assert_eq!(&buf[..], b"\x00\x02hi");
//! assert_eq!(codec.decode(&mut buf).unwrap(), Some(Bytes::from_static(b"hi")));
//! ```

use std::fmt;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::Error;

/// Default maximum size of one frame on a stream transport (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// A protocol-supplied codec for stream transports: cuts the byte stream into messages and
/// writes messages to it.
pub trait FrameCodec:
    Decoder<Item = Bytes, Error = Error> + Encoder<Bytes, Error = Error> + Send + 'static
{
}

impl<T> FrameCodec for T where
    T: Decoder<Item = Bytes, Error = Error> + Encoder<Bytes, Error = Error> + Send + 'static
{
}

/// Makes a fresh codec for each connection.
pub type CodecFactory = Arc<dyn Fn() -> Box<dyn FrameCodec> + Send + Sync>;

/// How a byte stream is cut into messages (option `tcp_packet`).
#[derive(Clone, Default)]
pub enum Framing {
    /// No framing: every chunk read from the socket is one unit.
    #[default]
    Raw,
    /// A 1-byte big-endian length prefix (frames up to 255 bytes).
    Prefix1,
    /// A 2-byte big-endian length prefix (frames up to 65 535 bytes).
    Prefix2,
    /// A 4-byte big-endian length prefix.
    Prefix4,
    /// A codec supplied by the protocol.
    Custom(CodecFactory),
}

impl Framing {
    /// The `tcp_packet` option value: `raw`, `1`, `2` or `4` (`custom` for a protocol codec).
    pub fn name(&self) -> &'static str {
        match self {
            Framing::Raw => "raw",
            Framing::Prefix1 => "1",
            Framing::Prefix2 => "2",
            Framing::Prefix4 => "4",
            Framing::Custom(_) => "custom",
        }
    }

    /// Parses a `tcp_packet` value (`raw`, `1`, `2`, `4`).
    pub fn parse(s: &str) -> Option<Framing> {
        match s.trim() {
            v if v.eq_ignore_ascii_case("raw") => Some(Framing::Raw),
            "1" => Some(Framing::Prefix1),
            "2" => Some(Framing::Prefix2),
            "4" => Some(Framing::Prefix4),
            _ => None,
        }
    }

    fn prefix_len(&self) -> Option<usize> {
        match self {
            Framing::Prefix1 => Some(1),
            Framing::Prefix2 => Some(2),
            Framing::Prefix4 => Some(4),
            _ => None,
        }
    }
}

impl fmt::Debug for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for Framing {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Framing::Custom(a), Framing::Custom(b)) => Arc::ptr_eq(a, b),
            _ => self.name() == other.name(),
        }
    }
}

/// The codec of one stream connection, built from a [`Framing`].
pub enum StreamCodec {
    /// Every chunk is a unit.
    Raw,
    /// Length-prefixed frames.
    Prefix {
        /// Bytes of prefix (1, 2 or 4).
        len: usize,
        /// Largest accepted frame.
        max: usize,
        /// Length of the frame being read, once its prefix was seen.
        pending: Option<usize>,
    },
    /// A protocol codec.
    Custom(Box<dyn FrameCodec>),
}

impl StreamCodec {
    /// A codec for `framing`, accepting frames up to `max_frame` bytes.
    pub fn new(framing: &Framing, max_frame: usize) -> Self {
        match framing {
            Framing::Raw => StreamCodec::Raw,
            Framing::Custom(make) => StreamCodec::Custom(make()),
            other => {
                let len = other.prefix_len().unwrap_or(4);
                let type_max = match len {
                    1 => 0xff,
                    2 => 0xffff,
                    _ => u32::MAX as usize,
                };
                StreamCodec::Prefix {
                    len,
                    max: max_frame.min(type_max),
                    pending: None,
                }
            }
        }
    }
}

impl fmt::Debug for StreamCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamCodec::Raw => f.write_str("StreamCodec::Raw"),
            StreamCodec::Prefix { len, max, .. } => {
                write!(f, "StreamCodec::Prefix({len} bytes, max {max})")
            }
            StreamCodec::Custom(_) => f.write_str("StreamCodec::Custom"),
        }
    }
}

/// How much to grow the read buffer at a time while a large frame arrives.
const GROW_STEP: usize = 64 * 1024;

impl Decoder for StreamCodec {
    type Item = Bytes;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        match self {
            StreamCodec::Raw => {
                if src.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(src.split().freeze()))
                }
            }
            StreamCodec::Custom(c) => c.decode(src),
            StreamCodec::Prefix { len, max, pending } => {
                let n = match *pending {
                    Some(n) => n,
                    None => {
                        if src.len() < *len {
                            return Ok(None);
                        }
                        let n = match *len {
                            1 => src.get_u8() as usize,
                            2 => src.get_u16() as usize,
                            _ => src.get_u32() as usize,
                        };
                        if n > *max {
                            return Err(Error::MessageTooLarge { size: n, max: *max });
                        }
                        *pending = Some(n);
                        n
                    }
                };
                if src.len() < n {
                    // Grow in steps as data arrives: never reserve the declared length at once.
                    let missing = n - src.len();
                    src.reserve(missing.min(GROW_STEP));
                    return Ok(None);
                }
                *pending = None;
                Ok(Some(src.split_to(n).freeze()))
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        self.decode_end(buf)
    }
}

/// The stream ended in the middle of a frame.
fn truncated() -> Error {
    Error::Io {
        op: "read",
        addr: None,
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the stream ended inside a frame",
        ),
    }
}

impl StreamCodec {
    /// True when a frame's length prefix was read and its body has not fully arrived.
    fn inside_frame(&self) -> bool {
        matches!(
            self,
            StreamCodec::Prefix {
                pending: Some(_),
                ..
            }
        )
    }

    /// `decode_eof` for the built-in framings: the decoder may already have taken a
    /// frame's prefix out of the buffer, so an empty buffer is not enough to call it a clean
    /// end.
    fn decode_end(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        if let StreamCodec::Custom(c) = self {
            return c.decode_eof(buf);
        }
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() && !self.inside_frame() => Ok(None),
            None => Err(truncated()),
        }
    }
}

impl Encoder<Bytes> for StreamCodec {
    type Error = Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        match self {
            StreamCodec::Raw => {
                dst.extend_from_slice(&item);
                Ok(())
            }
            StreamCodec::Custom(c) => c.encode(item, dst),
            StreamCodec::Prefix { len, max, .. } => {
                if item.len() > *max {
                    return Err(Error::MessageTooLarge {
                        size: item.len(),
                        max: *max,
                    });
                }
                dst.reserve(*len + item.len());
                match *len {
                    1 => dst.put_u8(item.len() as u8),
                    2 => dst.put_u16(item.len() as u16),
                    _ => dst.put_u32(item.len() as u32),
                }
                dst.extend_from_slice(&item);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(framing: Framing, payloads: &[&[u8]]) {
        let mut enc = StreamCodec::new(&framing, DEFAULT_MAX_FRAME);
        let mut dec = StreamCodec::new(&framing, DEFAULT_MAX_FRAME);
        let mut wire = BytesMut::new();
        for p in payloads {
            enc.encode(Bytes::copy_from_slice(p), &mut wire).unwrap();
        }
        // Feed one byte at a time: frames must come out whole and in order.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        let want: Vec<Bytes> = payloads.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn prefix_framings_roundtrip_bytewise() {
        let big = vec![7u8; 300];
        roundtrip(Framing::Prefix1, &[b"a", b"", b"hello"]);
        roundtrip(Framing::Prefix2, &[b"a", &big, b"z"]);
        roundtrip(Framing::Prefix4, &[&big, b"", b"x"]);
    }

    #[test]
    fn one_byte_prefix_rejects_long_frames() {
        let mut c = StreamCodec::new(&Framing::Prefix1, DEFAULT_MAX_FRAME);
        let err = c
            .encode(Bytes::from(vec![0u8; 256]), &mut BytesMut::new())
            .unwrap_err();
        assert!(matches!(
            err,
            Error::MessageTooLarge {
                size: 256,
                max: 255
            }
        ));
    }

    #[test]
    fn declared_length_over_limit_is_an_error_without_allocation() {
        let mut c = StreamCodec::new(&Framing::Prefix4, 1024);
        let mut buf = BytesMut::from(&[0u8, 0x10, 0, 0][..]);
        let cap_before = buf.capacity();
        let err = c.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            Error::MessageTooLarge {
                size: 0x0010_0000,
                max: 1024
            }
        ));
        assert!(buf.capacity() <= cap_before.max(64));
    }

    #[test]
    fn large_declared_frame_is_not_reserved_at_once() {
        let mut c = StreamCodec::new(&Framing::Prefix4, DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::from(&[0u8, 0xf0, 0, 0, 1, 2][..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() < 1024 * 1024, "capacity {}", buf.capacity());
    }

    #[test]
    fn raw_yields_whatever_arrived() {
        let mut c = StreamCodec::new(&Framing::Raw, DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Bytes::from_static(b"abc"))
        );
        assert_eq!(c.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn parse_names() {
        assert_eq!(Framing::parse("RAW"), Some(Framing::Raw));
        assert_eq!(Framing::parse("4"), Some(Framing::Prefix4));
        assert_eq!(Framing::parse("3"), None);
    }
}
