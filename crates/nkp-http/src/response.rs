//! [`HttpResponse`]: a response with status and headers, carried in one [`Frame`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use nkp_core::{Error, Frame};

/// Marks a binary frame that carries an encoded [`HttpResponse`] (a NUL byte first, which no
/// ordinary body of a text protocol starts with).
const MAGIC: &[u8] = b"\0nkp-http-response\x01";

/// A full HTTP response (status, headers, body) that protocol code writes on an HTTP server
/// link as one frame.
///
/// Writing a plain data frame on an HTTP server link answers `200` with that body
/// (`application/octet-stream` for binary frames, `text/plain; charset=utf-8` for text);
/// to choose the status or add headers, write `HttpResponse::into_frame()` instead:
///
/// ```
/// use nkp_http::HttpResponse;
/// let frame = HttpResponse::new(201)
///     .header("content-type", "application/json")
///     .body(r#"{"ok":true}"#)
///     .into_frame();
/// let back = HttpResponse::from_frame(&frame).unwrap().unwrap();
/// assert_eq!(back.status, 201);
/// assert_eq!(back.headers, vec![("content-type".to_string(), "application/json".to_string())]);
/// assert_eq!(&back.body[..], br#"{"ok":true}"#);
/// // any other frame is not a response
/// assert!(HttpResponse::from_frame(&nkp_core::Frame::binary(&b"hello"[..])).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code (100–999).
    pub status: u16,
    /// Headers, in order (names as given).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Encodes the response into one binary frame (see [`HttpResponse::from_frame`]).
    pub fn into_frame(self) -> Frame {
        let mut b = BytesMut::with_capacity(MAGIC.len() + 8 + self.body.len());
        b.put_slice(MAGIC);
        b.put_u16(self.status);
        b.put_u16(u16::try_from(self.headers.len()).unwrap_or(u16::MAX));
        for (n, v) in self.headers.iter().take(u16::MAX as usize) {
            put_str(&mut b, n);
            put_str(&mut b, v);
        }
        b.put_slice(&self.body);
        Frame::Binary(b.freeze())
    }

    /// Decodes a frame made by [`HttpResponse::into_frame`]: `None` for any other frame,
    /// `Some(Err(..))` for a damaged one.
    pub fn from_frame(frame: &Frame) -> Option<Result<HttpResponse, Error>> {
        let Frame::Binary(data) = frame else {
            return None;
        };
        if !data.starts_with(MAGIC) {
            return None;
        }
        Some(decode(data.slice(MAGIC.len()..)))
    }
}

fn put_str(b: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    b.put_u32(len);
    b.put_slice(&bytes[..len as usize]);
}

fn decode(mut data: Bytes) -> Result<HttpResponse, Error> {
    let bad = || Error::Encode("damaged HttpResponse frame".into());
    if data.remaining() < 4 {
        return Err(bad());
    }
    let status = data.get_u16();
    let count = data.get_u16();
    let mut headers = Vec::with_capacity(count as usize);
    let get = |data: &mut Bytes| -> Result<String, Error> {
        if data.remaining() < 4 {
            return Err(bad());
        }
        let len = data.get_u32() as usize;
        if data.remaining() < len {
            return Err(bad());
        }
        let s = data.split_to(len);
        String::from_utf8(s.to_vec()).map_err(|_| bad())
    };
    for _ in 0..count {
        let n = get(&mut data)?;
        let v = get(&mut data)?;
        headers.push((n, v));
    }
    Ok(HttpResponse {
        status,
        headers,
        body: data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_frames_are_errors() {
        let f = HttpResponse::new(200).header("a", "b").into_frame();
        let Frame::Binary(b) = f else { panic!() };
        let cut = Frame::Binary(b.slice(..b.len() - 2));
        assert!(matches!(HttpResponse::from_frame(&cut), Some(Err(_))));
    }
}
