//! Client side of the http/https transport: a link whose frames are POST requests.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use nkp_core::{Error, Frame, Link, LinkInfo, Options, TransportKind};

use crate::request::HttpRequest;
use crate::response::HttpResponse;

/// Requests written but not yet handed to the connection, before writers wait.
const CLIENT_QUEUE: usize = 16;

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Frame, Error>> + Send>>;

/// The `Host` header value for a client: the `host` option (IPv6 literals in brackets) or
/// the remote IP, plus `:port` unless it is the scheme's default port.
///
/// ```
/// use nkp_http::host_header;
/// let o = nkp_core::Options::default();
/// assert_eq!(host_header(&o, "[::1]:8080".parse().unwrap(), false), "[::1]:8080");
/// assert_eq!(host_header(&o, "127.0.0.1:80".parse().unwrap(), false), "127.0.0.1");
/// let mut o = nkp_core::Options::default();
/// o.set("host", "example.com").unwrap();
/// assert_eq!(host_header(&o, "127.0.0.1:443".parse().unwrap(), true), "example.com");
/// ```
pub fn host_header(opts: &Options, remote: SocketAddr, secure: bool) -> String {
    let host = match opts
        .host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        Some(h) => h.to_string(),
        None => match remote {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        },
    };
    let default = if secure { 443 } else { 80 };
    if remote.port() == default {
        host
    } else {
        format!("{host}:{}", remote.port())
    }
}

/// An outbound HTTP/1.1 link (http/https `connect`).
///
/// Every data frame written is sent as `POST <path>` (option `path`, default `/`) with the
/// frame as body (`content-type: application/octet-stream`, or `text/plain` for text
/// frames), `Host` from [`host_header`], and the `headers` option (an
/// [`HttpResponse::into_frame`] frame sends its body). Each response body (Content-Length or chunked, at most
/// `max_message_size`) comes back, in order, as one [`Frame::Binary`]. To choose the method,
/// path and headers and to read the status and headers of the response, write an
/// [`HttpRequest`] frame: its response comes back as an [`HttpResponse`] frame. Requests are
/// sent one at a time on one keep-alive connection; the stream ends when the server closes
/// it.
///
/// [`LinkInfo::meta`]: `host` (option), `path` (default `/`).
pub struct HttpClientLink {
    info: LinkInfo,
    sender: Option<SendRequest<Full<Bytes>>>,
    host: HeaderValue,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    max_body: usize,
    /// Requests not yet handed to the connection, each with whether its whole response
    /// (an [`HttpResponse`] frame) or its body only is wanted.
    queue: VecDeque<(Request<Full<Bytes>>, bool)>,
    inflight: Option<ResponseFuture>,
    ready: VecDeque<Result<Frame, Error>>,
    conn: Option<tokio::task::JoinHandle<Result<(), hyper::Error>>>,
    failed: bool,
}

impl HttpClientLink {
    /// Runs the HTTP/1.1 client handshake (no bytes exchanged) over a connected stream.
    pub(crate) async fn new<I>(
        io: I,
        transport: TransportKind,
        local: SocketAddr,
        remote: SocketAddr,
        opts: &Options,
    ) -> Result<Self, Error>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| {
                    Error::Protocol(format!("http client handshake with {remote}: {e}"))
                })?;
        let conn = tokio::spawn(conn);
        let path = opts
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.starts_with('/') {
                    p
                } else {
                    format!("/{p}")
                }
            })
            .unwrap_or_else(|| "/".to_string());
        let host = HeaderValue::from_str(&host_header(opts, remote, transport.is_secure()))
            .map_err(|_| Error::Syntax {
                key: "host".into(),
                value: opts.host.clone().unwrap_or_default(),
                expected: "a host name usable in a Host header",
            })?;
        let mut headers = Vec::new();
        for (n, v) in opts.headers.iter().flatten() {
            let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| Error::Syntax {
                key: "headers".into(),
                value: n.clone(),
                expected: "valid header names",
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| Error::Syntax {
                key: "headers".into(),
                value: v.clone(),
                expected: "valid header values",
            })?;
            headers.push((name, value));
        }
        let mut info = LinkInfo::new(transport, local, remote);
        info.meta.host = opts.host.clone();
        info.meta.path = Some(path.clone());
        Ok(HttpClientLink {
            info,
            sender: Some(sender),
            host,
            path,
            headers,
            max_body: opts.effective_max_message_size(),
            queue: VecDeque::new(),
            inflight: None,
            ready: VecDeque::new(),
            conn: Some(conn),
            failed: false,
        })
    }

    /// The request for a written frame, and whether the whole response is wanted.
    fn request(&self, frame: Frame) -> Result<(Request<Full<Bytes>>, bool), Error> {
        match HttpRequest::from_frame(&frame) {
            Some(Ok(r)) => return self.full_request(r).map(|r| (r, true)),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        let frame = match HttpResponse::from_frame(&frame) {
            Some(Ok(r)) => Frame::Binary(r.body),
            _ => frame,
        };
        let (ctype, body) = match frame {
            Frame::Text(s) => ("text/plain; charset=utf-8", Bytes::from(s)),
            Frame::Binary(b) => ("application/octet-stream", b),
            _ => return Err(Error::Encode("not a data frame".into())),
        };
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.path.parse().map_err(|_| Error::Syntax {
            key: "path".into(),
            value: self.path.clone(),
            expected: "a valid request path",
        })?;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        for (n, v) in &self.headers {
            h.append(n.clone(), v.clone());
        }
        Ok((req, false))
    }

    /// The request an [`HttpRequest`] frame asks for: its method and path (empty: the link's
    /// path), the link's `headers` option then its own, `Host` unless it has one.
    fn full_request(&self, r: HttpRequest) -> Result<Request<Full<Bytes>>, Error> {
        let method = Method::from_bytes(r.method.as_bytes())
            .map_err(|_| Error::Encode(format!("invalid HTTP method {:?}", r.method)))?;
        let path = if r.path.is_empty() {
            self.path.as_str()
        } else {
            r.path.as_str()
        };
        let mut req = Request::new(Full::new(r.body));
        *req.method_mut() = method;
        *req.uri_mut() = path
            .parse()
            .map_err(|_| Error::Encode(format!("invalid HTTP request path {path:?}")))?;
        let h = req.headers_mut();
        for (n, v) in &self.headers {
            h.append(n.clone(), v.clone());
        }
        for (n, v) in r.headers {
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| Error::Encode(format!("invalid HTTP header name {n:?}")))?;
            let value = HeaderValue::from_str(&v)
                .map_err(|_| Error::Encode(format!("invalid value of HTTP header {n}: {v:?}")))?;
            h.append(name, value);
        }
        if !h.contains_key(HOST) {
            h.insert(HOST, self.host.clone());
        }
        Ok(req)
    }

    /// Moves requests along: collects the response in flight, then hands the next queued
    /// request to the connection when it is ready.
    fn drive(&mut self, cx: &mut Context<'_>) {
        loop {
            if let Some(fut) = self.inflight.as_mut() {
                match fut.as_mut().poll(cx) {
                    Poll::Pending => return,
                    Poll::Ready(r) => {
                        self.inflight = None;
                        if r.is_err() {
                            self.failed = true;
                        }
                        self.ready.push_back(r);
                        continue;
                    }
                }
            }
            if self.queue.is_empty() || self.failed {
                return;
            }
            let Some(sender) = self.sender.as_mut() else {
                return;
            };
            match sender.poll_ready(cx) {
                Poll::Pending => return,
                Poll::Ready(Err(e)) => {
                    self.failed = true;
                    self.ready
                        .push_back(Err(Error::Closed(Some(format!("http connection: {e}")))));
                    return;
                }
                Poll::Ready(Ok(())) => {
                    let Some((req, whole)) = self.queue.pop_front() else {
                        return;
                    };
                    let resp = sender.send_request(req);
                    let max = self.max_body;
                    self.inflight = Some(Box::pin(async move {
                        let resp = resp
                            .await
                            .map_err(|e| Error::Closed(Some(format!("http request: {e}"))))?;
                        let (head, body) = resp.into_parts();
                        let status = head.status;
                        let body = Limited::new(body, max)
                            .collect()
                            .await
                            .map_err(|e| {
                                if e.is::<http_body_util::LengthLimitError>() {
                                    Error::MessageTooLarge { size: max + 1, max }
                                } else {
                                    Error::Closed(Some(format!("http response body: {e}")))
                                }
                            })?
                            .to_bytes();
                        tracing::trace!(%status, len = body.len(), "http response");
                        if !whole {
                            return Ok(Frame::Binary(body));
                        }
                        let mut r = HttpResponse::new(status.as_u16()).body(body);
                        for (n, v) in &head.headers {
                            // a value that is not text is kept byte for byte as Latin-1
                            let v = match v.to_str() {
                                Ok(v) => v.to_string(),
                                Err(_) => v.as_bytes().iter().map(|&b| b as char).collect(),
                            };
                            r.headers.push((n.as_str().to_string(), v));
                        }
                        Ok(r.into_frame())
                    }));
                }
            }
        }
    }
}

impl Stream for HttpClientLink {
    type Item = Result<Frame, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.drive(cx);
        if let Some(r) = this.ready.pop_front() {
            return Poll::Ready(Some(r));
        }
        if this.failed {
            return Poll::Ready(None);
        }
        if this.inflight.is_none() && this.queue.is_empty() {
            // idle: the stream ends when the server closes the connection
            if let Some(conn) = this.conn.as_mut() {
                if let Poll::Ready(r) = Pin::new(conn).poll(cx) {
                    this.conn = None;
                    this.failed = true;
                    return Poll::Ready(match r {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => {
                            Some(Err(Error::Closed(Some(format!("http connection: {e}")))))
                        }
                        Err(e) => Some(Err(Error::Closed(Some(format!("http connection: {e}"))))),
                    });
                }
            } else {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }
}

impl Sink<Frame> for HttpClientLink {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.drive(cx);
        if self.failed || self.sender.is_none() {
            return Poll::Ready(Err(Error::Closed(Some("http connection closed".into()))));
        }
        if self.queue.len() >= CLIENT_QUEUE {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), Error> {
        let frame = match frame {
            Frame::Ping(_) | Frame::Pong(_) => return Ok(()),
            Frame::Close(_) => {
                self.sender = None;
                return Ok(());
            }
            f => f,
        };
        if self.sender.is_none() {
            return Err(Error::Closed(Some("http connection closed".into())));
        }
        let req = self.request(frame)?;
        self.queue.push_back(req);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.drive(cx);
        if self.queue.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if self.failed {
            return Poll::Ready(Err(Error::Closed(Some("http connection closed".into()))));
        }
        Poll::Pending
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.sender = None;
        self.queue.clear();
        self.inflight = None;
        if let Some(conn) = self.conn.take() {
            conn.abort();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for HttpClientLink {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.abort();
        }
    }
}

impl Link for HttpClientLink {
    fn info(&self) -> &LinkInfo {
        &self.info
    }
}
