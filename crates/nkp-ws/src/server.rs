//! Server side: WebSocket upgrades routed by the shared HTTP server.

use base64::Engine;
use futures_core::future::BoxFuture;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use nkp_core::{Accepted, BoxLink, Error, LinkInfo, TransportKind};
use nkp_http::{Body, RouteContext, RouteHandler, Routed, status_response};
use sha1::{Digest, Sha1};
use tokio::sync::mpsc;

use crate::deflate::{DeflateParams, accept_offer};
use crate::frame::Role;
use crate::link::{BoxIo, WsLink};

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
///
/// ```
/// // the example of RFC 6455 §1.3
/// assert_eq!(nkp_ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// An upgraded request waiting for its listener's owner: becomes an
/// [`Accepted::Pending`] whose future completes the upgrade.
pub(crate) struct PendingWs {
    upgrade: hyper::upgrade::OnUpgrade,
    ctx: RouteContext,
    transport: TransportKind,
    max_message_size: usize,
    deflate: Option<DeflateParams>,
}

impl From<PendingWs> for Accepted {
    fn from(p: PendingWs) -> Self {
        Accepted::Pending(Box::pin(async move {
            let upgraded = p.upgrade.await.map_err(|e| {
                Error::Closed(Some(format!(
                    "websocket upgrade from {}: {e}",
                    p.ctx.remote
                )))
            })?;
            let io: BoxIo = Box::new(TokioIo::new(upgraded));
            let mut info = LinkInfo::new(p.transport, p.ctx.local, p.ctx.remote);
            info.meta.host = p.ctx.host.clone();
            info.meta.path = Some(p.ctx.path.clone());
            info.meta.ws_proto = p.ctx.ws_proto.clone();
            let slot = p.ctx.slot.clone();
            let link = WsLink::new(io, Role::Server, info, p.max_message_size, p.deflate, &[]);
            let link: BoxLink = Box::new(link.with_guard(slot));
            Ok(link)
        }))
    }
}

/// The route handler of ws/wss listeners.
pub(crate) struct WsHandler {
    pub(crate) tx: mpsc::Sender<PendingWs>,
    pub(crate) transport: TransportKind,
    pub(crate) max_message_size: usize,
    /// Accept a client's permessage-deflate offer (option `ws_deflate`).
    pub(crate) deflate: bool,
}

fn bad_request(why: &str) -> Routed {
    tracing::debug!(why, "bad websocket upgrade request: 400");
    let mut r = status_response(StatusCode::BAD_REQUEST);
    r.headers_mut()
        .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    Routed::Response(r)
}

impl RouteHandler for WsHandler {
    fn handle(&self, mut req: Request<Incoming>, ctx: RouteContext) -> BoxFuture<'static, Routed> {
        let tx = self.tx.clone();
        let transport = self.transport;
        let max_message_size = self.max_message_size;
        let deflate_on = self.deflate;
        Box::pin(async move {
            if req.method() != Method::GET {
                return bad_request("method is not GET");
            }
            let version_ok = req
                .headers()
                .get(SEC_WEBSOCKET_VERSION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == "13");
            if !version_ok {
                return bad_request("Sec-WebSocket-Version is not 13");
            }
            let key = match req
                .headers()
                .get(SEC_WEBSOCKET_KEY)
                .and_then(|v| v.to_str().ok())
            {
                Some(k)
                    if base64::engine::general_purpose::STANDARD
                        .decode(k.trim())
                        .is_ok_and(|d| d.len() == 16) =>
                {
                    k.to_string()
                }
                _ => return bad_request("missing or invalid Sec-WebSocket-Key"),
            };
            // a listener that is gone declines: reserve its queue slot before taking the
            // upgrade out of the request
            let permit = match tx.reserve().await {
                Ok(p) => p,
                Err(_) => return Routed::Decline(req),
            };
            // permessage-deflate: the first acceptable offer, when the listener allows it
            let deflate = if deflate_on {
                accept_offer(
                    req.headers()
                        .get_all(SEC_WEBSOCKET_EXTENSIONS)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                )
            } else {
                None
            };
            let upgrade = hyper::upgrade::on(&mut req);
            let proto = ctx.ws_proto.clone();
            permit.send(PendingWs {
                upgrade,
                ctx,
                transport,
                max_message_size,
                deflate: deflate.as_ref().map(|(p, _)| *p),
            });
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            if let Ok(v) = HeaderValue::from_str(&accept_key(&key)) {
                h.insert(SEC_WEBSOCKET_ACCEPT, v);
            }
            if let Some(p) = proto
                && let Ok(v) = HeaderValue::from_str(&p)
            {
                h.insert(SEC_WEBSOCKET_PROTOCOL, v);
            }
            if let Some((_, answer)) = deflate
                && let Ok(v) = HeaderValue::from_str(&answer)
            {
                h.insert(SEC_WEBSOCKET_EXTENSIONS, v);
            }
            Routed::Response(resp)
        })
    }
}
