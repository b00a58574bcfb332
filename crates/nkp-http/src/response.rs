//! [`HttpResponse`]: a response with status and headers, carried in one [`Frame`].

use bytes::{BufMut, Bytes, BytesMut};
use nkp_core::{Error, Frame};

use crate::wire::{Reader, put_headers};

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
        put_headers(&mut b, &self.headers);
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

fn decode(data: Bytes) -> Result<HttpResponse, Error> {
    let mut r = Reader::new(data, "HttpResponse");
    let status = r.u16()?;
    let headers = r.headers()?;
    Ok(HttpResponse {
        status,
        headers,
        body: r.rest(),
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
