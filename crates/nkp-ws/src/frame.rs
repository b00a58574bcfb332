//! RFC 6455 framing, pure (no I/O): frame headers, masking, close frame payloads.
//!
//! ```
//! use nkp_ws::frame::{FrameHeader, OpCode, apply_mask};
//!
//! // a masked client text frame "Hi"
//! let h = FrameHeader::new(true, OpCode::Text, Some([1, 2, 3, 4]), 2);
//! let mut wire = Vec::new();
//! h.write(&mut wire);
//! let mut payload = *b"Hi";
//! apply_mask(&mut payload, [1, 2, 3, 4]);
//! wire.extend_from_slice(&payload);
//!
//! let (parsed, used) = FrameHeader::parse(&wire).unwrap().unwrap();
//! assert_eq!((parsed, used), (h, 6));
//! let mut body = wire[used..].to_vec();
//! apply_mask(&mut body, parsed.mask.unwrap());
//! assert_eq!(body, b"Hi");
//! ```

use std::fmt;

use nkp_core::CloseReason;

/// Which end of a WebSocket connection a codec works for.
///
/// Clients mask the frames they send and refuse masked frames; servers require masked
/// frames and send unmasked ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The accepting side.
    Server,
    /// The connecting side.
    Client,
}

/// A frame opcode (RFC 6455 §5.2). Reserved opcodes are not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// `0x0`: continuation of a fragmented message.
    Continuation,
    /// `0x1`: first frame of a text message.
    Text,
    /// `0x2`: first frame of a binary message.
    Binary,
    /// `0x8`: close.
    Close,
    /// `0x9`: ping.
    Ping,
    /// `0xA`: pong.
    Pong,
}

impl OpCode {
    /// The opcode of a 4-bit value; `None` for the reserved ones (3-7, 0xB-0xF).
    ///
    /// ```
    /// use nkp_ws::frame::OpCode;
    /// assert_eq!(OpCode::from_u8(0x9), Some(OpCode::Ping));
    /// assert_eq!(OpCode::from_u8(0x3), None);
    /// ```
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// True for close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest encoded frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header.
///
/// The opcode is kept raw so that a header with a reserved opcode still parses (the codec
/// then fails the connection with 1002); [`FrameHeader::opcode`] gives the known ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// Reserved bit 1 (permessage-deflate: the message is compressed).
    pub rsv1: bool,
    /// Reserved bit 2 (no extension uses it).
    pub rsv2: bool,
    /// Reserved bit 3 (no extension uses it).
    pub rsv3: bool,
    /// The 4-bit opcode as on the wire.
    pub opcode: u8,
    /// The masking key (frames sent by clients).
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
}

/// A frame header that cannot be parsed: a 64-bit length with its top bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderError;

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("64-bit payload length with the most significant bit set")
    }
}

impl std::error::Error for HeaderError {}

impl FrameHeader {
    /// A header with the reserved bits clear.
    pub fn new(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) -> Self {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: opcode.as_u8(),
            mask,
            len,
        }
    }

    /// The opcode, `None` when reserved.
    pub fn opcode(&self) -> Option<OpCode> {
        OpCode::from_u8(self.opcode)
    }

    /// Parses a header at the start of `buf`: `Ok(None)` when more bytes are needed,
    /// else the header and its encoded length. Only the structure is checked here (the
    /// 64-bit length must fit in 63 bits); the codec checks the rules.
    ///
    /// Lengths that are not minimally encoded are accepted.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, HeaderError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(s) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(s);
                    let len = u64::from_be_bytes(b);
                    if len >> 63 != 0 {
                        return Err(HeaderError);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            match buf.get(at..at + 4) {
                Some(&[a, b, c, d]) => {
                    at += 4;
                    Some([a, b, c, d])
                }
                _ => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                rsv1: b0 & 0x40 != 0,
                rsv2: b0 & 0x20 != 0,
                rsv3: b0 & 0x10 != 0,
                opcode: b0 & 0x0f,
                mask,
                len,
            },
            at,
        )))
    }

    /// The encoded length of this header (2 to 14 bytes), lengths minimally encoded.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Encodes the header into `out`, returning the number of bytes used
    /// ([`FrameHeader::encoded_len`]).
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | (self.opcode & 0x0f);
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        match self.len {
            n @ 0..=125 => out[1] = m | n as u8,
            n @ 126..=0xffff => {
                out[1] = m | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                at = 4;
            }
            n => {
                out[1] = m | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                at = 10;
            }
        }
        if let Some(k) = self.mask {
            out[at..at + 4].copy_from_slice(&k);
            at += 4;
        }
        at
    }

    /// Appends the encoded header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; MAX_HEADER_LEN];
        let n = self.encode(&mut b);
        out.extend_from_slice(&b[..n]);
    }
}

/// XORs `buf` with the masking key (RFC 6455 §5.3), in place; the same call unmasks.
/// Works eight bytes at a time.
///
/// ```
/// let mut b = *b"abcdefghij";
/// nkp_ws::frame::apply_mask(&mut b, [9, 8, 7, 6]);
/// nkp_ws::frame::apply_mask(&mut b, [9, 8, 7, 6]);
/// assert_eq!(&b, b"abcdefghij");
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let k8 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_ne_bytes(w) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // the tail starts at a multiple of 8, so at key index 0
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Whether a close code may appear in a close frame (RFC 6455 §7.4 and the IANA
/// registry): 1000-1003, 1007-1014, and the application ranges 3000-4999. 1004-1006 and
/// 1015 are reserved (never sent), the rest below 3000 is unassigned.
///
/// ```
/// use nkp_ws::frame::is_valid_close_code;
/// assert!(is_valid_close_code(1000) && is_valid_close_code(4999));
/// assert!(!is_valid_close_code(1005) && !is_valid_close_code(999) && !is_valid_close_code(2000));
/// ```
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a close frame payload is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// One byte: a code needs two (1002).
    Truncated,
    /// A code that may not be sent (1002).
    InvalidCode(u16),
    /// The reason is not UTF-8 (1007).
    InvalidUtf8,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::Truncated => f.write_str("close frame payload of one byte"),
            CloseError::InvalidCode(c) => write!(f, "invalid close code {c}"),
            CloseError::InvalidUtf8 => f.write_str("close reason is not UTF-8"),
        }
    }
}

impl std::error::Error for CloseError {}

/// Parses the payload of a received close frame (RFC 6455 §5.5.1): empty → no code,
/// otherwise a valid code and a UTF-8 reason.
///
/// ```
/// use nkp_ws::frame::{parse_close, CloseError};
/// let r = parse_close(b"\x03\xe8bye").unwrap().unwrap();
/// assert_eq!((r.code, r.reason.as_str()), (1000, "bye"));
/// assert_eq!(parse_close(b""), Ok(None));
/// assert_eq!(parse_close(b"\x03"), Err(CloseError::Truncated));
/// assert_eq!(parse_close(b"\x03\xed"), Err(CloseError::InvalidCode(1005)));
/// ```
pub fn parse_close(payload: &[u8]) -> Result<Option<CloseReason>, CloseError> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseError::Truncated),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !is_valid_close_code(code) {
                return Err(CloseError::InvalidCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| CloseError::InvalidUtf8)?;
            Ok(Some(CloseReason {
                code,
                reason: reason.to_string(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(h: FrameHeader) {
        let mut b = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut b);
        assert_eq!(n, h.encoded_len());
        assert_eq!(FrameHeader::parse(&b[..n]), Ok(Some((h, n))));
        // every strict prefix asks for more
        for i in 0..n {
            assert_eq!(FrameHeader::parse(&b[..i]), Ok(None), "{h:?} cut at {i}");
        }
    }

    #[test]
    fn header_round_trips() {
        for len in [0u64, 1, 125, 126, 127, 0xffff, 0x1_0000, u64::MAX >> 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for op in [
                    OpCode::Continuation,
                    OpCode::Text,
                    OpCode::Binary,
                    OpCode::Close,
                    OpCode::Ping,
                    OpCode::Pong,
                ] {
                    for fin in [true, false] {
                        let mut h = FrameHeader::new(fin, op, mask, len);
                        roundtrip(h);
                        h.rsv1 = true;
                        h.rsv3 = true;
                        roundtrip(h);
                    }
                }
            }
        }
        assert_eq!(
            FrameHeader::new(true, OpCode::Text, None, 125).encoded_len(),
            2
        );
        assert_eq!(
            FrameHeader::new(true, OpCode::Text, None, 126).encoded_len(),
            4
        );
        assert_eq!(
            FrameHeader::new(true, OpCode::Text, Some([0; 4]), 65536).encoded_len(),
            14
        );
    }

    #[test]
    fn header_wire_format() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello"
        let (h, n) = FrameHeader::parse(b"\x81\x05Hello").unwrap().unwrap();
        assert_eq!(n, 2);
        assert!(h.fin && !h.rsv1);
        assert_eq!((h.opcode(), h.len, h.mask), (Some(OpCode::Text), 5, None));
        // masked "Hello"
        let (h, n) = FrameHeader::parse(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
            .unwrap()
            .unwrap();
        assert_eq!((n, h.mask), (6, Some([0x37, 0xfa, 0x21, 0x3d])));
        let mut p = *b"\x7f\x9f\x4d\x51\x58";
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&p, b"Hello");
        // 256 bytes binary, 16-bit length; 64 KiB, 64-bit length
        let (h, _) = FrameHeader::parse(b"\x82\x7e\x01\x00").unwrap().unwrap();
        assert_eq!(h.len, 256);
        let (h, _) = FrameHeader::parse(b"\x82\x7f\0\0\0\0\0\x01\0\0")
            .unwrap()
            .unwrap();
        assert_eq!(h.len, 65536);
        // non-minimal lengths are accepted, a 64-bit length with the top bit is not
        let (h, _) = FrameHeader::parse(b"\x82\x7e\x00\x05").unwrap().unwrap();
        assert_eq!(h.len, 5);
        assert_eq!(
            FrameHeader::parse(b"\x82\x7f\x80\0\0\0\0\0\0\0"),
            Err(HeaderError)
        );
        // reserved opcodes parse (the codec refuses them)
        let (h, _) = FrameHeader::parse(b"\x83\x00").unwrap().unwrap();
        assert_eq!((h.opcode, h.opcode()), (3, None));
    }

    #[test]
    fn masking_matches_the_bytewise_definition() {
        let key = [0xa1, 0x02, 0xf3, 0x44];
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
            apply_mask(&mut fast, key);
            assert_eq!(fast, data);
        }
    }

    #[test]
    fn close_codes() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(is_valid_close_code(c), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(c), "{c}");
        }
        assert_eq!(parse_close(b"\x03\xe8\xff"), Err(CloseError::InvalidUtf8));
        assert_eq!(parse_close(b"\x00\x00"), Err(CloseError::InvalidCode(0)));
        assert_eq!(
            parse_close(b"\x0b\xb8")
                .unwrap()
                .map(|r| (r.code, r.reason)),
            Some((3000, String::new()))
        );
    }
}
