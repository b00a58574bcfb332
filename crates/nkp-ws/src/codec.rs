//! The WebSocket message codec, pure (no I/O): [`Decoder`] turns received bytes into
//! messages (checking every RFC 6455 rule, reassembling fragments, inflating
//! permessage-deflate), [`Encoder`] turns frames into bytes.
//!
//! The link ([`crate::WsLink`]) is the I/O shell around them; they can also be driven from
//! memory, as the fuzz target and the tests do.
//!
//! ```
//! use bytes::BytesMut;
//! use nkp_core::Frame;
//! use nkp_ws::codec::{Decoder, Encoder};
//! use nkp_ws::frame::Role;
//!
//! let mut client = Encoder::new(Role::Client, None);
//! let mut wire = Vec::new();
//! client.encode(&Frame::text("hello"), &mut wire).unwrap();
//! client.encode(&Frame::binary(vec![1u8, 2, 3]), &mut wire).unwrap();
//!
//! let mut server = Decoder::new(Role::Server, 1024, None);
//! let mut buf = BytesMut::from(&wire[..]);
//! assert_eq!(server.decode(&mut buf).unwrap(), Some(Frame::text("hello")));
//! assert_eq!(server.decode(&mut buf).unwrap(), Some(Frame::binary(vec![1u8, 2, 3])));
//! assert_eq!(server.decode(&mut buf).unwrap(), None); // needs more bytes
//! ```

use std::fmt;

use bytes::{Buf, BytesMut};
use nkp_core::{Error, Frame};

use crate::deflate::{
    DeflateParams, Deflater, InflateError, Inflater, MIN_COMPRESS_LEN, grow_capped,
};
use crate::frame::{
    CloseError, FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, Role, apply_mask,
    is_valid_close_code, parse_close,
};

/// Why the decoder failed the connection; each kind has its close code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// A protocol violation: close 1002.
    Protocol(String),
    /// A text message or close reason that is not UTF-8: close 1007.
    InvalidUtf8(&'static str),
    /// A message larger than the limit (declared or, compressed, inflated): close 1009.
    TooLarge {
        /// Declared or reached size.
        size: u64,
        /// The limit.
        max: usize,
    },
}

impl CodecError {
    /// The close code to send (1002, 1007 or 1009).
    pub fn close_code(&self) -> u16 {
        match self {
            CodecError::Protocol(_) => 1002,
            CodecError::InvalidUtf8(_) => 1007,
            CodecError::TooLarge { .. } => 1009,
        }
    }

    /// The reason sent in the close frame.
    pub fn close_reason(&self) -> &'static str {
        match self {
            CodecError::Protocol(_) => "protocol error",
            CodecError::InvalidUtf8(_) => "invalid UTF-8",
            CodecError::TooLarge { .. } => "message too big",
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Protocol(m) => write!(f, "websocket: {m}"),
            CodecError::InvalidUtf8(what) => write!(f, "websocket: invalid UTF-8 in {what}"),
            CodecError::TooLarge { size, max } => {
                write!(
                    f,
                    "websocket: message of {size} bytes exceeds the maximum of {max}"
                )
            }
        }
    }
}

impl std::error::Error for CodecError {}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Error {
        match e {
            CodecError::TooLarge { size, max } => Error::MessageTooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max,
            },
            e => Error::Protocol(e.to_string()),
        }
    }
}

fn protocol(m: impl Into<String>) -> CodecError {
    CodecError::Protocol(m.into())
}

/// A message being reassembled.
struct Partial {
    text: bool,
    compressed: bool,
    /// Payload bytes received so far (compressed size when compressed).
    received: u64,
    /// The message so far (inflated when compressed).
    data: Vec<u8>,
}

/// Decodes received bytes into messages: text and binary messages (reassembled,
/// inflated), pings, pongs and closes, as [`Frame`]s.
///
/// Rules enforced (each violation is a [`CodecError`] with its close code):
/// masking by role, RSV bits (RSV1 only on the first frame of a message with
/// permessage-deflate), reserved opcodes, control frames final and at most 125 bytes,
/// continuation only inside a fragmented message and no new message inside one, close
/// payloads (code and UTF-8 reason), UTF-8 of text messages, and `max_message_size`:
/// a declared length over the limit is refused from the header before anything is
/// buffered, and a compressed message stops inflating at the limit.
///
/// `decode` keeps its progress in the decoder, so it can be called again with more bytes
/// at any point (the link's stream is cancel-safe because of it).
pub struct Decoder {
    role: Role,
    max: usize,
    inflater: Option<Inflater>,
    /// A header whose payload has not fully arrived yet.
    header: Option<FrameHeader>,
    partial: Option<Partial>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("role", &self.role)
            .field("max", &self.max)
            .field("deflate", &self.inflater.is_some())
            .finish()
    }
}

impl Decoder {
    /// A decoder for the side `role`, accepting messages up to `max_message_size`
    /// bytes, with permessage-deflate when `deflate` was negotiated.
    pub fn new(role: Role, max_message_size: usize, deflate: Option<DeflateParams>) -> Self {
        Decoder {
            role,
            max: max_message_size,
            inflater: deflate.map(|p| Inflater::new(p.incoming_no_context_takeover(role))),
            header: None,
            partial: None,
        }
    }

    /// How many more bytes the frame in progress needs (0 when between frames): a hint
    /// for the size of the next read.
    pub fn wanted(&self, buffered: usize) -> usize {
        match self.header {
            Some(h) => usize::try_from(h.len)
                .unwrap_or(usize::MAX)
                .saturating_sub(buffered),
            None => 0,
        }
    }

    /// True when no message is partly received (nothing is held between calls but the
    /// decompressor's window with context takeover).
    pub fn is_idle(&self) -> bool {
        self.header.is_none() && self.partial.is_none()
    }

    fn check_header(&self, h: &FrameHeader) -> Result<OpCode, CodecError> {
        let op = h
            .opcode()
            .ok_or_else(|| protocol(format!("reserved opcode {:#x}", h.opcode)))?;
        if h.rsv2 || h.rsv3 {
            return Err(protocol("reserved bits set"));
        }
        if h.rsv1 && (self.inflater.is_none() || !matches!(op, OpCode::Text | OpCode::Binary)) {
            return Err(protocol(if self.inflater.is_none() {
                "RSV1 set without a negotiated extension"
            } else {
                "RSV1 set on a continuation or control frame"
            }));
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(protocol("unmasked frame from a client")),
            (Role::Client, true) => return Err(protocol("masked frame from a server")),
            _ => {}
        }
        if op.is_control() {
            if !h.fin {
                return Err(protocol("fragmented control frame"));
            }
            if h.len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(protocol("control frame payload larger than 125 bytes"));
            }
            return Ok(op);
        }
        let (before, compressed) = match (op, &self.partial) {
            (OpCode::Continuation, None) => {
                return Err(protocol("continuation frame without a message to continue"));
            }
            (OpCode::Continuation, Some(p)) => (p.received, p.compressed),
            (_, Some(_)) => {
                return Err(protocol(
                    "new message while a fragmented message is incomplete",
                ));
            }
            (_, None) => (0, h.rsv1),
        };
        let size = before.saturating_add(h.len);
        // compressed data may be slightly larger than the message (incompressible data
        // plus block overhead); the inflated size is capped at `max` while inflating
        let limit = if compressed {
            compressed_limit(self.max)
        } else {
            self.max
        };
        if size > limit as u64 {
            return Err(CodecError::TooLarge {
                size,
                max: self.max,
            });
        }
        Ok(op)
    }

    /// Decodes the next message from `buf`, consuming what it used. `Ok(None)`: more
    /// bytes are needed (what was consumed is remembered). After an error the decoder must
    /// not be used again (the connection is failed).
    ///
    /// A binary message received in one frame shares `buf`'s memory (no copy).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.decode_from(buf)
    }

    /// Decodes the next message from the front of `buf`, as [`decode`](Self::decode)
    /// does, and says how many bytes of `buf` it consumed, also with `Ok(None)` (a header
    /// whose payload is still to come, or fragments of a message, are consumed and
    /// remembered): the caller keeps `buf[used..]` for the next call. Payloads are copied
    /// out of `buf` (unmasked) into buffers of their own size.
    ///
    /// ```
    /// use nkp_core::Frame;
    /// use nkp_ws::codec::{Decoder, Encoder};
    /// use nkp_ws::frame::Role;
    ///
    /// let mut wire = Vec::new();
    /// Encoder::new(Role::Client, None).encode(&Frame::text("hi"), &mut wire).unwrap();
    /// wire.push(0x82); // the start of the next frame
    /// let mut server = Decoder::new(Role::Server, 1024, None);
    /// let (frame, used) = server.decode_slice(&wire).unwrap();
    /// assert_eq!((frame, used), (Some(Frame::text("hi")), wire.len() - 1));
    /// ```
    pub fn decode_slice(&mut self, buf: &[u8]) -> Result<(Option<Frame>, usize), CodecError> {
        let mut src = SliceSource { rest: buf };
        let frame = self.decode_from(&mut src)?;
        Ok((frame, buf.len() - src.rest.len()))
    }

    fn decode_from<S: Source>(&mut self, buf: &mut S) -> Result<Option<Frame>, CodecError> {
        loop {
            let (h, op) = match self.header {
                Some(h) => (h, h.opcode().unwrap_or(OpCode::Binary)),
                None => {
                    let Some((h, n)) =
                        FrameHeader::parse(buf.bytes()).map_err(|e| protocol(e.to_string()))?
                    else {
                        return Ok(None);
                    };
                    let op = self.check_header(&h)?;
                    buf.advance(n);
                    self.header = Some(h);
                    (h, op)
                }
            };
            // the length was checked against the limit, which fits in usize
            let len = usize::try_from(h.len).map_err(|_| CodecError::TooLarge {
                size: h.len,
                max: self.max,
            })?;
            if buf.bytes().len() < len {
                return Ok(None);
            }
            self.header = None;
            let payload = buf.take(len, h.mask);
            match op {
                OpCode::Ping => return Ok(Some(Frame::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Frame::Pong(payload.freeze()))),
                OpCode::Close => {
                    return parse_close(&payload)
                        .map(|c| Some(Frame::Close(c)))
                        .map_err(|e| match e {
                            CloseError::InvalidUtf8 => CodecError::InvalidUtf8("a close reason"),
                            e => protocol(e.to_string()),
                        });
                }
                OpCode::Text | OpCode::Binary if h.fin && !h.rsv1 => {
                    // a whole message in one frame: binary keeps the payload's buffer,
                    // text too when the payload owns it (decoded from a slice)
                    return if op == OpCode::Text {
                        text(Vec::from(payload)).map(Some)
                    } else {
                        Ok(Some(Frame::Binary(payload.freeze())))
                    };
                }
                OpCode::Text | OpCode::Binary => {
                    self.partial = Some(Partial {
                        text: op == OpCode::Text,
                        compressed: h.rsv1,
                        received: 0,
                        data: Vec::new(),
                    });
                }
                OpCode::Continuation => {}
            }
            let max = self.max;
            let Some(p) = self.partial.as_mut() else {
                return Err(protocol("continuation frame without a message to continue"));
            };
            p.received += h.len;
            if p.compressed {
                let Some(inf) = self.inflater.as_mut() else {
                    return Err(protocol("RSV1 set without a negotiated extension"));
                };
                // A compressed message with no payload at all is empty (RFC 7692 §7.2.3.6
                // sends `00`, but an empty payload is no less clear). The bare trailer
                // must not reach the inflater: `00 00 ff ff` on its own opens a stored
                // block of 0xff00 bytes, which would swallow the next messages.
                let inflated = if payload.is_empty() {
                    Ok(())
                } else {
                    inf.inflate(&payload, &mut p.data, max)
                };
                inflated
                    .and_then(|()| {
                        if h.fin && p.received > 0 {
                            inf.finish(&mut p.data, max)
                        } else {
                            Ok(())
                        }
                    })
                    .map_err(|e| match e {
                        InflateError::Corrupt(m) => {
                            protocol(format!("permessage-deflate: bad compressed data: {m}"))
                        }
                        InflateError::TooLarge { size } => CodecError::TooLarge {
                            size: size as u64,
                            max,
                        },
                    })?;
            } else {
                grow_capped(&mut p.data, payload.len(), max);
                p.data.extend_from_slice(&payload);
            }
            if h.fin {
                let Some(p) = self.partial.take() else {
                    continue;
                };
                return if p.text {
                    text(p.data).map(Some)
                } else {
                    Ok(Some(Frame::Binary(p.data.into())))
                };
            }
        }
    }
}

/// Where the decoder takes bytes from.
trait Source {
    /// The bytes not consumed yet.
    fn bytes(&self) -> &[u8];
    /// Consumes `n` bytes (`n <= bytes().len()`).
    fn advance(&mut self, n: usize);
    /// Consumes the next `len` bytes (`len <= bytes().len()`), unmasked with `mask`.
    fn take(&mut self, len: usize, mask: Option<[u8; 4]>) -> BytesMut;
}

/// The payload is split off the buffer: no copy.
impl Source for BytesMut {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn advance(&mut self, n: usize) {
        Buf::advance(self, n);
    }

    fn take(&mut self, len: usize, mask: Option<[u8; 4]>) -> BytesMut {
        let mut payload = self.split_to(len);
        if let Some(k) = mask {
            apply_mask(&mut payload, k);
        }
        payload
    }
}

/// A borrowed slice: the payload is copied into an allocation of its own size.
struct SliceSource<'a> {
    rest: &'a [u8],
}

impl Source for SliceSource<'_> {
    fn bytes(&self) -> &[u8] {
        self.rest
    }

    fn advance(&mut self, n: usize) {
        self.rest = &self.rest[n..];
    }

    fn take(&mut self, len: usize, mask: Option<[u8; 4]>) -> BytesMut {
        let (payload, rest) = self.rest.split_at(len);
        self.rest = rest;
        let mut payload = BytesMut::from(payload);
        if let Some(k) = mask {
            apply_mask(&mut payload, k);
        }
        payload
    }
}

/// The most compressed bytes accepted for a message of at most `max` bytes: deflate's
/// worst-case expansion (stored blocks: 5 bytes per 16 KiB and a few more) with margin.
fn compressed_limit(max: usize) -> usize {
    max.saturating_add(max / 1024).saturating_add(64)
}

fn text(data: Vec<u8>) -> Result<Frame, CodecError> {
    String::from_utf8(data)
        .map(Frame::Text)
        .map_err(|_| CodecError::InvalidUtf8("a text message"))
}

/// Encodes frames for the side `role`: client frames masked with a fresh random key, data
/// messages compressed when permessage-deflate was negotiated (one frame per message).
///
/// Messages shorter than [`MIN_COMPRESS_LEN`] are sent
/// uncompressed (RSV1 clear), and so is a message that compression does not shrink when
/// the compressor keeps no context (with context takeover the compressor has already
/// taken the message into its window, so the compressed form must be sent).
pub struct Encoder {
    role: Role,
    deflater: Option<Deflater>,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("role", &self.role)
            .field("deflate", &self.deflater.is_some())
            .finish()
    }
}

impl Encoder {
    /// An encoder for the side `role`, compressing when `deflate` was negotiated.
    pub fn new(role: Role, deflate: Option<DeflateParams>) -> Self {
        Encoder {
            role,
            deflater: deflate.map(|p| {
                let (nct, bits) = p.outgoing(role);
                Deflater::new(nct, bits)
            }),
        }
    }

    fn mask(&self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(rand::random()),
            Role::Server => None,
        }
    }

    /// The header of `frame` when it is sent as that header followed by the frame's
    /// payload unchanged (a data frame from a server, not compressed); `None` when
    /// [`encode`](Self::encode) has more to do (masking, compression, control frames).
    ///
    /// ```
    /// use nkp_core::Frame;
    /// use nkp_ws::codec::Encoder;
    /// use nkp_ws::frame::Role;
    ///
    /// let f = Frame::binary(vec![7u8; 300]);
    /// let h = Encoder::new(Role::Server, None).plain_header(&f).unwrap();
    /// let mut wire = Vec::new();
    /// h.write(&mut wire);
    /// wire.extend_from_slice(f.payload());
    /// let mut encoded = Vec::new();
    /// Encoder::new(Role::Server, None).encode(&f, &mut encoded).unwrap();
    /// assert_eq!(wire, encoded);
    /// assert!(Encoder::new(Role::Client, None).plain_header(&f).is_none());
    /// ```
    pub fn plain_header(&self, frame: &Frame) -> Option<FrameHeader> {
        let op = match frame {
            Frame::Text(_) => OpCode::Text,
            Frame::Binary(_) => OpCode::Binary,
            _ => return None,
        };
        let len = frame.payload().len();
        if self.role != Role::Server || (self.deflater.is_some() && len >= MIN_COMPRESS_LEN) {
            return None;
        }
        Some(FrameHeader::new(true, op, None, len as u64))
    }

    /// Appends `frame` to `out` as one WebSocket frame.
    ///
    /// Errors ([`Error::Encode`], nothing appended): a ping or pong payload over 125
    /// bytes, a close code that may not be sent, a close reason over 123 bytes.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), Error> {
        let (op, payload): (OpCode, &[u8]) = match frame {
            Frame::Text(t) => (OpCode::Text, t.as_bytes()),
            Frame::Binary(b) => (OpCode::Binary, b),
            Frame::Ping(p) | Frame::Pong(p) => {
                if p.len() > MAX_CONTROL_PAYLOAD {
                    return Err(Error::Encode(format!(
                        "a websocket ping or pong payload is at most 125 bytes, not {}",
                        p.len()
                    )));
                }
                let op = if matches!(frame, Frame::Ping(_)) {
                    OpCode::Ping
                } else {
                    OpCode::Pong
                };
                (op, p)
            }
            Frame::Close(None) => (OpCode::Close, &[]),
            Frame::Close(Some(c)) => {
                if !is_valid_close_code(c.code) {
                    return Err(Error::Encode(format!(
                        "websocket close code {} may not be sent",
                        c.code
                    )));
                }
                if c.reason.len() > MAX_CONTROL_PAYLOAD - 2 {
                    return Err(Error::Encode(format!(
                        "a websocket close reason is at most 123 bytes, not {}",
                        c.reason.len()
                    )));
                }
                let mut p = [0u8; MAX_CONTROL_PAYLOAD];
                p[..2].copy_from_slice(&c.code.to_be_bytes());
                p[2..2 + c.reason.len()].copy_from_slice(c.reason.as_bytes());
                self.put(out, OpCode::Close, false, &p[..2 + c.reason.len()]);
                return Ok(());
            }
        };
        if !op.is_control()
            && payload.len() >= MIN_COMPRESS_LEN
            && let Some(d) = self.deflater.as_mut()
        {
            let start = out.len();
            let room = MAX_HEADER_LEN;
            out.resize(start + room, 0);
            if let Err(e) = d.compress(payload, out) {
                out.truncate(start);
                return Err(Error::Encode(e));
            }
            let clen = out.len() - start - room;
            if d.no_context_takeover() && clen >= payload.len() {
                out.truncate(start);
            } else {
                // the header goes right before the payload, then the frame moves to
                // `start` (one memmove of the compressed bytes, no second buffer)
                let mut h = FrameHeader::new(true, op, self.mask(), clen as u64);
                h.rsv1 = true;
                let mut hb = [0u8; MAX_HEADER_LEN];
                let hlen = h.encode(&mut hb);
                let at = start + room - hlen;
                out[at..start + room].copy_from_slice(&hb[..hlen]);
                out.copy_within(at.., start);
                out.truncate(start + hlen + clen);
                if let Some(k) = h.mask {
                    apply_mask(&mut out[start + hlen..], k);
                }
                return Ok(());
            }
        }
        self.put(out, op, false, payload);
        Ok(())
    }

    fn put(&self, out: &mut Vec<u8>, op: OpCode, rsv1: bool, payload: &[u8]) {
        let mut h = FrameHeader::new(true, op, self.mask(), payload.len() as u64);
        h.rsv1 = rsv1;
        out.reserve(h.encoded_len() + payload.len());
        h.write(out);
        let at = out.len();
        out.extend_from_slice(payload);
        if let Some(k) = h.mask {
            apply_mask(&mut out[at..], k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nkp_core::CloseReason;

    /// One raw frame as a peer would send it.
    fn raw(fin: bool, rsv: u8, op: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut h = FrameHeader::new(fin, OpCode::Binary, mask, payload.len() as u64);
        h.opcode = op;
        h.rsv1 = rsv & 4 != 0;
        h.rsv2 = rsv & 2 != 0;
        h.rsv3 = rsv & 1 != 0;
        let mut out = Vec::new();
        h.write(&mut out);
        let at = out.len();
        out.extend_from_slice(payload);
        if let Some(k) = mask {
            apply_mask(&mut out[at..], k);
        }
        out
    }

    const K: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

    /// Feeds `wire` to a server decoder (one byte at a time too) and returns what came
    /// out until the first error.
    fn server_decode(
        wire: &[u8],
        max: usize,
        deflate: Option<DeflateParams>,
    ) -> (Vec<Frame>, Option<CodecError>) {
        let whole = run(Decoder::new(Role::Server, max, deflate), wire, wire.len());
        let bytewise = run(Decoder::new(Role::Server, max, deflate), wire, 1);
        assert_eq!(whole, bytewise, "the split of the input must not matter");
        for step in [1, 2, 7, wire.len()] {
            let linkwise = run_as_link(Decoder::new(Role::Server, max, deflate), wire, step);
            assert_eq!(
                whole, linkwise,
                "slices and buffers decode alike (step {step})"
            );
        }
        whole
    }

    /// As the link reads: a chunk arriving while nothing is buffered is decoded from the
    /// slice (one message at most), the rest is buffered and decoded from the buffer.
    fn run_as_link(mut d: Decoder, wire: &[u8], step: usize) -> (Vec<Frame>, Option<CodecError>) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(step.max(1)) {
            if buf.is_empty() {
                match d.decode_slice(chunk) {
                    Ok((f, used)) => {
                        out.extend(f);
                        buf.extend_from_slice(&chunk[used..]);
                    }
                    Err(e) => return (out, Some(e)),
                }
            } else {
                buf.extend_from_slice(chunk);
            }
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn run(mut d: Decoder, wire: &[u8], step: usize) -> (Vec<Frame>, Option<CodecError>) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(step.max(1)) {
            buf.extend_from_slice(chunk);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn code_of(wire: &[u8]) -> u16 {
        match server_decode(wire, 1000, None) {
            (_, Some(e)) => e.close_code(),
            other => panic!("no error: {other:?}"),
        }
    }

    #[test]
    fn protocol_violations_and_their_codes() {
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("unmasked client frame", raw(true, 0, 1, None, b"hi"), 1002),
            ("reserved opcode 3", raw(true, 0, 3, K, b""), 1002),
            ("reserved opcode 0xB", raw(true, 0, 0xB, K, b""), 1002),
            ("RSV1 without deflate", raw(true, 4, 2, K, b"x"), 1002),
            ("RSV2", raw(true, 2, 2, K, b"x"), 1002),
            ("RSV3", raw(true, 1, 2, K, b"x"), 1002),
            ("fragmented ping", raw(false, 0, 9, K, b""), 1002),
            ("long ping", raw(true, 0, 9, K, &[0; 126]), 1002),
            ("continuation first", raw(true, 0, 0, K, b"x"), 1002),
            (
                "new message while fragmented",
                [raw(false, 0, 1, K, b"a"), raw(true, 0, 1, K, b"b")].concat(),
                1002,
            ),
            ("close of one byte", raw(true, 0, 8, K, b"\x03"), 1002),
            ("close code 1005", raw(true, 0, 8, K, b"\x03\xed"), 1002),
            ("close code 999", raw(true, 0, 8, K, b"\x03\xe7"), 1002),
            ("close code 2000", raw(true, 0, 8, K, b"\x07\xd0"), 1002),
            (
                "close reason not UTF-8",
                raw(true, 0, 8, K, b"\x03\xe8\xc3"),
                1007,
            ),
            ("text not UTF-8", raw(true, 0, 1, K, &[0xff, 0xfe]), 1007),
            (
                "UTF-8 cut across fragments, never completed",
                [raw(false, 0, 1, K, &[0xe2, 0x82]), raw(true, 0, 0, K, b"x")].concat(),
                1007,
            ),
            ("declared too large", raw(true, 0, 2, K, &[0; 1001]), 1009),
            (
                "fragments too large",
                [
                    raw(false, 0, 2, K, &[0; 600]),
                    raw(true, 0, 0, K, &[0; 401]),
                ]
                .concat(),
                1009,
            ),
            (
                "64-bit length with the top bit",
                b"\x82\xff\x80\0\0\0\0\0\0\0\x11\x22\x33\x44".to_vec(),
                1002,
            ),
        ];
        for (what, wire, code) in cases {
            assert_eq!(code_of(&wire), code, "{what}");
        }
        // the size check comes from the header alone: no payload needs to arrive
        let mut d = Decoder::new(Role::Server, 1000, None);
        let mut b = BytesMut::from(&b"\x82\xff\0\0\0\x01\0\0\0\0\x11\x22\x33\x44"[..]);
        assert_eq!(
            d.decode(&mut b),
            Err(CodecError::TooLarge {
                size: 1 << 32,
                max: 1000
            })
        );
        // a client refuses masked frames
        let mut d = Decoder::new(Role::Client, 1000, None);
        let mut b = BytesMut::from(&raw(true, 0, 2, K, b"x")[..]);
        assert_eq!(d.decode(&mut b).map_err(|e| e.close_code()), Err(1002));
        let mut b = BytesMut::from(&raw(true, 0, 2, None, b"x")[..]);
        let mut d = Decoder::new(Role::Client, 1000, None);
        assert_eq!(d.decode(&mut b), Ok(Some(Frame::binary(&b"x"[..]))));
        // RSV1 on a control or continuation frame, even with deflate
        let p = Some(DeflateParams::default());
        for wire in [
            raw(true, 4, 9, K, b""),
            [raw(false, 0, 2, K, b"a"), raw(true, 4, 0, K, b"b")].concat(),
        ] {
            assert_eq!(
                server_decode(&wire, 100, p).1.map(|e| e.close_code()),
                Some(1002)
            );
        }
        // errors convert to typed nkp errors
        assert!(matches!(
            Error::from(CodecError::TooLarge { size: 5, max: 4 }),
            Error::MessageTooLarge { size: 5, max: 4 }
        ));
        assert!(matches!(
            Error::from(CodecError::InvalidUtf8("a text message")),
            Error::Protocol(m) if m.contains("UTF-8")
        ));
    }

    #[test]
    fn fragments_with_interleaved_control_frames() {
        let euro = "€".as_bytes(); // split across fragments
        let wire = [
            raw(false, 0, 1, K, b"hel"),
            raw(true, 0, 9, K, b"ping"),
            raw(false, 0, 0, K, &[b'l', b'o', b' ', euro[0]]),
            raw(true, 0, 0xA, K, b"pong"),
            raw(false, 0, 0, K, &euro[1..]),
            raw(true, 0, 0, K, b"!"),
            raw(false, 0, 2, K, b"\xff"),
            raw(true, 0, 0, K, b""),
            raw(true, 0, 2, K, b""),
            raw(true, 0, 1, K, b""),
            raw(true, 0, 8, K, b"\x03\xe9going"),
            raw(true, 0, 8, K, b""),
        ]
        .concat();
        let (frames, err) = server_decode(&wire, 1000, None);
        assert_eq!(err, None);
        assert_eq!(
            frames,
            vec![
                Frame::Ping(Bytes::from_static(b"ping")),
                Frame::Pong(Bytes::from_static(b"pong")),
                Frame::text("hello €!"),
                Frame::binary(&b"\xff"[..]),
                Frame::binary(Bytes::new()),
                Frame::text(""),
                Frame::Close(Some(CloseReason {
                    code: 1001,
                    reason: "going".into()
                })),
                Frame::Close(None),
            ]
        );
        // exactly at the limit, in fragments
        let wire = [
            raw(false, 0, 2, K, &[1; 500]),
            raw(true, 0, 0, K, &[2; 500]),
        ]
        .concat();
        let (frames, err) = server_decode(&wire, 1000, None);
        assert_eq!((frames.len(), err), (1, None));
        assert_eq!(frames[0].len(), 1000);
    }

    #[test]
    fn encoder_output_decodes_for_both_roles() {
        for deflate in [None, Some(DeflateParams::default())] {
            for (from, to) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
                let mut e = Encoder::new(from, deflate);
                let mut d = Decoder::new(to, 1 << 20, deflate);
                let frames = vec![
                    Frame::text("short"),
                    Frame::text("a compressible text message ".repeat(100)),
                    Frame::binary(vec![9u8; 70_000]),
                    Frame::binary((0..=255u8).cycle().take(300).collect::<Vec<_>>()),
                    Frame::Ping(Bytes::from_static(b"p")),
                    Frame::Pong(Bytes::new()),
                    Frame::close(1000, "bye"),
                    Frame::Close(None),
                ];
                let mut wire = Vec::new();
                for f in &frames {
                    e.encode(f, &mut wire).unwrap();
                }
                let (got, err) = run(d, &wire, 4096);
                assert_eq!(err, None);
                assert_eq!(got, frames, "{from:?} deflate {}", deflate.is_some());
                // compressed messages are smaller on the wire
                if deflate.is_some() {
                    assert!(wire.len() < 10_000, "{}", wire.len());
                }
                d = Decoder::new(to, 10, deflate);
                let mut b = BytesMut::from(&wire[..]);
                assert!(d.decode(&mut b).is_ok());
                assert_eq!(d.decode(&mut b).map_err(|e| e.close_code()), Err(1009));
            }
        }
        let mut e = Encoder::new(Role::Server, None);
        let mut out = Vec::new();
        assert!(
            e.encode(&Frame::Ping(vec![0u8; 126].into()), &mut out)
                .is_err()
        );
        assert!(e.encode(&Frame::close(1005, ""), &mut out).is_err());
        assert!(
            e.encode(&Frame::close(1000, "x".repeat(124)), &mut out)
                .is_err()
        );
        assert!(out.is_empty());
        e.encode(&Frame::close(1000, "x".repeat(123)), &mut out)
            .unwrap();
        assert_eq!(out.len(), 2 + 125);
    }

    #[test]
    fn compressed_messages_set_rsv1_on_the_first_frame_only_when_worth_it() {
        let p = Some(DeflateParams::default());
        let mut e = Encoder::new(Role::Server, p);
        let mut out = Vec::new();
        e.encode(&Frame::text("tiny"), &mut out).unwrap();
        assert_eq!(out[0], 0x81, "small messages are not compressed");
        out.clear();
        e.encode(&Frame::text("x".repeat(1000)), &mut out).unwrap();
        assert_eq!(out[0], 0xc1, "FIN + RSV1 + text");
        assert!(out.len() < 50);
        // without context takeover, incompressible data goes out as is
        let p = Some(DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        });
        let mut e = Encoder::new(Role::Server, p);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        out.clear();
        e.encode(&Frame::binary(noise.clone()), &mut out).unwrap();
        assert_eq!(out[0], 0x82);
        assert_eq!(&out[4..], &noise[..]);
        assert!(!e.deflater.as_ref().is_some_and(Deflater::is_allocated));
        // a compressed message in fragments (as a peer may send it)
        let mut d = Deflater::new(false, 15);
        let mut c = Vec::new();
        d.compress("fragmented and compressed ".repeat(50).as_bytes(), &mut c)
            .unwrap();
        let (a, b) = c.split_at(c.len() / 2);
        let wire = [
            raw(false, 4, 1, K, a),
            raw(true, 0, 0x9, K, b""),
            raw(true, 0, 0, K, b),
        ]
        .concat();
        let (frames, err) = server_decode(&wire, 10_000, Some(DeflateParams::default()));
        assert_eq!(err, None);
        assert_eq!(
            frames[1],
            Frame::text("fragmented and compressed ".repeat(50))
        );
    }

    #[test]
    fn an_incompressible_message_of_the_maximum_size_passes_compressed() {
        let p = Some(DeflateParams::default());
        let mut x = 1u32;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        let mut e = Encoder::new(Role::Client, p);
        let mut wire = Vec::new();
        e.encode(&Frame::binary(noise.clone()), &mut wire).unwrap();
        assert_eq!(wire[0], 0xc2, "compressed (context takeover)");
        assert!(
            wire.len() > 5000 + 6,
            "larger than the message: {}",
            wire.len()
        );
        let (frames, err) = server_decode(&wire, 5000, p);
        assert_eq!(err, None);
        assert_eq!(frames, vec![Frame::binary(noise)]);
    }

    #[test]
    fn a_compression_bomb_stops_at_the_limit() {
        let p = Some(DeflateParams::default());
        let mut e = Encoder::new(Role::Client, p);
        let mut wire = Vec::new();
        e.encode(&Frame::binary(vec![0u8; 1 << 20]), &mut wire)
            .unwrap();
        assert!(wire.len() < 10_000);
        let (frames, err) = server_decode(&wire, 64 * 1024, p);
        assert!(frames.is_empty());
        match err {
            Some(CodecError::TooLarge { size, max }) => {
                assert_eq!(max, 64 * 1024);
                assert!(size > max as u64);
            }
            other => panic!("{other:?}"),
        }
        // garbage with RSV1 → 1002
        let wire = raw(true, 4, 2, K, &[0xff; 100]);
        assert_eq!(
            server_decode(&wire, 1000, p).1.map(|e| e.close_code()),
            Some(1002)
        );
    }

    #[test]
    fn state_is_released_when_idle() {
        let p = DeflateParams {
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut e = Encoder::new(Role::Client, Some(p));
        let mut d = Decoder::new(Role::Server, 1 << 20, Some(p));
        assert!(d.is_idle());
        let mut wire = Vec::new();
        e.encode(&Frame::text("y".repeat(500)), &mut wire).unwrap();
        assert!(!e.deflater.as_ref().is_some_and(Deflater::is_allocated));
        let mut b = BytesMut::from(&wire[..8]);
        assert_eq!(d.decode(&mut b), Ok(None));
        assert!(!d.is_idle());
        assert_eq!(d.wanted(b.len()), wire.len() - 6 - b.len());
        b.extend_from_slice(&wire[8..]);
        assert_eq!(d.decode(&mut b), Ok(Some(Frame::text("y".repeat(500)))));
        assert!(d.is_idle());
        assert!(!d.inflater.as_ref().is_some_and(Inflater::is_allocated));
    }

    /// RFC 7692 §7.2.3.6: an empty message is sent as the single byte `00` (an empty
    /// stored block). A compressed frame with no payload at all is an empty message too,
    /// and must leave the peer's context (ours to mirror) untouched: inflating the bare
    /// trailer `00 00 ff ff` would open a stored block of 0xff00 bytes and swallow the
    /// next message as its content.
    #[test]
    fn empty_compressed_messages_keep_the_context() {
        let p = Some(DeflateParams::default());
        let mut peer = Deflater::new(false, 15);
        let mut c1 = Vec::new();
        peer.compress(&[b'a'; 100], &mut c1).unwrap();
        // what browsers and Python send for an empty message
        let c_empty = [0x00];
        let mut c2 = Vec::new();
        peer.compress(&[b'a'; 100], &mut c2).unwrap();
        let wire = [
            raw(true, 4, 2, K, &c1),
            raw(true, 4, 1, K, b""),
            raw(true, 4, 2, K, &c_empty),
            raw(false, 4, 2, K, b""),
            raw(true, 0, 0, K, b""),
            raw(true, 4, 2, K, &c2),
        ]
        .concat();
        let (frames, err) = server_decode(&wire, 1000, p);
        assert_eq!(err, None);
        assert_eq!(
            frames,
            vec![
                Frame::binary(vec![b'a'; 100]),
                Frame::text(""),
                Frame::binary(Bytes::new()),
                Frame::binary(Bytes::new()),
                Frame::binary(vec![b'a'; 100]),
            ]
        );
    }
}
