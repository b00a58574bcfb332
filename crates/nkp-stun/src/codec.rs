//! The STUN message codec (RFC 5389), Binding-sized: header, the attributes a Binding
//! exchange uses, FINGERPRINT and MESSAGE-INTEGRITY (short-term credentials).
//!
//! Decoding is strict about structure and never panics: anything that is not a well-formed
//! RFC 5389 message (no magic cookie, a length field that does not match the datagram, a
//! truncated attribute, a FINGERPRINT that does not verify, ...) is a [`DecodeError`].
//! Attributes this codec does not know are kept as [`Attribute::Unknown`] with their raw value,
//! so a responder can tell comprehension-required ones (type < 0x8000) apart.
//!
//! ```
//! use nkp_stun::codec::{Attribute, Class, Message, Method, TransactionId};
//!
//! let tid = TransactionId::new([7; 12]);
//! let mut msg = Message::new(Class::SuccessResponse, Method::BINDING, tid);
//! msg.attributes.push(Attribute::XorMappedAddress("[2001:db8::1]:5060".parse().unwrap()));
//! msg.attributes.push(Attribute::Fingerprint(0)); // the value is computed by encode()
//! let bytes = msg.encode().unwrap();
//!
//! assert!(nkp_stun::is_stun(&bytes));
//! let back = Message::decode(&bytes).unwrap(); // verifies the FINGERPRINT
//! assert_eq!(back.transaction_id, tid);
//! assert_eq!(back.mapped_address(), Some("[2001:db8::1]:5060".parse().unwrap()));
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes};
use ring::hmac;

/// The RFC 5389 magic cookie, bytes 4..8 of every message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the fixed message header.
pub const HEADER_LEN: usize = 20;
/// The value XORed into the CRC-32 of a FINGERPRINT attribute ("STUN").
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Largest body (attributes) a message can carry: the length field is 16 bits.
pub const MAX_BODY_LEN: usize = 0xFFFF;

/// Attribute type numbers (RFC 5389 §18.2).
pub mod attr {
    /// MAPPED-ADDRESS: the reflexive address, in clear (RFC 3489 clients read this one).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME (UTF-8).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY: HMAC-SHA1, 20 bytes.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE: class, number and reason phrase.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES: the list of types a 420 response could not understand.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// REALM (UTF-8), long-term credentials.
    pub const REALM: u16 = 0x0014;
    /// NONCE, long-term credentials.
    pub const NONCE: u16 = 0x0015;
    /// XOR-MAPPED-ADDRESS: the reflexive address XORed with the cookie (and transaction id).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// SOFTWARE: the agent's name and version (UTF-8).
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER: where to try instead.
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT: CRC-32 of the message XOR 0x5354554E; always the last attribute.
    pub const FINGERPRINT: u16 = 0x8028;
}

/// The 96-bit transaction id that pairs a response with its request.
///
/// ```
/// use nkp_stun::codec::TransactionId;
/// let a = TransactionId::random();
/// assert_ne!(a, TransactionId::random());
/// assert_eq!(TransactionId::new([0xab; 12]).to_string(), "abababababababababababab");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId([u8; 12]);

impl TransactionId {
    /// A transaction id with these bytes.
    pub const fn new(bytes: [u8; 12]) -> Self {
        TransactionId(bytes)
    }

    /// A fresh random transaction id (RFC 5389 §6: uniformly random).
    pub fn random() -> Self {
        TransactionId(rand::random())
    }

    /// The 12 bytes.
    pub const fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({self})")
    }
}

/// The message class, two bits spread over the message type (RFC 5389 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request (00): expects a response.
    Request,
    /// An indication (01): no response.
    Indication,
    /// A success response (10).
    SuccessResponse,
    /// An error response (11): carries ERROR-CODE.
    ErrorResponse,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// A 12-bit STUN method. Only [`Method::BINDING`] means something to nkpacket; other
/// methods decode (so they can be recognised and ignored) but are never answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(u16);

impl Method {
    /// Binding (0x001), the only method of RFC 5389 proper.
    pub const BINDING: Method = Method(0x001);

    /// The method with this number, if it fits in 12 bits.
    pub const fn new(value: u16) -> Option<Method> {
        if value <= 0x0FFF {
            Some(Method(value))
        } else {
            None
        }
    }

    /// The method number.
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// The 16-bit message type for a class and method: M11..M7 C1 M6..M4 C0 M3..M0.
fn message_type(class: Class, method: Method) -> u16 {
    let m = method.0;
    let c = class.bits();
    ((m & 0x0F80) << 2) | ((m & 0x0070) << 1) | (m & 0x000F) | ((c & 0b10) << 7) | ((c & 0b01) << 4)
}

fn split_message_type(t: u16) -> (Class, Method) {
    let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
    let class = ((t >> 7) & 0b10) | ((t >> 4) & 0b01);
    (Class::from_bits(class), Method(method))
}

/// One STUN attribute, decoded.
///
/// Encoding pads every value to a multiple of 4 bytes with zeros; decoding accepts any padding
/// bytes (RFC 5769's vectors pad with spaces).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute {
    /// MAPPED-ADDRESS (0x0001), IPv4 or IPv6.
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS (0x0020), IPv4 or IPv6; stored un-XORed.
    XorMappedAddress(SocketAddr),
    /// USERNAME (0x0006).
    Username(String),
    /// MESSAGE-INTEGRITY (0x0008): the HMAC-SHA1 as found. [`Message::encode_with_key`]
    /// computes it; [`check_integrity`] verifies it against the raw bytes.
    MessageIntegrity([u8; 20]),
    /// ERROR-CODE (0x0009): `code` is class × 100 + number (e.g. 420).
    ErrorCode {
        /// 300..=699.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// UNKNOWN-ATTRIBUTES (0x000A): attribute types the responder did not understand.
    UnknownAttributes(Vec<u16>),
    /// REALM (0x0014).
    Realm(String),
    /// NONCE (0x0015).
    Nonce(String),
    /// SOFTWARE (0x8022).
    Software(String),
    /// ALTERNATE-SERVER (0x8023).
    AlternateServer(SocketAddr),
    /// FINGERPRINT (0x8028): the CRC as found. [`Message::decode`] has verified it;
    /// [`Message::encode`] ignores this value and computes the right one.
    Fingerprint(u32),
    /// Any other attribute, kept raw (value without padding).
    Unknown {
        /// The attribute type; below 0x8000 it is comprehension-required.
        typ: u16,
        /// The value, without padding.
        value: Bytes,
    },
}

impl Attribute {
    /// The attribute type number.
    pub fn typ(&self) -> u16 {
        match self {
            Attribute::MappedAddress(_) => attr::MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => attr::XOR_MAPPED_ADDRESS,
            Attribute::Username(_) => attr::USERNAME,
            Attribute::MessageIntegrity(_) => attr::MESSAGE_INTEGRITY,
            Attribute::ErrorCode { .. } => attr::ERROR_CODE,
            Attribute::UnknownAttributes(_) => attr::UNKNOWN_ATTRIBUTES,
            Attribute::Realm(_) => attr::REALM,
            Attribute::Nonce(_) => attr::NONCE,
            Attribute::Software(_) => attr::SOFTWARE,
            Attribute::AlternateServer(_) => attr::ALTERNATE_SERVER,
            Attribute::Fingerprint(_) => attr::FINGERPRINT,
            Attribute::Unknown { typ, .. } => *typ,
        }
    }

    /// Whether an agent that does not understand this attribute must reject the message
    /// (type in 0x0000..=0x7FFF, RFC 5389 §15).
    pub fn is_comprehension_required(&self) -> bool {
        self.typ() < 0x8000
    }

    /// Decodes one attribute value (without padding) of type `typ`. The transaction id is
    /// needed for XOR-MAPPED-ADDRESS over IPv6.
    pub fn decode(typ: u16, value: &[u8], tid: &TransactionId) -> Result<Attribute, DecodeError> {
        let bad = |reason| DecodeError::BadAttribute { typ, reason };
        let text =
            |value: &[u8]| String::from_utf8(value.to_vec()).map_err(|_| bad("invalid UTF-8"));
        Ok(match typ {
            attr::MAPPED_ADDRESS => Attribute::MappedAddress(decode_address(typ, value, None)?),
            attr::XOR_MAPPED_ADDRESS => {
                Attribute::XorMappedAddress(decode_address(typ, value, Some(tid))?)
            }
            attr::ALTERNATE_SERVER => Attribute::AlternateServer(decode_address(typ, value, None)?),
            attr::USERNAME => Attribute::Username(text(value)?),
            attr::REALM => Attribute::Realm(text(value)?),
            attr::NONCE => Attribute::Nonce(text(value)?),
            attr::SOFTWARE => Attribute::Software(text(value)?),
            attr::MESSAGE_INTEGRITY => Attribute::MessageIntegrity(
                value
                    .try_into()
                    .map_err(|_| bad("MESSAGE-INTEGRITY must be 20 bytes"))?,
            ),
            attr::FINGERPRINT => Attribute::Fingerprint(u32::from_be_bytes(
                value
                    .try_into()
                    .map_err(|_| bad("FINGERPRINT must be 4 bytes"))?,
            )),
            attr::ERROR_CODE => {
                let (head, reason) = value
                    .split_first_chunk::<4>()
                    .ok_or(bad("ERROR-CODE shorter than 4 bytes"))?;
                let class = u16::from(head[2] & 0x07);
                let number = u16::from(head[3]);
                if number > 99 {
                    return Err(bad("ERROR-CODE number above 99"));
                }
                Attribute::ErrorCode {
                    code: class * 100 + number,
                    reason: text(reason)?,
                }
            }
            attr::UNKNOWN_ATTRIBUTES => {
                if !value.len().is_multiple_of(2) {
                    return Err(bad("UNKNOWN-ATTRIBUTES of odd length"));
                }
                Attribute::UnknownAttributes(
                    value
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect(),
                )
            }
            _ => Attribute::Unknown {
                typ,
                value: Bytes::copy_from_slice(value),
            },
        })
    }

    /// Appends the value (unpadded) to `out`. FINGERPRINT and MESSAGE-INTEGRITY write their
    /// stored values.
    fn encode_value(&self, tid: &TransactionId, out: &mut Vec<u8>) {
        match self {
            Attribute::MappedAddress(a) | Attribute::AlternateServer(a) => {
                encode_address(*a, None, out)
            }
            Attribute::XorMappedAddress(a) => encode_address(*a, Some(tid), out),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::MessageIntegrity(mac) => out.extend_from_slice(mac),
            Attribute::Fingerprint(crc) => out.extend_from_slice(&crc.to_be_bytes()),
            Attribute::ErrorCode { code, reason } => {
                let class = ((code / 100) & 0x07) as u8;
                let number = (code % 100) as u8;
                out.extend_from_slice(&[0, 0, class, number]);
                out.extend_from_slice(reason.as_bytes());
            }
            Attribute::UnknownAttributes(types) => types
                .iter()
                .for_each(|t| out.extend_from_slice(&t.to_be_bytes())),
            Attribute::Unknown { value, .. } => out.extend_from_slice(value),
        }
    }
}

/// The XOR mask of an address attribute: the cookie, then the transaction id.
fn xor_mask(tid: &TransactionId) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(tid.as_bytes());
    mask
}

/// Decodes a (XOR-)MAPPED-ADDRESS value: reserved, family, port, address.
fn decode_address(
    typ: u16,
    value: &[u8],
    xor: Option<&TransactionId>,
) -> Result<SocketAddr, DecodeError> {
    let bad = |reason| DecodeError::BadAttribute { typ, reason };
    let (head, addr) = value
        .split_first_chunk::<4>()
        .ok_or(bad("address shorter than 4 bytes"))?;
    let mask = xor.map(xor_mask).unwrap_or([0; 16]);
    let port = u16::from_be_bytes([head[2] ^ mask[0], head[3] ^ mask[1]]);
    let ip = match head[1] {
        0x01 => {
            let raw: [u8; 4] = addr
                .try_into()
                .map_err(|_| bad("IPv4 address not 4 bytes"))?;
            IpAddr::V4(Ipv4Addr::from(std::array::from_fn::<u8, 4, _>(|i| {
                raw[i] ^ mask[i]
            })))
        }
        0x02 => {
            let raw: [u8; 16] = addr
                .try_into()
                .map_err(|_| bad("IPv6 address not 16 bytes"))?;
            IpAddr::V6(Ipv6Addr::from(std::array::from_fn::<u8, 16, _>(|i| {
                raw[i] ^ mask[i]
            })))
        }
        _ => return Err(bad("unknown address family")),
    };
    Ok(SocketAddr::new(ip, port))
}

fn encode_address(addr: SocketAddr, xor: Option<&TransactionId>, out: &mut Vec<u8>) {
    let mask = xor.map(xor_mask).unwrap_or([0; 16]);
    let port = addr.port().to_be_bytes();
    let family = if addr.is_ipv4() { 0x01 } else { 0x02 };
    out.extend_from_slice(&[0, family, port[0] ^ mask[0], port[1] ^ mask[1]]);
    match addr.ip() {
        IpAddr::V4(ip) => out.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m)),
        IpAddr::V6(ip) => out.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m)),
    }
}

/// Why bytes are not a (valid) STUN message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than a header.
    #[error("{len} bytes is shorter than the 20-byte STUN header")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The first two bits are not zero.
    #[error("the first two bits are not zero: not a STUN message")]
    NotStun,
    /// Bytes 4..8 are not the RFC 5389 magic cookie (RFC 3489 messages end up here).
    #[error("bad magic cookie {0:#010x}")]
    BadCookie(u32),
    /// The length field is not the number of bytes after the header, or not a multiple of 4.
    #[error("length field {declared} does not match the {actual} bytes after the header")]
    BadLength {
        /// The length field.
        declared: usize,
        /// Bytes after the header.
        actual: usize,
    },
    /// An attribute header or value (with its padding) runs past the end.
    #[error("attribute at offset {offset} is truncated")]
    Truncated {
        /// Where the attribute starts.
        offset: usize,
    },
    /// A known attribute with a malformed value.
    #[error("malformed attribute {typ:#06x}: {reason}")]
    BadAttribute {
        /// The attribute type.
        typ: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// A FINGERPRINT attribute followed by something else.
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// The FINGERPRINT does not match the message.
    #[error("FINGERPRINT mismatch: computed {computed:#010x}, found {found:#010x}")]
    FingerprintMismatch {
        /// CRC-32 of the message XOR 0x5354554E.
        computed: u32,
        /// The attribute's value.
        found: u32,
    },
    /// [`check_integrity`] on a message without MESSAGE-INTEGRITY.
    #[error("no MESSAGE-INTEGRITY attribute")]
    NoIntegrity,
}

impl From<DecodeError> for nkp_core::Error {
    fn from(e: DecodeError) -> Self {
        nkp_core::Error::Protocol(format!("STUN: {e}"))
    }
}

/// A message too large for the 16-bit length field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("STUN message body of {0} bytes exceeds the 65535-byte maximum")]
pub struct TooLarge(pub usize);

/// Class, method and transaction id of a header, checked against the datagram length.
fn parse_header(data: &[u8]) -> Result<(Class, Method, TransactionId), DecodeError> {
    let header: &[u8; HEADER_LEN] = data
        .first_chunk()
        .ok_or(DecodeError::TooShort { len: data.len() })?;
    let typ = u16::from_be_bytes([header[0], header[1]]);
    if typ & 0xC000 != 0 {
        return Err(DecodeError::NotStun);
    }
    let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if cookie != MAGIC_COOKIE {
        return Err(DecodeError::BadCookie(cookie));
    }
    let actual = data.len() - HEADER_LEN;
    if declared != actual || !declared.is_multiple_of(4) {
        return Err(DecodeError::BadLength { declared, actual });
    }
    let mut tid = [0u8; 12];
    tid.copy_from_slice(&header[8..]);
    let (class, method) = split_message_type(typ);
    Ok((class, method, TransactionId(tid)))
}

/// Whether `data` is an RFC 5389 STUN message: at least 20 bytes, first two bits 0, the magic
/// cookie, and a length field equal to the bytes after the header and a multiple of 4.
///
/// This is the cheap test a shared UDP port uses to pick STUN out of protocol traffic; it
/// does not look at the attributes.
///
/// ```
/// let req = nkp_stun::binding_request().1;
/// assert!(nkp_stun::is_stun(&req));
/// assert!(!nkp_stun::is_stun(b"INVITE sip:bob@example.com SIP/2.0\r\n"));
/// assert!(!nkp_stun::is_stun(&req[..19]));
/// ```
pub fn is_stun(data: &[u8]) -> bool {
    parse_header(data).is_ok()
}

/// One attribute's type, value (unpadded) and the offset of the next attribute.
fn read_tlv(data: &[u8], offset: usize) -> Result<(u16, &[u8], usize), DecodeError> {
    let truncated = DecodeError::Truncated { offset };
    let head = data
        .get(offset..)
        .and_then(|rest| rest.first_chunk::<4>())
        .ok_or(truncated.clone())?;
    let typ = u16::from_be_bytes([head[0], head[1]]);
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let start = offset + 4;
    let next = start + padded(len);
    if next > data.len() {
        return Err(truncated);
    }
    let value = data.get(start..start + len).ok_or(truncated)?;
    Ok((typ, value, next))
}

const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Decodes a bare attribute list (the bytes after a header), in order, without the
/// message-level checks of [`Message::decode`] (FINGERPRINT position and value).
///
/// ```
/// use nkp_stun::codec::{decode_attributes, Attribute, TransactionId};
/// let list = [0x80, 0x22, 0x00, 0x03, b'n', b'k', b'p', 0x00];
/// let attrs = decode_attributes(&list, &TransactionId::new([0; 12])).unwrap();
/// assert_eq!(attrs, vec![Attribute::Software("nkp".into())]);
/// ```
pub fn decode_attributes(data: &[u8], tid: &TransactionId) -> Result<Vec<Attribute>, DecodeError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let (typ, value, next) = read_tlv(data, offset)?;
        out.push(Attribute::decode(typ, value, tid)?);
        offset = next;
    }
    Ok(out)
}

/// Verifies the MESSAGE-INTEGRITY of a raw message with a short-term credential `key` (the
/// password; RFC 5389 §15.4). `Ok(true)` when the HMAC-SHA1 matches, `Ok(false)` when it
/// does not, `Err` when the bytes are not a message or carry no MESSAGE-INTEGRITY.
///
/// ```
/// use nkp_stun::codec::{check_integrity, Attribute, Class, Message, Method, TransactionId};
/// let mut msg = Message::new(Class::Request, Method::BINDING, TransactionId::random());
/// msg.attributes.push(Attribute::Username("alice".into()));
/// msg.attributes.push(Attribute::MessageIntegrity([0; 20])); // computed by encode_with_key
/// let bytes = msg.encode_with_key(b"secret").unwrap();
/// assert_eq!(check_integrity(&bytes, b"secret"), Ok(true));
/// assert_eq!(check_integrity(&bytes, b"guess"), Ok(false));
/// ```
pub fn check_integrity(data: &[u8], key: &[u8]) -> Result<bool, DecodeError> {
    parse_header(data)?;
    let mut offset = HEADER_LEN;
    while offset < data.len() {
        let (typ, value, next) = read_tlv(data, offset)?;
        if typ == attr::MESSAGE_INTEGRITY {
            let mac: &[u8; 20] = value.try_into().map_err(|_| DecodeError::BadAttribute {
                typ,
                reason: "MESSAGE-INTEGRITY must be 20 bytes",
            })?;
            let covered = data
                .get(..offset)
                .ok_or(DecodeError::Truncated { offset })?;
            let mut signed = covered.to_vec();
            set_length(&mut signed, offset + 24 - HEADER_LEN);
            let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            return Ok(hmac::verify(&key, &signed, mac).is_ok());
        }
        offset = next;
    }
    Err(DecodeError::NoIntegrity)
}

/// Writes the body length into a buffer that starts with a header.
fn set_length(buf: &mut [u8], body_len: usize) {
    let len = u16::try_from(body_len).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(field) = buf.get_mut(2..4) {
        field.copy_from_slice(&len);
    }
}

/// A STUN message: class, method, transaction id and attributes in wire order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Request, indication, success or error response.
    pub class: Class,
    /// The method ([`Method::BINDING`] for everything nkpacket does).
    pub method: Method,
    /// The 96-bit transaction id.
    pub transaction_id: TransactionId,
    /// The attributes, in order. Attributes following MESSAGE-INTEGRITY other than
    /// FINGERPRINT are dropped on decoding (RFC 5389 §15.4).
    pub attributes: Vec<Attribute>,
}

impl Message {
    /// A message without attributes.
    pub fn new(class: Class, method: Method, transaction_id: TransactionId) -> Self {
        Message {
            class,
            method,
            transaction_id,
            attributes: Vec::new(),
        }
    }

    /// Decodes and checks a whole message (header as [`is_stun`], every attribute). A
    /// FINGERPRINT, when present, must be last and must match. MESSAGE-INTEGRITY is decoded
    /// but not verified (that needs a key: [`check_integrity`]).
    ///
    /// ```
    /// use nkp_stun::codec::{Class, DecodeError, Message, Method};
    /// let (tid, req) = nkp_stun::binding_request();
    /// let msg = Message::decode(&req).unwrap();
    /// assert_eq!((msg.class, msg.method, msg.transaction_id), (Class::Request, Method::BINDING, tid));
    /// assert!(msg.attributes.is_empty());
    /// assert_eq!(Message::decode(&req[..12]), Err(DecodeError::TooShort { len: 12 }));
    /// ```
    pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
        let (class, method, transaction_id) = parse_header(data)?;
        let mut attributes = Vec::new();
        let mut offset = HEADER_LEN;
        let mut after_integrity = false;
        while offset < data.len() {
            let (typ, value, next) = read_tlv(data, offset)?;
            if typ == attr::FINGERPRINT {
                if next != data.len() {
                    return Err(DecodeError::FingerprintNotLast);
                }
                let found = match Attribute::decode(typ, value, &transaction_id)? {
                    Attribute::Fingerprint(found) => found,
                    _ => return Err(DecodeError::FingerprintNotLast),
                };
                let covered = data
                    .get(..offset)
                    .ok_or(DecodeError::Truncated { offset })?;
                let computed = crc32fast::hash(covered) ^ FINGERPRINT_XOR;
                if computed != found {
                    return Err(DecodeError::FingerprintMismatch { computed, found });
                }
                attributes.push(Attribute::Fingerprint(found));
            } else if !after_integrity {
                attributes.push(Attribute::decode(typ, value, &transaction_id)?);
                after_integrity = typ == attr::MESSAGE_INTEGRITY;
            }
            offset = next;
        }
        Ok(Message {
            class,
            method,
            transaction_id,
            attributes,
        })
    }

    /// Encodes the message. A [`Attribute::Fingerprint`] gets its correct value computed (put
    /// it last); a [`Attribute::MessageIntegrity`] is written as stored (use
    /// [`Message::encode_with_key`] to compute it). Values are zero-padded.
    pub fn encode(&self) -> Result<Bytes, TooLarge> {
        self.encode_inner(None)
    }

    /// As [`Message::encode`], and a [`Attribute::MessageIntegrity`] gets the HMAC-SHA1 of
    /// the message so far with the short-term credential `key` (RFC 5389 §15.4).
    pub fn encode_with_key(&self, key: &[u8]) -> Result<Bytes, TooLarge> {
        self.encode_inner(Some(key))
    }

    fn encode_inner(&self, key: Option<&[u8]>) -> Result<Bytes, TooLarge> {
        let tid = &self.transaction_id;
        let mut buf = Vec::with_capacity(HEADER_LEN + 64);
        buf.put_u16(message_type(self.class, self.method));
        buf.put_u16(0);
        buf.put_u32(MAGIC_COOKIE);
        buf.put_slice(tid.as_bytes());
        let mut value = Vec::new();
        for attribute in &self.attributes {
            value.clear();
            let typ = attribute.typ();
            match (attribute, key) {
                (Attribute::Fingerprint(_), _) => {
                    let body = checked_body(buf.len() + 8)?;
                    set_length(&mut buf, body);
                    let crc = crc32fast::hash(&buf) ^ FINGERPRINT_XOR;
                    value.extend_from_slice(&crc.to_be_bytes());
                }
                (Attribute::MessageIntegrity(_), Some(key)) => {
                    let body = checked_body(buf.len() + 24)?;
                    set_length(&mut buf, body);
                    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
                    value.extend_from_slice(hmac::sign(&key, &buf).as_ref());
                }
                _ => attribute.encode_value(tid, &mut value),
            }
            let len = u16::try_from(value.len()).map_err(|_| TooLarge(value.len()))?;
            checked_body(buf.len() + 4 + padded(value.len()))?;
            buf.put_u16(typ);
            buf.put_u16(len);
            buf.put_slice(&value);
            buf.resize(buf.len() + padded(value.len()) - value.len(), 0);
        }
        let body = checked_body(buf.len())?;
        set_length(&mut buf, body);
        Ok(Bytes::from(buf))
    }

    /// The first attribute of type `typ`.
    pub fn attribute(&self, typ: u16) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.typ() == typ)
    }

    /// The reflexive address: XOR-MAPPED-ADDRESS if present, else MAPPED-ADDRESS.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        let find = |typ| match self.attribute(typ) {
            Some(Attribute::XorMappedAddress(a) | Attribute::MappedAddress(a)) => Some(*a),
            _ => None,
        };
        find(attr::XOR_MAPPED_ADDRESS).or_else(|| find(attr::MAPPED_ADDRESS))
    }

    /// The ERROR-CODE's code and reason, if present.
    pub fn error_code(&self) -> Option<(u16, &str)> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ErrorCode { code, reason } => Some((*code, reason.as_str())),
            _ => None,
        })
    }
}

/// The body length of a buffer of `total` bytes, if it fits the length field.
fn checked_body(total: usize) -> Result<usize, TooLarge> {
    let body = total.saturating_sub(HEADER_LEN);
    if body > MAX_BODY_LEN {
        Err(TooLarge(body))
    } else {
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Decodes a hex string (whitespace ignored).
    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    // RFC 5769 test vectors, transcribed from the RFC text (§2.1–§2.3). Their MESSAGE-INTEGRITY
    // and FINGERPRINT values check the transcription: a wrong byte fails the tests below.
    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const RFC_TID: TransactionId = TransactionId::new([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]);

    /// §2.1 Sample Request.
    fn sample_request() -> Vec<u8> {
        hex("00010058 2112a442 b7e7a701 bc34d686 fa87dfae
             80220010 5354554e 20746573 7420636c 69656e74
             00240004 6e0001ff
             80290008 932ff9b1 51263b36
             00060009 6576746a 3a683676 59202020
             00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
             80280004 e57a3bcf")
    }

    /// §2.2 Sample IPv4 Response.
    fn sample_ipv4_response() -> Vec<u8> {
        hex("0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
             8022000b 74657374 20766563 746f7220
             00200008 0001a147 e112a643
             00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
             80280004 c07d4c96")
    }

    /// §2.3 Sample IPv6 Response.
    fn sample_ipv6_response() -> Vec<u8> {
        hex("01010048 2112a442 b7e7a701 bc34d686 fa87dfae
             8022000b 74657374 20766563 746f7220
             00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
             00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
             80280004 c8fb0b4c")
    }

    #[test]
    fn rfc5769_sample_request() {
        let data = sample_request();
        assert_eq!(data.len(), 108);
        assert!(is_stun(&data));
        let msg = Message::decode(&data).unwrap();
        assert_eq!(msg.class, Class::Request);
        assert_eq!(msg.method, Method::BINDING);
        assert_eq!(msg.transaction_id, RFC_TID);
        let types: Vec<u16> = msg.attributes.iter().map(Attribute::typ).collect();
        assert_eq!(types, [0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
        assert_eq!(
            msg.attributes[0],
            Attribute::Software("STUN test client".into())
        );
        assert_eq!(
            msg.attributes[1],
            Attribute::Unknown {
                typ: 0x0024,
                value: Bytes::from_static(&[0x6e, 0x00, 0x01, 0xff])
            }
        );
        assert_eq!(msg.attributes[3], Attribute::Username("evtj:h6vY".into()));
        assert_eq!(msg.attributes[5], Attribute::Fingerprint(0xe57a3bcf));
        assert_eq!(check_integrity(&data, PASSWORD), Ok(true));
        assert_eq!(check_integrity(&data, b"VOkJxbRl1RmTxUk/WvJxBu"), Ok(false));
    }

    #[test]
    fn rfc5769_sample_ipv4_response() {
        let data = sample_ipv4_response();
        let msg = Message::decode(&data).unwrap();
        assert_eq!(msg.class, Class::SuccessResponse);
        assert_eq!(msg.transaction_id, RFC_TID);
        assert_eq!(msg.attributes[0], Attribute::Software("test vector".into()));
        let mapped: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        assert_eq!(msg.attributes[1], Attribute::XorMappedAddress(mapped));
        assert_eq!(msg.mapped_address(), Some(mapped));
        assert_eq!(check_integrity(&data, PASSWORD), Ok(true));

        // Our encoding of the same XOR-MAPPED-ADDRESS is the RFC's, byte for byte.
        let mut ours = Message::new(Class::SuccessResponse, Method::BINDING, RFC_TID);
        ours.attributes.push(Attribute::XorMappedAddress(mapped));
        assert_eq!(ours.encode().unwrap()[20..], data[36..48]);
    }

    #[test]
    fn rfc5769_sample_ipv6_response() {
        let data = sample_ipv6_response();
        let msg = Message::decode(&data).unwrap();
        let mapped: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        assert_eq!(msg.attributes[1], Attribute::XorMappedAddress(mapped));
        assert_eq!(check_integrity(&data, PASSWORD), Ok(true));

        let mut ours = Message::new(Class::SuccessResponse, Method::BINDING, RFC_TID);
        ours.attributes.push(Attribute::XorMappedAddress(mapped));
        assert_eq!(ours.encode().unwrap()[20..], data[36..60]);
    }

    #[test]
    fn rfc5769_vectors_re_encode() {
        // The RFC pads with spaces, we pad with zeros. Our encoding of the decoded message
        // (HMAC and CRC recomputed) must verify, and equal the vector with zeroed padding
        // everywhere but in the MESSAGE-INTEGRITY and FINGERPRINT values.
        for data in [
            sample_request(),
            sample_ipv4_response(),
            sample_ipv6_response(),
        ] {
            let msg = Message::decode(&data).unwrap();
            let ours = msg.encode_with_key(PASSWORD).unwrap();
            assert_eq!(check_integrity(&ours, PASSWORD), Ok(true));
            assert_eq!(
                Message::decode(&ours).unwrap().attributes.len(),
                msg.attributes.len()
            );

            let mut expected = data.clone();
            let mut computed = Vec::new();
            let mut offset = HEADER_LEN;
            while offset < data.len() {
                let (typ, value, next) = read_tlv(&data, offset).unwrap();
                expected[offset + 4 + value.len()..next].fill(0);
                if typ == attr::MESSAGE_INTEGRITY || typ == attr::FINGERPRINT {
                    computed.push(offset + 4..next);
                }
                offset = next;
            }
            assert_eq!(ours.len(), expected.len());
            for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
                if !computed.iter().any(|r| r.contains(&i)) {
                    assert_eq!(a, b, "byte {i}");
                }
            }
        }
    }

    #[test]
    fn rfc5769_tampering_is_detected() {
        let data = sample_ipv4_response();
        // Every byte the FINGERPRINT covers (flipping its own type just makes it unknown).
        for i in HEADER_LEN..data.len() - 8 {
            let mut bad = data.clone();
            bad[i] ^= 0x01;
            assert!(Message::decode(&bad).is_err(), "flipped byte {i} decoded");
        }
        // With a fingerprint recomputed over the change, MESSAGE-INTEGRITY still catches it.
        let mut msg = Message::decode(&data).unwrap();
        msg.attributes[1] = Attribute::XorMappedAddress("192.0.2.2:32853".parse().unwrap());
        let forged = msg.encode().unwrap();
        assert!(Message::decode(&forged).is_ok());
        assert_eq!(check_integrity(&forged, PASSWORD), Ok(false));
    }

    /// §13 item 103 of the spec (the original's disabled codec test).
    #[test]
    fn spec_item_103() {
        let tid = TransactionId::random();
        let mut list = Vec::new();
        list.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
        list.extend_from_slice(b"abcd");
        list.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01]);
        list.extend_from_slice(&1234u16.to_be_bytes());
        list.extend_from_slice(&[127, 0, 0, 1]);
        list.extend_from_slice(&[0x00, 0x06, 0x00, 0x05]);
        list.extend_from_slice(b"alice\0\0\0");
        assert_eq!(
            decode_attributes(&list, &tid).unwrap(),
            vec![
                Attribute::Fingerprint(u32::from_be_bytes(*b"abcd")),
                Attribute::MappedAddress("127.0.0.1:1234".parse().unwrap()),
                Attribute::Username("alice".into()),
            ]
        );

        let (tid, request) = crate::binding_request();
        assert_eq!(
            Message::decode(&request).unwrap(),
            Message::new(Class::Request, Method::BINDING, tid)
        );

        let response = crate::respond(&request, "1.2.3.4:5".parse().unwrap()).unwrap();
        let msg = Message::decode(&response).unwrap();
        assert_eq!(
            msg.attribute(attr::XOR_MAPPED_ADDRESS),
            Some(&Attribute::XorMappedAddress("1.2.3.4:5".parse().unwrap()))
        );
    }

    #[test]
    fn message_type_bits() {
        let cases = [
            (Class::Request, Method::BINDING, 0x0001),
            (Class::Indication, Method::BINDING, 0x0011),
            (Class::SuccessResponse, Method::BINDING, 0x0101),
            (Class::ErrorResponse, Method::BINDING, 0x0111),
            (Class::Request, Method(0x003), 0x0003), // TURN Allocate
            (Class::ErrorResponse, Method(0xFFF), 0x3FFF),
        ];
        for (class, method, typ) in cases {
            assert_eq!(message_type(class, method), typ);
            assert_eq!(split_message_type(typ), (class, method));
        }
        assert_eq!(Method::new(0x1000), None);
        assert_eq!(Method::new(0x0FFF).map(Method::value), Some(0x0FFF));
    }

    fn every_attribute() -> Vec<Attribute> {
        vec![
            Attribute::XorMappedAddress("10.0.0.1:65535".parse().unwrap()),
            Attribute::XorMappedAddress("[fe80::1:2]:1".parse().unwrap()),
            Attribute::MappedAddress("[::1]:3478".parse().unwrap()),
            Attribute::MappedAddress("0.0.0.0:0".parse().unwrap()),
            Attribute::AlternateServer("192.0.2.3:3479".parse().unwrap()),
            Attribute::Username("ñandú".into()),
            Attribute::Realm("example.org".into()),
            Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA".into()),
            Attribute::Software(String::new()),
            Attribute::ErrorCode {
                code: 420,
                reason: "Unknown Attribute".into(),
            },
            Attribute::ErrorCode {
                code: 300,
                reason: String::new(),
            },
            Attribute::UnknownAttributes(vec![0x0024, 0x0025, 0x7fff]),
            Attribute::UnknownAttributes(vec![]),
            Attribute::Unknown {
                typ: 0x8029,
                value: Bytes::from_static(b"12345"),
            },
            Attribute::Unknown {
                typ: 0x0025,
                value: Bytes::new(),
            },
            Attribute::MessageIntegrity([9; 20]),
            Attribute::Fingerprint(0),
        ]
    }

    #[test]
    fn round_trip_every_class_and_attribute() {
        for class in [
            Class::Request,
            Class::Indication,
            Class::SuccessResponse,
            Class::ErrorResponse,
        ] {
            let mut msg = Message::new(class, Method::BINDING, TransactionId::random());
            msg.attributes = every_attribute();
            let bytes = msg.encode().unwrap();
            assert!(is_stun(&bytes));
            assert_eq!(bytes.len() % 4, 0);
            let back = Message::decode(&bytes).unwrap();
            // The fingerprint was computed by encode(): everything else comes back as is.
            let n = msg.attributes.len();
            assert_eq!(back.attributes[..n - 1], msg.attributes[..n - 1]);
            assert!(matches!(back.attributes[n - 1], Attribute::Fingerprint(_)));
            assert_eq!(
                (back.class, back.transaction_id),
                (class, msg.transaction_id)
            );
            // Encoding is deterministic.
            assert_eq!(back.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn attributes_after_message_integrity_are_ignored() {
        let mut msg = Message::new(Class::Request, Method::BINDING, TransactionId::random());
        msg.attributes = vec![
            Attribute::Username("u".into()),
            Attribute::MessageIntegrity([0; 20]),
            Attribute::Software("after".into()),
            Attribute::Fingerprint(0),
        ];
        let bytes = msg.encode_with_key(b"k").unwrap();
        let back = Message::decode(&bytes).unwrap();
        let types: Vec<u16> = back.attributes.iter().map(Attribute::typ).collect();
        assert_eq!(
            types,
            [attr::USERNAME, attr::MESSAGE_INTEGRITY, attr::FINGERPRINT]
        );
    }

    #[test]
    fn structural_errors_are_typed() {
        let (_, req) = crate::binding_request();
        let req = req.to_vec();
        assert_eq!(Message::decode(&[]), Err(DecodeError::TooShort { len: 0 }));
        let mut bad = req.clone();
        bad[0] = 0x40;
        assert_eq!(Message::decode(&bad), Err(DecodeError::NotStun));
        let mut bad = req.clone();
        bad[4] = 0;
        assert_eq!(
            Message::decode(&bad),
            Err(DecodeError::BadCookie(0x0012_a442))
        );
        let mut bad = req.clone();
        bad.extend_from_slice(&[0; 4]);
        assert_eq!(
            Message::decode(&bad),
            Err(DecodeError::BadLength {
                declared: 0,
                actual: 4
            })
        );
        // Length field right but not a multiple of 4.
        let mut bad = req.clone();
        bad[3] = 2;
        bad.extend_from_slice(&[0; 2]);
        assert!(matches!(
            Message::decode(&bad),
            Err(DecodeError::BadLength { .. })
        ));
        // An attribute whose value runs past the end.
        let mut bad = req.clone();
        bad[3] = 8;
        bad.extend_from_slice(&[0x80, 0x22, 0x00, 0x05, b'a', b'b', b'c', b'd']);
        assert_eq!(
            Message::decode(&bad),
            Err(DecodeError::Truncated { offset: 20 })
        );
        // FINGERPRINT not last.
        let mut msg = Message::new(Class::Request, Method::BINDING, TransactionId::random());
        msg.attributes = vec![Attribute::Fingerprint(0), Attribute::Software("x".into())];
        assert_eq!(
            Message::decode(&msg.encode().unwrap()),
            Err(DecodeError::FingerprintNotLast)
        );
        // Bad address family, bad lengths, bad UTF-8, bad error number.
        let tid = TransactionId::random();
        for (typ, value) in [
            (attr::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4][..]),
            (attr::MAPPED_ADDRESS, &[0, 1, 0, 0, 1, 2, 3][..]),
            (attr::MAPPED_ADDRESS, &[0, 2, 0, 0, 1, 2, 3, 4][..]),
            (attr::MAPPED_ADDRESS, &[0, 1][..]),
            (attr::SOFTWARE, &[0xff, 0xfe][..]),
            (attr::ERROR_CODE, &[0, 0, 4][..]),
            (attr::ERROR_CODE, &[0, 0, 4, 100][..]),
            (attr::UNKNOWN_ATTRIBUTES, &[0, 1, 2][..]),
            (attr::MESSAGE_INTEGRITY, &[0; 19][..]),
            (attr::FINGERPRINT, &[0; 5][..]),
        ] {
            assert!(
                matches!(
                    Attribute::decode(typ, value, &tid),
                    Err(DecodeError::BadAttribute { typ: t, .. }) if t == typ
                ),
                "{typ:#06x} {value:?}"
            );
        }
        assert_eq!(check_integrity(&req, b"k"), Err(DecodeError::NoIntegrity));
    }

    #[test]
    fn too_large_is_an_error_not_a_panic() {
        let mut msg = Message::new(Class::Request, Method::BINDING, TransactionId::random());
        msg.attributes.push(Attribute::Unknown {
            typ: 0x8000,
            value: Bytes::from(vec![0; 0x10000]),
        });
        assert_eq!(msg.encode(), Err(TooLarge(0x10000)));
        msg.attributes = vec![
            Attribute::Unknown {
                typ: 0x8000,
                value: Bytes::from(vec![0; 0xFFF8]),
            },
            Attribute::Fingerprint(0),
        ];
        assert!(msg.encode().is_err());
        // Without the FINGERPRINT it fits: a body of 0xFFFC bytes, the largest multiple of 4.
        msg.attributes = vec![Attribute::Unknown {
            typ: 0x8000,
            value: Bytes::from(vec![0; 0xFFF8]),
        }];
        let bytes = msg.encode().unwrap();
        assert_eq!(Message::decode(&bytes).unwrap(), msg);
    }

    /// Truncations, bit flips and random bytes never panic, and whatever decodes re-encodes.
    #[test]
    fn fuzz_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5354_554E);
        let mut seeds: Vec<Vec<u8>> = vec![
            sample_request(),
            sample_ipv4_response(),
            sample_ipv6_response(),
        ];
        let mut msg = Message::new(
            Class::SuccessResponse,
            Method::BINDING,
            TransactionId::random(),
        );
        msg.attributes = every_attribute();
        seeds.push(msg.encode().unwrap().to_vec());
        let mut decoded = 0;
        let mut check = |data: &[u8]| {
            let _ = is_stun(data);
            let _ = check_integrity(data, PASSWORD);
            let _ = decode_attributes(data, &RFC_TID);
            let _ = crate::respond(data, "127.0.0.1:1".parse().unwrap());
            if let Ok(m) = Message::decode(data) {
                decoded += 1;
                let again = m.encode().unwrap();
                // Known attributes may normalise padding, but the re-encoding decodes the same.
                let m2 = Message::decode(&again).unwrap();
                assert_eq!(m2.transaction_id, m.transaction_id);
                assert_eq!(m2.attributes.len(), m.attributes.len());
            }
        };
        for seed in &seeds {
            for len in 0..=seed.len() {
                check(&seed[..len]);
            }
            for _ in 0..2000 {
                let mut data = seed.clone();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..data.len());
                    data[i] = rng.random();
                }
                check(&data);
            }
        }
        for _ in 0..20_000 {
            // Random bodies behind a valid header, so the attribute parser is exercised.
            let body_len = 4 * rng.random_range(0..16);
            let mut data = vec![0x00, 0x01];
            data.extend_from_slice(&(body_len as u16).to_be_bytes());
            data.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            data.extend((0..12 + body_len).map(|_| rng.random::<u8>()));
            check(&data);
            let junk: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            check(&junk);
        }
        assert!(decoded > 1000, "only {decoded} inputs decoded");
    }
}
