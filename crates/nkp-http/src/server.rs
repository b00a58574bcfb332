//! The shared HTTP server registry: one hyper HTTP/1.1 server per (listen ip, port), with
//! filters routing each request to a listener (spec §9.1–§9.3).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use axum::body::Body;
use bytes::Bytes;
use futures_core::future::BoxFuture;
use http::header::{CONNECTION, HOST, SEC_WEBSOCKET_PROTOCOL, SERVER, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use nkp_core::{Error, Options};
use nkp_tcp::{AcceptedStream, TcpStreamListener};
use nkp_tls::tokio_rustls::TlsAcceptor;
use nkp_tls::{CleanEof, ConfigCache};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::path::{
    host_without_port, is_prefix, normalize_host, normalize_path, path_segments, tokens,
};
use crate::settings::ServerSettings;

/// The value of the `server` header of every response.
pub const SERVER_HEADER: &str = "NkPACKET";

/// The boxed error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What kind of request a filter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Plain HTTP requests (http and https listeners).
    Http,
    /// WebSocket upgrade requests (`Upgrade: websocket`; ws and wss listeners).
    Ws,
}

/// What a listener asks to be routed to it: kind, host, path prefix, sub-protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSpec {
    /// Request kind.
    pub kind: RouteKind,
    /// Exact host (compared case-insensitively, without port); `None`: any host.
    pub host: Option<String>,
    /// Path prefix, normalised with [`normalize_path`] (`/` matches everything).
    pub path: String,
    /// Required WebSocket sub-protocol (lower-cased); `None`: any.
    pub ws_proto: Option<String>,
}

impl FilterSpec {
    /// A filter of `kind` from a listener's `host`, `path` and `ws_proto` options.
    ///
    /// ```
    /// use nkp_http::{FilterSpec, RouteKind};
    /// let mut o = nkp_core::Options::default();
    /// o.set("path", "dom3").unwrap();
    /// o.set("host", "LocalHost").unwrap();
    /// let f = FilterSpec::from_options(RouteKind::Ws, &o);
    /// assert_eq!(f.path, "/dom3");
    /// assert_eq!(f.host.as_deref(), Some("localhost"));
    /// ```
    pub fn from_options(kind: RouteKind, options: &Options) -> Self {
        FilterSpec {
            kind,
            host: options
                .host
                .as_deref()
                .map(normalize_host)
                .filter(|h| !h.is_empty()),
            path: normalize_path(options.path.as_deref()),
            ws_proto: options
                .ws_proto
                .as_deref()
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty()),
        }
    }

    /// A filter of `kind` for `path` on any host, without sub-protocol.
    pub fn path(kind: RouteKind, path: &str) -> Self {
        FilterSpec {
            kind,
            host: None,
            path: normalize_path(Some(path)),
            ws_proto: None,
        }
    }
}

/// A connection slot of a shared server (one of its `tcp_max_connections`): the server's
/// connection holds it, and so does a WebSocket session upgraded from it, so that sessions
/// count against the cap after the upgrade too.
#[derive(Clone)]
pub struct ConnSlot(#[allow(dead_code)] Arc<SlotGuard>);

impl fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnSlot")
    }
}

/// What the server knows about a routed request, handed to the [`RouteHandler`] (and, for
/// services, inserted in the request's extensions).
#[derive(Debug, Clone)]
pub struct RouteContext {
    /// Local address of the connection.
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
    /// True on a TLS server.
    pub secure: bool,
    /// The request's host (Host header without port, lower-cased), if any.
    pub host: Option<String>,
    /// The request path (without query).
    pub path: String,
    /// The path below the filter's path, starting with `/` (the original's sub-path).
    pub sub_path: String,
    /// The sub-protocol of the matching filter, to be confirmed in a 101 response.
    pub ws_proto: Option<String>,
    /// The connection slot (keep it with anything outliving the request, e.g. a WebSocket).
    pub slot: ConnSlot,
}

/// The outcome of a [`RouteHandler`].
pub enum Routed {
    /// The response to send.
    Response(Response<Body>),
    /// The handler does not take this request: the server tries the next filter.
    Decline(Request<Incoming>),
}

impl fmt::Debug for Routed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Routed::Response(r) => write!(f, "Routed::Response({})", r.status()),
            Routed::Decline(_) => f.write_str("Routed::Decline"),
        }
    }
}

/// Handles the requests a filter matched. Implemented by the http and ws listeners, and by
/// [`HttpServers::attach_service`] for tower services.
pub trait RouteHandler: Send + Sync + 'static {
    /// Answers `req`, or declines it (the next matching filter gets it).
    fn handle(&self, req: Request<Incoming>, ctx: RouteContext) -> BoxFuture<'static, Routed>;
}

/// Description of one filter of a shared server (for introspection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterInfo {
    /// Registration id (unique within the [`HttpServers`]).
    pub id: u64,
    /// The filter.
    pub spec: FilterSpec,
}

/// Description of one shared server (for introspection).
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// The bound address.
    pub local: SocketAddr,
    /// Its settings.
    pub settings: ServerSettings,
    /// Its filters, in routing order.
    pub filters: Vec<FilterInfo>,
    /// Live connections (WebSocket sessions included).
    pub connections: usize,
}

struct FilterEntry {
    id: u64,
    spec: FilterSpec,
    segments: Vec<String>,
    handler: Arc<dyn RouteHandler>,
}

struct Server {
    local: SocketAddr,
    settings: ServerSettings,
    filters: RwLock<Arc<Vec<Arc<FilterEntry>>>>,
    stop: CancellationToken,
    connections: Arc<AtomicUsize>,
}

struct Registry {
    servers: Mutex<HashMap<SocketAddr, Arc<Server>>>,
    next_id: AtomicU64,
    tls: ConfigCache,
}

/// The registry of shared HTTP servers: one hyper HTTP/1.1 server per (listen ip, actual
/// port), created when its first filter is attached and stopped when its last goes.
///
/// Cheap to clone (an `Arc` inside): the http and ws transports of one stack must share one
/// `HttpServers`, so that http, https, ws and wss listeners on the same ip:port share a
/// server.
///
/// * Port 0 binds an ephemeral port; the server registers under the actual port, so two
///   port-0 listeners never share.
/// * Plain (http, ws) and TLS (https, wss) listeners cannot share a port
///   ([`Error::SharedFailed`]).
/// * Server-wide settings ([`ServerSettings`]) come from the first listener; a later
///   listener asking explicitly for different ones is refused.
/// * Every response carries `server: NkPACKET` (except the few hyper writes itself when a
///   request cannot be parsed: 400, 431).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use nkp_http::{FilterSpec, HttpServers, RouteKind};
/// let servers = HttpServers::new();
/// let opts = nkp_core::Options::default();
/// let router = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" }));
/// let a = servers
///     .attach_service("127.0.0.1:0".parse().unwrap(), &opts, false,
///                     FilterSpec::path(RouteKind::Http, "/"), router)
///     .unwrap();
/// let port = a.local_addr().port();
/// // a second filter on the same port shares the server
/// let b = servers
///     .attach_service(a.local_addr(), &opts, false,
///                     FilterSpec::path(RouteKind::Http, "/other"),
///                     axum::Router::new())
///     .unwrap();
/// assert_eq!(servers.servers().len(), 1);
/// assert_eq!(servers.servers()[0].filters.len(), 2);
/// drop((a, b));
/// assert!(servers.servers().is_empty());
/// # let _ = port;
/// # }
/// ```
#[derive(Clone)]
pub struct HttpServers {
    inner: Arc<Registry>,
}

impl Default for HttpServers {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServers")
            .field(
                "servers",
                &self.inner.servers.lock().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A filter attached to a shared server; dropping it removes the filter (and stops the
/// server when it was the last).
pub struct Attachment {
    registry: Weak<Registry>,
    server: Arc<Server>,
    id: u64,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("local", &self.server.local)
            .field("id", &self.id)
            .finish()
    }
}

impl Attachment {
    /// The shared server's bound address (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local
    }

    /// The filter's registration id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The shared server's settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.server.settings
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let Some(registry) = self.registry.upgrade() else {
            self.server.remove_filter(self.id);
            self.server.stop.cancel();
            return;
        };
        let mut servers = registry.servers.lock();
        let left = self.server.remove_filter(self.id);
        if left == 0 {
            self.server.stop.cancel();
            if let Some(s) = servers.get(&self.server.local)
                && Arc::ptr_eq(s, &self.server)
            {
                servers.remove(&self.server.local);
            }
            tracing::debug!(local = %self.server.local, "shared http server stopped");
        }
    }
}

impl HttpServers {
    /// An empty registry.
    pub fn new() -> Self {
        HttpServers {
            inner: Arc::new(Registry {
                servers: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                tls: ConfigCache::with_alpn(vec![b"http/1.1".to_vec()]),
            }),
        }
    }

    /// The running servers, with their filters in routing order.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let servers = self.inner.servers.lock();
        let mut out: Vec<ServerInfo> = servers
            .values()
            .map(|s| ServerInfo {
                local: s.local,
                settings: s.settings.clone(),
                filters: s
                    .filters
                    .read()
                    .iter()
                    .map(|f| FilterInfo {
                        id: f.id,
                        spec: f.spec.clone(),
                    })
                    .collect(),
                connections: s.connections.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by_key(|s| s.local);
        out
    }

    /// Attaches a filter with its handler to the server on `addr` (creating and binding it
    /// if none runs there; must be called inside a tokio runtime).
    ///
    /// `options` are the listener's: for a new server they give its settings (and TLS
    /// files when `secure`); for an existing one they are checked against its settings.
    ///
    /// Errors: [`Error::SharedFailed`] (plain vs TLS, conflicting settings), [`Error::Tls`]
    /// (certificate files), [`Error::Io`] (bind).
    pub fn attach(
        &self,
        addr: SocketAddr,
        options: &Options,
        secure: bool,
        spec: FilterSpec,
        handler: Arc<dyn RouteHandler>,
    ) -> Result<Attachment, Error> {
        let reg = &self.inner;
        let mut servers = reg.servers.lock();
        let server = match (addr.port() != 0).then(|| servers.get(&addr)).flatten() {
            Some(server) => {
                if server.settings.secure != secure {
                    let (have, asked) = if server.settings.secure {
                        ("TLS", "plain")
                    } else {
                        ("plain", "TLS")
                    };
                    return Err(Error::SharedFailed(format!(
                        "cannot share port {addr}: plain and TLS listeners cannot share it \
                         (the server there is {have}, this listener is {asked})"
                    )));
                }
                server
                    .settings
                    .check_compatible(options, &addr.to_string())?;
                server.clone()
            }
            None => {
                let settings = ServerSettings::from_options(options, secure);
                let acceptor = if secure {
                    Some(TlsAcceptor::from(reg.tls.server_config(options)?))
                } else {
                    None
                };
                let tcp = nkp_tcp::socket::bind(addr)?;
                let mut lopts = Options::default();
                lopts.tcp_max_connections = Some(settings.max_connections);
                let listener = TcpStreamListener::new(tcp, Arc::new(lopts))?;
                let local = listener.local_addr();
                let server = Arc::new(Server {
                    local,
                    settings,
                    filters: RwLock::new(Arc::new(Vec::new())),
                    stop: CancellationToken::new(),
                    connections: Arc::new(AtomicUsize::new(0)),
                });
                tokio::spawn(accept_loop(server.clone(), listener, acceptor));
                tracing::debug!(%local, secure, "shared http server started");
                servers.insert(local, server.clone());
                server
            }
        };
        let id = reg.next_id.fetch_add(1, Ordering::Relaxed);
        server.add_filter(FilterEntry {
            id,
            segments: path_segments(&spec.path),
            spec,
            handler,
        });
        Ok(Attachment {
            registry: Arc::downgrade(&self.inner),
            server,
            id,
        })
    }

    /// Attaches a tower [`Service`](tower::Service) (an axum `Router`, ...) for the requests
    /// `spec` matches: the Rust form of the original's `http_init`. The request reaches the
    /// service with its full path; its extensions hold the [`RouteContext`] (with the
    /// sub-path). A service never declines.
    pub fn attach_service<S, B>(
        &self,
        addr: SocketAddr,
        options: &Options,
        secure: bool,
        spec: FilterSpec,
        service: S,
    ) -> Result<Attachment, Error>
    where
        S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let handler = Arc::new(ServiceHandler { service });
        self.attach(addr, options, secure, spec, handler)
    }
}

struct ServiceHandler<S> {
    service: S,
}

impl<S, B> RouteHandler for ServiceHandler<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn handle(&self, req: Request<Incoming>, ctx: RouteContext) -> BoxFuture<'static, Routed> {
        let svc = self.service.clone();
        Box::pin(async move {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ctx);
            match svc.oneshot(req).await {
                Ok(resp) => Routed::Response(resp.map(Body::new)),
                Err(never) => match never {},
            }
        })
    }
}

impl Server {
    fn add_filter(&self, entry: FilterEntry) {
        let mut filters = self.filters.write();
        let mut v: Vec<Arc<FilterEntry>> = filters.iter().cloned().collect();
        v.push(Arc::new(entry));
        // descending segment lists: a more specific prefix before its shorter prefix, the
        // catch-all last; ties keep attachment order
        v.sort_by(|a, b| b.segments.cmp(&a.segments));
        *filters = Arc::new(v);
    }

    /// Removes a filter; returns how many are left.
    fn remove_filter(&self, id: u64) -> usize {
        let mut filters = self.filters.write();
        let v: Vec<Arc<FilterEntry>> = filters.iter().filter(|f| f.id != id).cloned().collect();
        let n = v.len();
        *filters = Arc::new(v);
        n
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>, conn: Arc<ConnCtx>) -> Response<Body> {
        let n = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mut resp = self.dispatch(req, &conn).await;
        let upgraded = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(SERVER, HeaderValue::from_static(SERVER_HEADER));
        if let Some(max) = self.settings.max_keepalive
            && n >= max
            && !upgraded
        {
            h.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn dispatch(&self, mut req: Request<Incoming>, conn: &ConnCtx) -> Response<Body> {
        let kind = if is_websocket_upgrade(&req) {
            RouteKind::Ws
        } else {
            RouteKind::Http
        };
        let host = req
            .headers()
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .map(host_without_port)
            .or_else(|| req.uri().host().map(host_without_port))
            .map(|h| h.trim_end_matches('.').to_string());
        let path = req.uri().path().to_string();
        let segs = path_segments(&path);
        let offered = tokens(req.headers().get_all(SEC_WEBSOCKET_PROTOCOL).iter());
        let filters = self.filters.read().clone();
        for f in filters.iter() {
            if f.spec.kind != kind {
                continue;
            }
            if let Some(fh) = &f.spec.host
                && host.as_ref() != Some(fh)
            {
                continue;
            }
            if let Some(p) = &f.spec.ws_proto
                && !offered.contains(p)
            {
                continue;
            }
            if !is_prefix(&f.segments, &segs) {
                continue;
            }
            let ctx = RouteContext {
                local: conn.local,
                remote: conn.remote,
                secure: self.settings.secure,
                host: host.clone(),
                path: path.clone(),
                sub_path: format!("/{}", segs[f.segments.len()..].join("/")),
                ws_proto: f.spec.ws_proto.clone(),
                slot: conn.slot.clone(),
            };
            match f.handler.handle(req, ctx).await {
                Routed::Response(r) => return r,
                Routed::Decline(r) => {
                    tracing::trace!(filter = f.id, "filter declined the request");
                    req = r;
                }
            }
        }
        tracing::debug!(%path, ?host, ?kind, "no listener for the request: 404");
        status_response(StatusCode::NOT_FOUND)
    }
}

/// An empty response with `status`.
pub fn status_response(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// True when the `Upgrade` header, as a case-insensitive token list, is exactly
/// `[websocket]` (spec §9.3 step 1).
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let t = tokens(req.headers().get_all(UPGRADE).iter());
    t.len() == 1 && t[0] == "websocket"
}

struct ConnCtx {
    local: SocketAddr,
    remote: SocketAddr,
    slot: ConnSlot,
    requests: AtomicUsize,
}

/// Counts a connection (or WebSocket session) of a server while alive.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(c: Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Counted(c)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    server: Arc<Server>,
    mut listener: TcpStreamListener,
    acceptor: Option<TlsAcceptor>,
) {
    loop {
        let accepted = tokio::select! {
            _ = server.stop.cancelled() => break,
            r = listener.accept_stream() => r,
        };
        match accepted {
            Ok(a) => {
                tokio::spawn(serve_connection(server.clone(), a, acceptor.clone()));
            }
            Err(e) => tracing::debug!(local = %server.local, error = %e, "accept failed"),
        }
    }
}

/// A permit that also counts the connection while alive.
struct SlotGuard {
    _permit: OwnedSemaphorePermit,
    _count: Counted,
}

async fn serve_connection(server: Arc<Server>, a: AcceptedStream, acceptor: Option<TlsAcceptor>) {
    let AcceptedStream {
        stream,
        local,
        remote,
        slot,
    } = a;
    if server.settings.proxy_protocol {
        // Behind a load balancer: a PROXY header first, then HTTP (or TLS).
        let timeout = server.settings.request_timeout;
        match nkp_core::proxy::read_header(stream, timeout).await {
            Ok((header, io)) => {
                let remote = match header {
                    nkp_core::proxy::ProxyHeader::Proxy { source, .. } => source,
                    _ => remote,
                };
                serve_stream(server, io, local, remote, slot, acceptor).await
            }
            Err(e) => {
                tracing::info!(%local, %remote, error = %e, "bad PROXY header: connection closed")
            }
        }
        return;
    }
    serve_stream(server, stream, local, remote, slot, acceptor).await
}

async fn serve_stream<S>(
    server: Arc<Server>,
    stream: S,
    local: SocketAddr,
    remote: SocketAddr,
    slot: OwnedSemaphorePermit,
    acceptor: Option<TlsAcceptor>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let conn = Arc::new(ConnCtx {
        local,
        remote,
        slot: ConnSlot(Arc::new(SlotGuard {
            _permit: slot,
            _count: Counted::new(server.connections.clone()),
        })),
        requests: AtomicUsize::new(0),
    });
    match acceptor {
        None => serve_io(server, stream, conn).await,
        Some(acceptor) => {
            let timeout = server.settings.handshake_timeout;
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_io(server, CleanEof::new(tls), conn).await,
                Ok(Err(e)) => tracing::debug!(%local, %remote, error = %e, "tls handshake failed"),
                Err(_) => tracing::debug!(%local, %remote, "tls handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(server: Arc<Server>, io: I, conn: Arc<ConnCtx>)
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let settings = &server.settings;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.request_timeout)
        .max_headers(settings.max_headers)
        .max_header_size(settings.max_head_size)
        .keep_alive(true);
    let remote = conn.remote;
    let srv = server.clone();
    let svc = hyper::service::service_fn(move |req| {
        let server = srv.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(server.route(req, conn).await) }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await
    {
        tracing::debug!(local = %server.local, %remote, error = %e, "http connection ended with an error");
    }
}
