//! The `tls` transport: listeners and outbound links.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_core::future::BoxFuture;
use nkp_core::{
    Accepted, BoxLink, BoxListener, ConnectRequest, Error, LinkInfo, ListenRequest, Listener,
    Options, StreamCodec, StreamLink, Transport, TransportKind,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsStream};

use crate::{CleanEof, ConfigCache, SessionInfo, connect_tls, server_name};

/// Handshake timeout of accepted connections when the listener has no `connect_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause of a listener after an accept error caused by resource exhaustion (out of file
/// descriptors, memory), so that it does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The link type of TLS connections, both directions.
pub type TlsLink = StreamLink<CleanEof<TlsStream<TcpStream>>>;

/// What was negotiated on a TLS link (version, ALPN, cipher suite, SNI).
///
/// ```no_run
/// # async fn f(t: nkp_tls::TlsTransport, opts: nkp_core::Options) {
/// let link = t.connect_link("127.0.0.1:5061".parse().unwrap(), &opts).await.unwrap();
/// println!("{:?}", nkp_tls::session_info(&link).version);
/// # }
/// ```
pub fn session_info(link: &TlsLink) -> SessionInfo {
    SessionInfo::of(link.get_ref().get_ref())
}

/// The `tls` transport.
///
/// Cheap to clone; clones share one [`ConfigCache`] (so configurations, and client session
/// resumption data, are shared by every connection with the same TLS options).
#[derive(Debug, Clone, Default)]
pub struct TlsTransport {
    cache: Arc<ConfigCache>,
}

impl TlsTransport {
    /// A transport without ALPN (raw TLS).
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport whose listeners accept and whose clients offer these ALPN protocols.
    pub fn with_alpn(alpn: Vec<Vec<u8>>) -> Self {
        TlsTransport {
            cache: Arc::new(ConfigCache::with_alpn(alpn)),
        }
    }

    /// The configuration cache (and ALPN setting) of this transport.
    pub fn cache(&self) -> &Arc<ConfigCache> {
        &self.cache
    }

    /// Binds a TLS listener on `addr` (must run inside a tokio runtime).
    ///
    /// The server configuration is built first, so missing or bad certificate files fail
    /// here, before any socket is bound. The listener's options give the framing
    /// (`tcp_packet`), `max_message_size`, the cap `tcp_max_connections` (accepting pauses
    /// while it is reached) and the handshake timeout (`connect_timeout`, default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn bind(&self, addr: SocketAddr, options: Arc<Options>) -> Result<TlsListener, Error> {
        let config = self.cache.server_config(&options)?;
        let tcp = nkp_tcp::socket::bind(addr)?;
        let local = tcp
            .local_addr()
            .map_err(|e| Error::io("local address", Some(addr), e))?;
        let limit = options.effective_tcp_max_connections();
        tracing::debug!(%local, limit, "tls listener bound");
        Ok(TlsListener {
            tcp,
            local,
            acceptor: TlsAcceptor::from(config.clone()),
            cache: self.cache.clone(),
            config,
            handshake_timeout: options.connect_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
            options,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            acquiring: None,
            permit: None,
            backoff: None,
        })
    }

    /// Connects to `remote` and runs the client handshake, all within the options'
    /// `connect_timeout`; returns the concrete link (see [`session_info`]).
    ///
    /// The server is verified unless `tls_verify=false` (see [`crate::client_config`]),
    /// against the name given by [`server_name`].
    pub async fn connect_link(&self, remote: SocketAddr, opts: &Options) -> Result<TlsLink, Error> {
        let timeout = opts.effective_connect_timeout();
        let config = self.cache.client_config(opts)?;
        let name = server_name(opts, remote)?;
        let start = Instant::now();
        let tcp = nkp_tcp::socket::connect(remote, timeout).await?;
        let left = timeout.saturating_sub(start.elapsed());
        let tls = connect_tls(config, name, tcp, left)
            .await
            .map_err(|e| match e {
                Error::Timeout { op, .. } => Error::Timeout { op, after: timeout },
                e => e,
            })?;
        let local = tls
            .get_ref()
            .0
            .local_addr()
            .map_err(|e| Error::io("local address", Some(remote), e))?;
        let mut info = LinkInfo::new(TransportKind::Tls, local, remote);
        info.meta.host = opts.host.clone();
        Ok(StreamLink::new(
            CleanEof::new(TlsStream::Client(tls)),
            StreamCodec::new(&opts.framing(), opts.effective_max_message_size()),
            info,
        ))
    }
}

fn check_kind(t: TransportKind) -> Result<(), Error> {
    if t == TransportKind::Tls {
        Ok(())
    } else {
        Err(Error::InvalidTransport(format!(
            "{t} (the TLS transport serves tls only)"
        )))
    }
}

impl Transport for TlsTransport {
    fn kinds(&self) -> &'static [TransportKind] {
        &[TransportKind::Tls]
    }

    fn listen(&self, req: ListenRequest) -> BoxFuture<'static, Result<BoxListener, Error>> {
        let this = self.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let l: BoxListener = Box::new(this.bind(req.addr, req.options)?);
            Ok(l)
        })
    }

    fn connect(&self, req: ConnectRequest) -> BoxFuture<'static, Result<BoxLink, Error>> {
        let this = self.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let link: BoxLink = Box::new(this.connect_link(req.remote, &req.options).await?);
            Ok(link)
        })
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A bound TLS listener: a stream of [`Accepted::Pending`] handshakes, one per accepted
/// socket. Each handshake future yields a [`TlsLink`] (boxed) whose `meta.host` is the SNI
/// name the client sent; it holds one of the listener's `tcp_max_connections` slots for as
/// long as the link lives. Dropping the listener closes its socket; links already accepted
/// go on.
pub struct TlsListener {
    tcp: TcpListener,
    local: SocketAddr,
    acceptor: TlsAcceptor,
    /// Where the acceptor's configuration comes from: looked up again for every accepted
    /// connection, so renewed certificate files (or a cleared cache) are used by new
    /// handshakes while established connections go on.
    cache: Arc<ConfigCache>,
    config: Arc<rustls::ServerConfig>,
    options: Arc<Options>,
    handshake_timeout: Duration,
    slots: Arc<Semaphore>,
    limit: usize,
    acquiring: Option<Acquire>,
    permit: Option<OwnedSemaphorePermit>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .field("connections", &self.connections())
            .field("limit", &self.limit)
            .finish()
    }
}

impl TlsListener {
    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepted connections still alive (handshaking or linked).
    pub fn connections(&self) -> usize {
        let reserved = usize::from(self.permit.is_some());
        self.limit
            .saturating_sub(self.slots.available_permits())
            .saturating_sub(reserved)
    }

    /// The cap on accepted connections (`tcp_max_connections`).
    pub fn max_connections(&self) -> usize {
        self.limit
    }
}

impl Stream for TlsListener {
    type Item = Result<Accepted, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(sleep) = this.backoff.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.backoff = None;
        }
        if this.permit.is_none() {
            let slots = &this.slots;
            let acquiring = this
                .acquiring
                .get_or_insert_with(|| Box::pin(slots.clone().acquire_owned()));
            match acquiring.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(p)) => {
                    this.acquiring = None;
                    this.permit = Some(p);
                }
                // The semaphore is never closed; treat it as the end of the listener.
                Poll::Ready(Err(_)) => return Poll::Ready(None),
            }
        }
        match this.tcp.poll_accept(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                tracing::debug!(local = %this.local, error = %e, "tls accept failed");
                // A connection that died in the backlog is not a reason to wait; anything
                // else (EMFILE, ENFILE, ENOMEM, ...) lasts a while.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) {
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
                Poll::Ready(Some(Err(Error::io("accept", Some(this.local), e))))
            }
            Poll::Ready(Ok((tcp, remote))) => {
                let Some(permit) = this.permit.take() else {
                    return Poll::Pending;
                };
                this.refresh_config();
                let fut = server_handshake(
                    this.acceptor.clone(),
                    tcp,
                    this.local,
                    remote,
                    this.options.clone(),
                    this.handshake_timeout,
                    permit,
                );
                Poll::Ready(Some(Ok(Accepted::Pending(Box::pin(fut)))))
            }
        }
    }
}

impl TlsListener {
    /// Picks up a new server configuration (renewed certificate files, a cleared cache);
    /// if the new files are unusable the listener keeps the configuration it has.
    fn refresh_config(&mut self) {
        match self.cache.server_config(&self.options) {
            Ok(c) if !Arc::ptr_eq(&c, &self.config) => {
                tracing::info!(local = %self.local, "TLS certificate reloaded");
                self.acceptor = TlsAcceptor::from(c.clone());
                self.config = c;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(local = %self.local, error = %e, "TLS files changed but cannot be used; keeping the current certificate");
            }
        }
    }
}

impl Listener for TlsListener {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

async fn server_handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    listen: SocketAddr,
    remote: SocketAddr,
    options: Arc<Options>,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
) -> Result<BoxLink, Error> {
    nkp_tcp::socket::configure(&tcp).map_err(|e| Error::io("configure socket", Some(remote), e))?;
    let local = tcp.local_addr().unwrap_or(listen);
    if options.proxy_protocol == Some(true) {
        // Behind a load balancer: the PROXY header comes before the ClientHello.
        let (header, io) = nkp_core::proxy::read_header(tcp, timeout)
            .await
            .inspect_err(
                |e| tracing::info!(%remote, error = %e, "bad PROXY header: connection closed"),
            )?;
        let remote = match header {
            nkp_core::proxy::ProxyHeader::Proxy { source, .. } => source,
            _ => remote,
        };
        return tls_link(&acceptor, io, local, remote, &options, timeout, permit).await;
    }
    tls_link(&acceptor, tcp, local, remote, &options, timeout, permit).await
}

/// Runs the server handshake on `io` and frames the TLS stream.
async fn tls_link<IO>(
    acceptor: &TlsAcceptor,
    io: IO,
    local: SocketAddr,
    remote: SocketAddr,
    options: &Options,
    timeout: Duration,
    permit: OwnedSemaphorePermit,
) -> Result<BoxLink, Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tls = match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let e = crate::stream::handshake_error("from", Some(remote), e);
            tracing::debug!(%remote, error = %e, "tls handshake failed");
            return Err(e);
        }
        Err(_) => {
            return Err(Error::Timeout {
                op: "tls handshake",
                after: timeout,
            });
        }
    };
    let mut info = LinkInfo::new(TransportKind::Tls, local, remote);
    info.meta.host = tls.get_ref().1.server_name().map(str::to_string);
    let link = StreamLink::new(
        CleanEof::new(TlsStream::Server(tls)),
        StreamCodec::new(&options.framing(), options.effective_max_message_size()),
        info,
    )
    .with_guard(permit);
    Ok(Box::new(link))
}
