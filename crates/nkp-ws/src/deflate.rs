//! permessage-deflate (RFC 7692): negotiation (pure) and the per-direction compressor and
//! decompressor used by the codec.
//!
//! * The server takes the first acceptable offer of a `Sec-WebSocket-Extensions` request
//!   header ([`accept_offer`]) and answers with the parameters it agreed to; offers it
//!   cannot honour (unknown or duplicate parameters, bad values, a server window of 8
//!   bits) are declined, so the connection goes on uncompressed.
//! * The client offers `permessage-deflate; client_max_window_bits` ([`CLIENT_OFFER`]) and
//!   checks the server's answer ([`check_response`]): anything it did not offer, or bad
//!   parameters, fail the handshake.
//!
//! Compression uses flate2 on its pure-Rust zlib backend (zlib-rs), which can limit the
//! compressor's window (9 to 15 bits). A window of 8 bits cannot be produced by zlib, so
//! it is never agreed to for our compressor (a server declines such an offer; a client
//! fails a response asking for it). Our decompressor always runs with a 32 KiB window,
//! which inflates any window size the peer uses.
//!
//! ```
//! use nkp_ws::deflate::{accept_offer, check_response, CLIENT_OFFER};
//!
//! let (params, answer) = accept_offer([CLIENT_OFFER]).unwrap();
//! assert_eq!(answer, "permessage-deflate");
//! assert_eq!(check_response([answer.as_str()]), Ok(Some(params)));
//!
//! // the first acceptable offer wins; an unknown parameter declines its offer
//! let (p, answer) = accept_offer([
//!     "permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=10",
//! ])
//! .unwrap();
//! assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
//! assert_eq!(p.server_max_window_bits, 10);
//! ```

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::frame::Role;

/// The extension token.
pub const EXTENSION: &str = "permessage-deflate";

/// What a client offers: the extension, telling the server it may limit our window.
pub const CLIENT_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The tail every flushed message ends with, removed on the wire (RFC 7692 §7.2.1).
pub const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Messages shorter than this are sent uncompressed (RSV1 clear), which RFC 7692 allows:
/// deflate cannot shrink them enough to pay for the work.
pub const MIN_COMPRESS_LEN: usize = 64;

/// Compression level: zlib's default (6), as browsers, Python `websockets` and Node use.
const LEVEL: u32 = 6;

/// The parameters agreed for a connection. Window bits are 8 to 15; absent means 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server compresses with.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window the client compresses with.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// How `role` compresses: (reset after each message, window bits).
    pub fn outgoing(&self, role: Role) -> (bool, u8) {
        match role {
            Role::Server => (self.server_no_context_takeover, self.server_max_window_bits),
            Role::Client => (self.client_no_context_takeover, self.client_max_window_bits),
        }
    }

    /// Whether the peer of `role` resets its compressor after each message (then our
    /// decompressor may too).
    pub fn incoming_no_context_takeover(&self, role: Role) -> bool {
        match role {
            Role::Server => self.client_no_context_takeover,
            Role::Client => self.server_no_context_takeover,
        }
    }
}

/// One extension of a `Sec-WebSocket-Extensions` value: its name and parameters (values
/// unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Extension token, as written.
    pub name: String,
    /// Parameters in order: name and optional value.
    pub params: Vec<(String, Option<String>)>,
}

/// A `Sec-WebSocket-Extensions` value that does not follow RFC 6455 §9.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad Sec-WebSocket-Extensions value: {}", self.0)
    }
}

impl std::error::Error for SyntaxError {}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A small tokenizer over one header value.
struct Lexer<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while let Some(c) = self.s[self.at..].chars().next() {
            if c == ' ' || c == '\t' {
                self.at += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.s[self.at..].chars().next()
    }

    fn token(&mut self) -> Result<&'a str, SyntaxError> {
        self.skip_ws();
        let rest = &self.s[self.at..];
        let n = rest.find(|c| !is_tchar(c)).unwrap_or(rest.len());
        if n == 0 {
            return Err(SyntaxError(format!("token expected at {:?}", rest)));
        }
        self.at += n;
        Ok(&rest[..n])
    }

    fn value(&mut self) -> Result<String, SyntaxError> {
        if self.peek() != Some('"') {
            return self.token().map(str::to_string);
        }
        self.at += 1;
        let mut out = String::new();
        let mut chars = self.s[self.at..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(SyntaxError("unterminated quoted string".into()))
    }
}

/// Parses `Sec-WebSocket-Extensions` values (each may list several extensions, comma
/// separated; several header lines are given as several values).
///
/// ```
/// let e = nkp_ws::deflate::parse_extensions(["a; x=1; y=\"2\", b"]).unwrap();
/// assert_eq!(e.len(), 2);
/// assert_eq!(e[0].params[1], ("y".to_string(), Some("2".to_string())));
/// assert!(nkp_ws::deflate::parse_extensions(["a;;"]).is_err());
/// ```
pub fn parse_extensions<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Extension>, SyntaxError> {
    let mut out = Vec::new();
    for v in values {
        let mut lx = Lexer { s: v, at: 0 };
        loop {
            // empty list elements are allowed (`a, , b`)
            match lx.peek() {
                None => break,
                Some(',') => {
                    lx.at += 1;
                    continue;
                }
                Some(_) => {}
            }
            let name = lx.token()?.to_string();
            let mut params = Vec::new();
            loop {
                match lx.peek() {
                    None => break,
                    Some(',') => {
                        lx.at += 1;
                        break;
                    }
                    Some(';') => {
                        lx.at += 1;
                        let p = lx.token()?.to_string();
                        let value = if lx.peek() == Some('=') {
                            lx.at += 1;
                            Some(lx.value()?)
                        } else {
                            None
                        };
                        params.push((p, value));
                    }
                    Some(c) => return Err(SyntaxError(format!("unexpected {c:?} in {v:?}"))),
                }
            }
            out.push(Extension { name, params });
        }
    }
    Ok(out)
}

/// Window bits: exactly `8`..=`15`, no leading zeros or signs (RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    match v.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// Why an extension's parameters are not acceptable.
fn read_params(
    ext: &Extension,
    allowed_valueless_client_bits: bool,
) -> Result<(DeflateParams, bool), String> {
    let mut p = DeflateParams::default();
    let mut seen: Vec<&str> = Vec::new();
    // whether server_max_window_bits was given (the server must then answer it)
    let mut server_bits_given = false;
    for (name, value) in &ext.params {
        let lname = name.to_ascii_lowercase();
        if seen.contains(&lname.as_str()) {
            return Err(format!("duplicate parameter {name}"));
        }
        match (lname.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                p.server_max_window_bits =
                    window_bits(v).ok_or_else(|| format!("bad server_max_window_bits={v:?}"))?;
                server_bits_given = true;
            }
            ("client_max_window_bits", None) if allowed_valueless_client_bits => {}
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits =
                    window_bits(v).ok_or_else(|| format!("bad client_max_window_bits={v:?}"))?
            }
            (
                "server_no_context_takeover"
                | "client_no_context_takeover"
                | "server_max_window_bits"
                | "client_max_window_bits",
                _,
            ) => return Err(format!("bad value for {name}")),
            _ => return Err(format!("unknown parameter {name}")),
        }
        seen.push(match lname.as_str() {
            "server_no_context_takeover" => "server_no_context_takeover",
            "client_no_context_takeover" => "client_no_context_takeover",
            "server_max_window_bits" => "server_max_window_bits",
            _ => "client_max_window_bits",
        });
    }
    Ok((p, server_bits_given))
}

/// Server side: picks the first acceptable permessage-deflate offer among the request's
/// `Sec-WebSocket-Extensions` values and returns the agreed parameters with the response
/// header value; `None` when there is none (or the header does not parse): the
/// connection goes on without compression.
///
/// An offer is declined for an unknown or duplicate parameter, a bad value, or
/// `server_max_window_bits=8` (zlib cannot compress with a 256-byte window). The answer
/// repeats `server_no_context_takeover`, `client_no_context_takeover` and
/// `server_max_window_bits=N` when offered; the client's window hint is not limited.
pub fn accept_offer<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Option<(DeflateParams, String)> {
    let exts = parse_extensions(values).ok()?;
    for ext in exts
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(EXTENSION))
    {
        let Ok((mut p, server_bits_given)) = read_params(ext, true) else {
            continue;
        };
        if p.server_max_window_bits < 9 {
            continue;
        }
        let mut answer = String::from(EXTENSION);
        if p.server_no_context_takeover {
            answer.push_str("; server_no_context_takeover");
        }
        if p.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if server_bits_given {
            answer.push_str(&format!(
                "; server_max_window_bits={}",
                p.server_max_window_bits
            ));
        }
        // the client's window does not matter to our decompressor (always 15 bits)
        p.client_max_window_bits = 15;
        return Some((p, answer));
    }
    None
}

/// Client side: checks the server's `Sec-WebSocket-Extensions` answer to
/// [`CLIENT_OFFER`]. `Ok(None)`: no extension (uncompressed). An error names what is
/// wrong: an extension that was not offered, several, a bad or unknown parameter, or
/// `client_max_window_bits=8` (which our zlib backend cannot honour).
///
/// ```
/// use nkp_ws::deflate::check_response;
/// let p = check_response(["permessage-deflate; server_no_context_takeover; client_max_window_bits=12"])
///     .unwrap()
///     .unwrap();
/// assert!(p.server_no_context_takeover);
/// assert_eq!(p.client_max_window_bits, 12);
/// assert!(check_response(["x-webkit-deflate-frame"]).is_err());
/// assert!(check_response(["permessage-deflate; client_max_window_bits"]).is_err());
/// ```
pub fn check_response<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Option<DeflateParams>, String> {
    let exts = parse_extensions(values).map_err(|e| e.to_string())?;
    let ext = match exts.as_slice() {
        [] => return Ok(None),
        [e] => e,
        _ => return Err(format!("the server selected {} extensions", exts.len())),
    };
    if !ext.name.eq_ignore_ascii_case(EXTENSION) {
        return Err(format!(
            "the server selected extension {:?}, which was not offered",
            ext.name
        ));
    }
    let (p, _) = read_params(ext, false).map_err(|e| format!("permessage-deflate: {e}"))?;
    if p.client_max_window_bits < 9 {
        return Err(
            "permessage-deflate: client_max_window_bits=8 cannot be honoured (zlib compresses with 9 to 15 bits)"
                .into(),
        );
    }
    Ok(Some(p))
}

/// A corrupt compressed message, or one inflating past the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The data is not valid deflate.
    Corrupt(String),
    /// The output would be larger than the limit; `size` bytes were produced so far.
    TooLarge { size: usize },
}

/// Grows `v` so that it has room for `extra` more bytes, doubling but never past `cap`
/// in total (capacity is reserved exactly, so the cap is also a cap on allocation).
pub(crate) fn grow_capped(v: &mut Vec<u8>, extra: usize, cap: usize) {
    let need = v.len().saturating_add(extra);
    if need <= v.capacity() {
        return;
    }
    let target = need.max(v.capacity().saturating_mul(2)).min(cap.max(need));
    v.reserve_exact(target - v.len());
}

/// The compressing side of one connection: allocated at the first compressed message,
/// dropped after each message when context takeover is off.
pub(crate) struct Deflater {
    no_context_takeover: bool,
    window_bits: u8,
    z: Option<Box<Compress>>,
}

impl Deflater {
    pub(crate) fn new(no_context_takeover: bool, window_bits: u8) -> Self {
        Deflater {
            no_context_takeover,
            // never 8 by construction (negotiation); clamp so that flate2 cannot panic
            window_bits: window_bits.clamp(9, 15),
            z: None,
        }
    }

    /// Whether the previous messages are forgotten after each message.
    pub(crate) fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Whether compressor state is held (for tests of the idle footprint).
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.z.is_some()
    }

    /// Appends `input` compressed (sync-flushed, the trailer removed) to `out`.
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let bits = self.window_bits;
        let z = self.z.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                Compression::new(LEVEL),
                false,
                bits,
            ))
        });
        let start = out.len();
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve((input.len() - consumed) / 2 + 256);
            }
            let before = z.total_in();
            let status = z
                .compress_vec(&input[consumed..], out, FlushCompress::Sync)
                .map_err(|e| format!("deflate: {e}"))?;
            consumed += (z.total_in() - before) as usize;
            let room_left = out.len() < out.capacity();
            if (consumed == input.len() && room_left) || status == Status::BufError {
                break;
            }
        }
        if out.len() - start >= 4 && out.ends_with(&TRAILER) {
            out.truncate(out.len() - 4);
        }
        if self.no_context_takeover {
            // the state is rebuilt for the next message: idle connections hold none
            self.z = None;
        }
        Ok(())
    }
}

/// The decompressing side of one connection (32 KiB window, whatever the peer's).
pub(crate) struct Inflater {
    no_context_takeover: bool,
    z: Option<Box<Decompress>>,
    /// The peer ended a deflate stream (BFINAL): start a new one with the next message.
    ended: bool,
}

impl Inflater {
    pub(crate) fn new(no_context_takeover: bool) -> Self {
        Inflater {
            no_context_takeover,
            z: None,
            ended: false,
        }
    }

    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.z.is_some()
    }

    /// Inflates `input` (part of a compressed message) onto `out`, which may not grow past
    /// `max` bytes.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        if self.ended {
            // after a final block, a message's remaining bytes (the appended trailer)
            // are not deflate data
            return Ok(());
        }
        let z = self
            .z
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= max {
                    // full at the limit: one more byte of output means too large
                    let mut probe = [0u8; 1];
                    let before = z.total_out();
                    z.decompress(&input[consumed..], &mut probe, FlushDecompress::None)
                        .map_err(|e| InflateError::Corrupt(e.to_string()))?;
                    if z.total_out() > before {
                        return Err(InflateError::TooLarge {
                            size: out.len() + 1,
                        });
                    }
                    return Ok(());
                }
                let hint = (input.len() - consumed).saturating_mul(4).max(4096);
                grow_capped(out, hint.min(max - out.len()), max);
            }
            let (in0, out0) = (z.total_in(), out.len());
            let status = z
                .decompress_vec(&input[consumed..], out, FlushDecompress::None)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            consumed += (z.total_in() - in0) as usize;
            if status == Status::StreamEnd {
                self.ended = true;
                return Ok(());
            }
            let progress = consumed > 0 && z.total_in() > in0 || out.len() > out0;
            if (consumed == input.len() && out.len() < out.capacity()) || !progress {
                return Ok(());
            }
        }
    }

    /// Ends a message: the trailer is inflated (this flushes the last block), and the
    /// state is dropped when the peer does not keep context (or ended its stream).
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
        let r = self.inflate(&TRAILER, out, max);
        if self.no_context_takeover || self.ended || r.is_err() {
            self.z = None;
            self.ended = false;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    #[test]
    fn server_negotiation_table() {
        type Case<'a> = (&'a [&'a str], Option<(DeflateParams, &'a str)>);
        let cases: &[Case<'_>] = &[
            (
                &["permessage-deflate"],
                Some((params(false, false, 15, 15), "permessage-deflate")),
            ),
            (
                &["PerMessage-Deflate"],
                Some((params(false, false, 15, 15), "permessage-deflate")),
            ),
            (
                &["permessage-deflate; client_max_window_bits"],
                Some((params(false, false, 15, 15), "permessage-deflate")),
            ),
            (
                &["permessage-deflate; client_max_window_bits=10"],
                Some((params(false, false, 15, 15), "permessage-deflate")),
            ),
            (
                &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
                Some((
                    params(true, true, 15, 15),
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                )),
            ),
            (
                &["permessage-deflate; server_max_window_bits=12"],
                Some((
                    params(false, false, 12, 15),
                    "permessage-deflate; server_max_window_bits=12",
                )),
            ),
            (
                &["permessage-deflate; server_max_window_bits=\"9\""],
                Some((
                    params(false, false, 9, 15),
                    "permessage-deflate; server_max_window_bits=9",
                )),
            ),
            // declined offers, then an acceptable one (also across header lines)
            (
                &[
                    "permessage-deflate; server_max_window_bits=8, permessage-deflate; x=1",
                    "permessage-deflate; server_no_context_takeover=1",
                    "permessage-deflate;server_no_context_takeover;server_no_context_takeover",
                    "permessage-deflate; server_max_window_bits",
                    "permessage-deflate; server_max_window_bits=16",
                    "permessage-deflate; client_max_window_bits=7",
                    "permessage-deflate; server_max_window_bits=010",
                    "x-other, permessage-deflate; client_no_context_takeover",
                ],
                Some((
                    params(false, true, 15, 15),
                    "permessage-deflate; client_no_context_takeover",
                )),
            ),
            (&["permessage-deflate; server_max_window_bits=8"], None),
            (&["x-webkit-deflate-frame"], None),
            (&[], None),
            (&[""], None),
            // a header that does not parse declines everything
            (&["permessage-deflate; =1"], None),
            (&["permessage-deflate; a=\"open"], None),
        ];
        for (offer, want) in cases {
            let got = accept_offer(offer.iter().copied());
            let want = want.map(|(p, s)| (p, s.to_string()));
            assert_eq!(got, want, "offer {offer:?}");
            // whatever the server answers, a client accepts it (when it offered the same)
            if let Some((p, answer)) = got
                && !offer[0].contains("client_no_context")
            {
                let c = check_response([answer.as_str()]).unwrap().unwrap();
                assert_eq!(c.server_no_context_takeover, p.server_no_context_takeover);
                assert_eq!(c.server_max_window_bits, p.server_max_window_bits);
            }
        }
    }

    #[test]
    fn client_checks_the_answer() {
        let ok: &[(&str, DeflateParams)] = &[
            ("permessage-deflate", params(false, false, 15, 15)),
            (
                "permessage-deflate; client_max_window_bits=9",
                params(false, false, 15, 9),
            ),
            (
                "permessage-deflate; server_max_window_bits=8",
                params(false, false, 8, 15),
            ),
            (
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
                params(true, true, 15, 15),
            ),
        ];
        for (answer, want) in ok {
            assert_eq!(check_response([*answer]), Ok(Some(*want)), "{answer}");
        }
        assert_eq!(check_response([]), Ok(None));
        for bad in [
            "permessage-deflate, permessage-deflate",
            "foo",
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=20",
            "permessage-deflate; mystery",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate;;",
        ] {
            assert!(check_response([bad]).is_err(), "{bad}");
        }
    }

    fn compress_all(d: &mut Deflater, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        d.compress(input, &mut out).unwrap();
        out
    }

    fn inflate_all(i: &mut Inflater, input: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        i.inflate(input, &mut out, max)?;
        i.finish(&mut out, max)?;
        Ok(out)
    }

    /// RFC 7692 §7.2.3.1 and §7.2.3.2.
    #[test]
    fn rfc_7692_examples() {
        let mut d = Deflater::new(false, 15);
        let first = compress_all(&mut d, b"Hello");
        assert_eq!(first, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        // context takeover: the second "Hello" refers to the first
        let second = compress_all(&mut d, b"Hello");
        assert_eq!(second, [0xf2, 0x00, 0x11, 0x00, 0x00]);
        let mut i = Inflater::new(false);
        assert_eq!(inflate_all(&mut i, &first, 100).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut i, &second, 100).unwrap(), b"Hello");
        // the second alone cannot be inflated without the first
        let mut fresh = Inflater::new(false);
        assert!(inflate_all(&mut fresh, &second, 100).is_err());
        // no context takeover: the same output twice, and no state kept in between
        let mut d = Deflater::new(true, 15);
        assert_eq!(compress_all(&mut d, b"Hello"), first);
        assert!(!d.is_allocated());
        assert_eq!(compress_all(&mut d, b"Hello"), first);
        // §7.2.3.3: an uncompressed (stored) block, and §7.2.3.5 (two blocks)
        let mut i = Inflater::new(true);
        assert_eq!(
            inflate_all(
                &mut i,
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00
                ],
                100
            )
            .unwrap(),
            b"Hello"
        );
        assert!(!i.is_allocated());
        assert_eq!(
            inflate_all(
                &mut i,
                &[
                    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00
                ],
                100
            )
            .unwrap(),
            b"Hello"
        );
        // §7.2.3.4: BFINAL set; the next message starts a new stream
        let mut i = Inflater::new(false);
        assert_eq!(
            inflate_all(
                &mut i,
                &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
                100
            )
            .unwrap(),
            b"Hello"
        );
        assert_eq!(inflate_all(&mut i, &first, 100).unwrap(), b"Hello");
    }

    #[test]
    fn window_bits_and_round_trips() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {} of a compressible text\n", i % 977).into_bytes())
            .collect();
        for bits in 9..=15 {
            let mut d = Deflater::new(false, bits);
            let mut i = Inflater::new(false);
            for _ in 0..3 {
                let c = compress_all(&mut d, &text);
                assert!(c.len() < text.len() / 4, "bits {bits}: {}", c.len());
                assert_eq!(inflate_all(&mut i, &c, text.len()).unwrap(), text);
            }
        }
        // inflating in pieces (as fragments arrive) gives the same
        let mut d = Deflater::new(false, 15);
        let c = compress_all(&mut d, &text);
        let mut i = Inflater::new(false);
        let mut out = Vec::new();
        for piece in c.chunks(777) {
            i.inflate(piece, &mut out, text.len()).unwrap();
        }
        i.finish(&mut out, text.len()).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn bombs_stop_at_the_cap_without_allocating_past_it() {
        let zeros = vec![0u8; 2 * 1024 * 1024];
        let mut d = Deflater::new(false, 15);
        let c = compress_all(&mut d, &zeros);
        assert!(c.len() < 5_000, "{}", c.len());
        for max in [0usize, 1, 1000, 65_536, 1_000_000] {
            let mut i = Inflater::new(false);
            let mut out = Vec::new();
            let r = i
                .inflate(&c, &mut out, max)
                .and_then(|_| i.finish(&mut out, max));
            assert!(
                matches!(r, Err(InflateError::TooLarge { size }) if size > max),
                "max {max}: {r:?}"
            );
            assert!(
                out.capacity() <= max.max(4096).min(max),
                "max {max}: cap {}",
                out.capacity()
            );
            assert!(out.len() <= max);
        }
        // exactly at the cap is fine
        let mut i = Inflater::new(false);
        assert_eq!(
            inflate_all(&mut i, &c, zeros.len()).unwrap().len(),
            zeros.len()
        );
        // garbage is an error, not a panic
        let mut i = Inflater::new(false);
        assert!(matches!(
            inflate_all(&mut i, &[0xff; 64], 1000),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn growth_is_capped() {
        let mut v = Vec::new();
        grow_capped(&mut v, 10, 100);
        assert!(v.capacity() >= 10 && v.capacity() <= 100);
        v.resize(v.capacity(), 0);
        grow_capped(&mut v, 1000, 100);
        assert!(v.capacity() >= v.len() + 1000);
    }
}
