//! [`HttpRequest`]: a request with method, path and headers, carried in one [`Frame`].

use bytes::{BufMut, Bytes, BytesMut};
use nkp_core::{Error, Frame};

use crate::wire::{Reader, put_headers, put_str};

/// Marks a binary frame that carries an encoded [`HttpRequest`].
const MAGIC: &[u8] = b"\0nkp-http-request\x01";

/// A full HTTP request (method, path, headers, body) that protocol code writes on an HTTP
/// client link (an `http`/`https` connection) as one frame: the Rust form of the original's
/// `{nkpacket_http, Req}`.
///
/// Writing a plain data frame on an HTTP client link sends `POST <path option>` with that
/// body and reads back the response body only. Writing `HttpRequest::into_frame()` instead
/// sends that method, path and headers (after the link's `headers` option; `Host` is added
/// unless given), and the response comes back as an [`crate::HttpResponse`] frame: status,
/// headers (names in lower case) and body.
///
/// ```
/// use nkp_http::HttpRequest;
/// let frame = HttpRequest::get("/status?verbose=1")
///     .header("accept", "application/json")
///     .into_frame();
/// let back = HttpRequest::from_frame(&frame).unwrap().unwrap();
/// assert_eq!(back.method, "GET");
/// assert_eq!(back.path, "/status?verbose=1");
/// assert_eq!(back.headers, vec![("accept".to_string(), "application/json".to_string())]);
/// assert!(back.body.is_empty());
/// // any other frame is not a request
/// assert!(HttpRequest::from_frame(&nkp_core::Frame::binary(&b"hello"[..])).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method (`GET`, `POST`, ..., or an extension method), as sent.
    pub method: String,
    /// The request target (path and query); empty: the link's `path` option (default `/`).
    pub path: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (sent with a `content-length`).
    pub body: Bytes,
}

impl HttpRequest {
    /// A request with `method` for `path`, no headers and an empty body.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A `GET` of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        HttpRequest::new("GET", path)
    }

    /// A `POST` of `body` to `path`.
    pub fn post(path: impl Into<String>, body: impl Into<Bytes>) -> Self {
        HttpRequest::new("POST", path).body(body)
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

    /// Encodes the request into one binary frame (see [`HttpRequest::from_frame`]).
    pub fn into_frame(self) -> Frame {
        let mut b = BytesMut::with_capacity(
            MAGIC.len() + 16 + self.method.len() + self.path.len() + self.body.len(),
        );
        b.put_slice(MAGIC);
        put_str(&mut b, &self.method);
        put_str(&mut b, &self.path);
        put_headers(&mut b, &self.headers);
        b.put_slice(&self.body);
        Frame::Binary(b.freeze())
    }

    /// Decodes a frame made by [`HttpRequest::into_frame`]: `None` for any other frame,
    /// `Some(Err(..))` for a damaged one.
    pub fn from_frame(frame: &Frame) -> Option<Result<HttpRequest, Error>> {
        let Frame::Binary(data) = frame else {
            return None;
        };
        if !data.starts_with(MAGIC) {
            return None;
        }
        let mut r = Reader::new(data.slice(MAGIC.len()..), "HttpRequest");
        Some((|| {
            let method = r.str()?;
            let path = r.str()?;
            let headers = r.headers()?;
            Ok(HttpRequest {
                method,
                path,
                headers,
                body: r.rest(),
            })
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damaged_frames() {
        let req = HttpRequest::post("/a", &b"body"[..])
            .header("x-one", "1")
            .header("x-two", "2");
        let f = req.clone().into_frame();
        assert_eq!(HttpRequest::from_frame(&f).unwrap().unwrap(), req);
        let Frame::Binary(b) = f else { panic!() };
        for cut in [MAGIC.len() + 1, MAGIC.len() + 6, b.len() - 9] {
            let cut = Frame::Binary(b.slice(..cut));
            assert!(
                matches!(HttpRequest::from_frame(&cut), Some(Err(_))),
                "{cut:?}"
            );
        }
        // a response frame is not a request
        let resp = crate::HttpResponse::new(200).into_frame();
        assert!(HttpRequest::from_frame(&resp).is_none());
    }
}
