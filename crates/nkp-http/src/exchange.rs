//! Server side of the http/https transport: one link per routed request (an *exchange*).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use bytes::Bytes;
use futures_core::Stream;
use futures_core::future::BoxFuture;
use futures_sink::Sink;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use nkp_core::{Accepted, Error, Frame, Link, LinkInfo, Listener, TransportKind};
use tokio::sync::{mpsc, oneshot};

use crate::response::HttpResponse;
use crate::server::{Attachment, RouteContext, RouteHandler, Routed, status_response};

type BodyFuture = Pin<Box<dyn Future<Output = Result<Bytes, Error>> + Send>>;

enum Reading {
    /// The request, not yet read.
    Start(Box<Request<Incoming>>),
    /// Collecting the body.
    Body(BodyFuture),
    /// Body delivered; waiting for the response to be written (or the client to go).
    Waiting,
    /// Ended.
    Done,
}

/// The link of one HTTP request on a server (`http`/`https` listeners).
///
/// * Reading yields the request body as one [`Frame::Binary`] (empty for a request without
///   body; larger than `max_message_size` → `413` and an [`Error::MessageTooLarge`]), then
///   waits until the response has been written (or the client went away), then ends.
/// * The first data frame written is the response: a plain frame → `200` with that body, an
///   [`HttpResponse::into_frame`] frame → that status, headers and body. Writing more data
///   after the response is an [`Error::Closed`].
/// * Closing the link (or dropping it, or writing a [`Frame::Close`]) without a response
///   answers `204`.
///
/// [`LinkInfo::meta`]: `host` is the request's host (without port, lower-cased), `path` the
/// request path (without query). The sub-path below the listener's path is
/// [`crate::sub_path`]`(listener_path, path)`, also available here as
/// [`HttpExchangeLink::context`].
pub struct HttpExchangeLink {
    info: LinkInfo,
    ctx: RouteContext,
    reading: Reading,
    response: Option<oneshot::Sender<Response<Body>>>,
    max_body: usize,
    read_waker: Option<Waker>,
}

impl HttpExchangeLink {
    fn new(
        req: Request<Incoming>,
        ctx: RouteContext,
        response: oneshot::Sender<Response<Body>>,
        transport: TransportKind,
        max_body: usize,
    ) -> Self {
        let mut info = LinkInfo::new(transport, ctx.local, ctx.remote);
        info.meta.host = ctx.host.clone();
        info.meta.path = Some(ctx.path.clone());
        HttpExchangeLink {
            info,
            ctx,
            reading: Reading::Start(Box::new(req)),
            response: Some(response),
            max_body,
            read_waker: None,
        }
    }

    /// What the shared server knew of the request (sub-path, host, addresses).
    pub fn context(&self) -> &RouteContext {
        &self.ctx
    }

    fn into_request(self) -> Option<Request<Incoming>> {
        match self.reading {
            Reading::Start(r) => Some(*r),
            _ => None,
        }
    }

    fn respond(&mut self, resp: Response<Body>) -> bool {
        let sent = match self.response.take() {
            Some(tx) => tx.send(resp).is_ok(),
            None => false,
        };
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        sent
    }
}

fn build_response(frame: Frame) -> Result<Response<Body>, Error> {
    if let Some(r) = HttpResponse::from_frame(&frame) {
        let r = r?;
        let status = StatusCode::from_u16(r.status)
            .map_err(|_| Error::Encode(format!("invalid HTTP status {}", r.status)))?;
        let mut resp = Response::new(Body::from(r.body));
        *resp.status_mut() = status;
        for (n, v) in r.headers {
            let name = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| Error::Encode(format!("invalid header name {n:?}")))?;
            let value = HeaderValue::from_str(&v)
                .map_err(|_| Error::Encode(format!("invalid value for header {n}")))?;
            resp.headers_mut().append(name, value);
        }
        return Ok(resp);
    }
    let (ctype, body) = match frame {
        Frame::Text(s) => ("text/plain; charset=utf-8", Bytes::from(s)),
        Frame::Binary(b) => ("application/octet-stream", b),
        _ => return Err(Error::Encode("not a data frame".into())),
    };
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(resp)
}

impl Stream for HttpExchangeLink {
    type Item = Result<Frame, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.reading {
                Reading::Start(_) => {
                    let Reading::Start(req) = std::mem::replace(&mut this.reading, Reading::Done)
                    else {
                        continue;
                    };
                    let max = this.max_body;
                    let body = req.into_body();
                    this.reading = Reading::Body(Box::pin(async move {
                        match Limited::new(body, max).collect().await {
                            Ok(c) => Ok(c.to_bytes()),
                            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                                Err(Error::MessageTooLarge { size: max + 1, max })
                            }
                            Err(e) => Err(Error::Closed(Some(format!(
                                "reading the request body: {e}"
                            )))),
                        }
                    }));
                }
                Reading::Body(fut) => {
                    let r = std::task::ready!(fut.as_mut().poll(cx));
                    return match r {
                        Ok(body) => {
                            this.reading = Reading::Waiting;
                            Poll::Ready(Some(Ok(Frame::Binary(body))))
                        }
                        Err(e) => {
                            this.reading = Reading::Done;
                            let status = if matches!(e, Error::MessageTooLarge { .. }) {
                                StatusCode::PAYLOAD_TOO_LARGE
                            } else {
                                StatusCode::BAD_REQUEST
                            };
                            this.respond(status_response(status));
                            Poll::Ready(Some(Err(e)))
                        }
                    };
                }
                Reading::Waiting => {
                    let gone = match &mut this.response {
                        None => true,
                        Some(tx) => tx.poll_closed(cx).is_ready(),
                    };
                    if gone {
                        this.reading = Reading::Done;
                        return Poll::Ready(None);
                    }
                    this.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Reading::Done => return Poll::Ready(None),
            }
        }
    }
}

impl Sink<Frame> for HttpExchangeLink {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), Error> {
        match frame {
            Frame::Ping(_) | Frame::Pong(_) => Ok(()),
            Frame::Close(_) => {
                if self.response.is_some() {
                    self.respond(status_response(StatusCode::NO_CONTENT));
                }
                Ok(())
            }
            data => {
                if self.response.is_none() {
                    return Err(Error::Closed(Some(
                        "the HTTP response was already sent".into(),
                    )));
                }
                let resp = build_response(data)?;
                if self.respond(resp) {
                    Ok(())
                } else {
                    Err(Error::Closed(Some(
                        "the HTTP client went away before the response".into(),
                    )))
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.response.is_some() {
            self.respond(status_response(StatusCode::NO_CONTENT));
        }
        Poll::Ready(Ok(()))
    }
}

impl Link for HttpExchangeLink {
    fn info(&self) -> &LinkInfo {
        &self.info
    }
}

impl From<HttpExchangeLink> for Accepted {
    fn from(l: HttpExchangeLink) -> Self {
        Accepted::Link(Box::new(l))
    }
}

/// Depth of a routed listener's queue of requests not yet taken by its owner.
pub const LISTENER_QUEUE: usize = 64;

/// The route handler of http/https listeners: each request becomes an
/// [`HttpExchangeLink`] handed to the listener; the response is what the link's user
/// writes. A listener that is gone declines (the next filter gets the request).
pub(crate) struct ExchangeHandler {
    pub(crate) tx: mpsc::Sender<HttpExchangeLink>,
    pub(crate) transport: TransportKind,
    pub(crate) max_body: usize,
}

impl RouteHandler for ExchangeHandler {
    fn handle(&self, req: Request<Incoming>, ctx: RouteContext) -> BoxFuture<'static, Routed> {
        let tx = self.tx.clone();
        let transport = self.transport;
        let max_body = self.max_body;
        Box::pin(async move {
            let (resp_tx, resp_rx) = oneshot::channel();
            let link = HttpExchangeLink::new(req, ctx, resp_tx, transport, max_body);
            if let Err(mpsc::error::SendError(link)) = tx.send(link).await {
                return match link.into_request() {
                    Some(req) => Routed::Decline(req),
                    None => Routed::Response(status_response(StatusCode::SERVICE_UNAVAILABLE)),
                };
            }
            match resp_rx.await {
                Ok(resp) => Routed::Response(resp),
                // the link was dropped without a response
                Err(_) => Routed::Response(status_response(StatusCode::NO_CONTENT)),
            }
        })
    }
}

/// A listener fed by a route handler: it yields what the handler routes to it, and holds
/// the filter's [`Attachment`] (dropping the listener removes the filter). Used by the http
/// transport and by `nkp-ws`.
pub struct RoutedListener<T> {
    attachment: Attachment,
    rx: mpsc::Receiver<T>,
}

impl<T> RoutedListener<T> {
    /// A listener over the filter `attachment` whose handler sends to `rx`'s channel.
    pub fn new(attachment: Attachment, rx: mpsc::Receiver<T>) -> Self {
        RoutedListener { attachment, rx }
    }

    /// The filter's attachment (server address, settings).
    pub fn attachment(&self) -> &Attachment {
        &self.attachment
    }
}

impl<T> std::fmt::Debug for RoutedListener<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedListener")
            .field("attachment", &self.attachment)
            .finish()
    }
}

impl<T: Into<Accepted> + Send + 'static> Stream for RoutedListener<T> {
    type Item = Result<Accepted, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // The handler holds a sender as long as the filter is attached, which is as long as
        // this listener lives: the channel never closes first.
        self.rx.poll_recv(cx).map(|o| o.map(|t| Ok(t.into())))
    }
}

impl<T: Into<Accepted> + Send + 'static> Listener for RoutedListener<T> {
    fn local_addr(&self) -> SocketAddr {
        self.attachment.local_addr()
    }
}

/// Makes the handler and listener pair of an http/https listener.
pub(crate) fn exchange_channel(
    transport: TransportKind,
    max_body: usize,
) -> (Arc<ExchangeHandler>, mpsc::Receiver<HttpExchangeLink>) {
    let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
    (
        Arc::new(ExchangeHandler {
            tx,
            transport,
            max_body,
        }),
        rx,
    )
}
