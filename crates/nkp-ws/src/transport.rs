//! The `ws` and `wss` transport.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_core::future::BoxFuture;
use nkp_core::{
    BoxLink, BoxListener, ConnectRequest, Error, ListenRequest, Options, Transport, TransportKind,
};
use nkp_http::{FilterSpec, HttpServers, LISTENER_QUEUE, RouteKind, RoutedListener};
use nkp_tls::{CleanEof, ConfigCache};
use tokio::sync::mpsc;

use crate::client::handshake;
use crate::link::{BoxIo, WsLink};
use crate::server::WsHandler;

/// The `ws`/`wss` transport.
///
/// * `listen` attaches a ws filter (options `host`, `path`, `ws_proto`) to the shared server
///   on the address (see [`HttpServers`]); each upgraded request becomes an
///   [`Accepted::Pending`](nkp_core::Accepted::Pending) whose future completes the upgrade
///   and yields a [`WsLink`] (meta: the request's host, path, and the listener's
///   `ws_proto`, confirmed in the 101 response). A request whose upgrade is invalid gets
///   `400`.
/// * `connect` connects over TCP (ws) or TLS (wss, ALPN `http/1.1`), runs the handshake
///   (`GET <path>`, `Host`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`,
///   `Sec-WebSocket-Protocol` when `ws_proto` is set, the `headers` option) and checks the
///   response (101, `Sec-WebSocket-Accept`, the sub-protocol), all within `connect_timeout`.
///   A refusal is [`Error::Closed`] naming the status (`... HTTP 404 Not Found`).
///
/// Cheap to clone. Build it with the same [`HttpServers`] as the http transport.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use futures_util::{SinkExt, StreamExt};
/// use nkp_core::{Accepted, ConnectRequest, Frame, ListenRequest, Options, Transport, TransportKind};
/// use nkp_http::HttpServers;
/// use nkp_ws::WsTransport;
///
/// let ws = WsTransport::new(HttpServers::new());
/// let mut lopts = Options::default();
/// lopts.set("ws_proto", "sip").unwrap();
/// let mut listener = ws
///     .listen(ListenRequest { transport: TransportKind::Ws, addr: "127.0.0.1:0".parse().unwrap(),
///                             options: Arc::new(lopts) })
///     .await
///     .unwrap();
/// let addr = listener.local_addr();
/// tokio::spawn(async move {
///     while let Some(Ok(Accepted::Pending(upgrade))) = listener.next().await {
///         tokio::spawn(async move {
///             let mut link = upgrade.await.unwrap();
///             while let Some(Ok(frame)) = link.next().await {
///                 if frame.is_data() {
///                     link.send(frame).await.unwrap();
///                 }
///             }
///         });
///     }
/// });
///
/// let mut copts = Options::default();
/// copts.set("ws_proto", "sip").unwrap();
/// let mut link = ws
///     .connect(ConnectRequest { transport: TransportKind::Ws, remote: addr, options: Arc::new(copts) })
///     .await
///     .unwrap();
/// assert_eq!(link.info().meta.ws_proto.as_deref(), Some("sip"));
/// link.send(Frame::text("hello")).await.unwrap();
/// assert_eq!(link.next().await.unwrap().unwrap(), Frame::text("hello"));
/// link.close().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WsTransport {
    servers: HttpServers,
    tls: Arc<ConfigCache>,
}

impl WsTransport {
    /// A transport attaching its listeners to `servers`.
    pub fn new(servers: HttpServers) -> Self {
        WsTransport {
            servers,
            tls: Arc::new(ConfigCache::with_alpn(vec![b"http/1.1".to_vec()])),
        }
    }

    /// The shared server registry.
    pub fn servers(&self) -> &HttpServers {
        &self.servers
    }

    /// Connects to `remote` and runs the WebSocket handshake within the options'
    /// `connect_timeout`; returns the concrete link.
    pub async fn connect_link(
        &self,
        transport: TransportKind,
        remote: SocketAddr,
        opts: &Options,
    ) -> Result<WsLink, Error> {
        check_kind(transport)?;
        let timeout = opts.effective_connect_timeout();
        let start = Instant::now();
        let tcp = nkp_tcp::socket::connect(remote, timeout).await?;
        let local = tcp
            .local_addr()
            .map_err(|e| Error::io("local address", Some(remote), e))?;
        let io: BoxIo = if transport == TransportKind::Wss {
            let config = self.tls.client_config(opts)?;
            let name = nkp_tls::server_name(opts, remote)?;
            let left = timeout.saturating_sub(start.elapsed());
            let tls = nkp_tls::connect_tls(config, name, tcp, left)
                .await
                .map_err(|e| match e {
                    Error::Timeout { op, .. } => Error::Timeout { op, after: timeout },
                    e => e,
                })?;
            Box::new(CleanEof::new(tls))
        } else {
            Box::new(tcp)
        };
        let left = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, handshake(io, transport, local, remote, opts)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                op: "websocket handshake",
                after: timeout,
            }),
        }
    }
}

fn check_kind(t: TransportKind) -> Result<(), Error> {
    match t {
        TransportKind::Ws | TransportKind::Wss => Ok(()),
        _ => Err(Error::InvalidTransport(format!(
            "{t} (the WebSocket transport serves ws and wss only)"
        ))),
    }
}

impl Transport for WsTransport {
    fn kinds(&self) -> &'static [TransportKind] {
        &[TransportKind::Ws, TransportKind::Wss]
    }

    fn listen(&self, req: ListenRequest) -> BoxFuture<'static, Result<BoxListener, Error>> {
        let servers = self.servers.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let opts = &req.options;
            let spec = FilterSpec::from_options(RouteKind::Ws, opts);
            let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
            let handler = Arc::new(WsHandler {
                tx,
                transport: req.transport,
                max_message_size: opts.effective_max_message_size(),
                deflate: opts.ws_deflate == Some(true),
            });
            let attachment = servers.attach(
                req.addr,
                opts,
                req.transport == TransportKind::Wss,
                spec,
                handler,
            )?;
            let l: BoxListener = Box::new(RoutedListener::new(attachment, rx));
            Ok(l)
        })
    }

    fn connect(&self, req: ConnectRequest) -> BoxFuture<'static, Result<BoxLink, Error>> {
        let this = self.clone();
        Box::pin(async move {
            let link = this
                .connect_link(req.transport, req.remote, &req.options)
                .await?;
            let l: BoxLink = Box::new(link);
            Ok(l)
        })
    }
}
