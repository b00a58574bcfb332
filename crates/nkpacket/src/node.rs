//! [`Nkpacket`]: one node of the transport layer — its protocols, listeners, connections and
//! configuration. No globals: several nodes can live in one process.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nkp_core::options::ResolveType;
use nkp_core::{Error, ListenRequest, Options, Transport, TransportKind};
use nkp_dns::{DnsConfig, DnsResolver};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::conn::Connection;
use crate::conn::table::ConnectionTable;
use crate::dynproto::ProtoRef;
use crate::listener::{self, ListenerHandle, ListenerStart, ListenerTable};
use crate::protocol::Protocol;
use crate::registry::ProtocolRegistry;
use crate::resolve::{self, Destination, ResolveCtx, Spec, Target};

/// Node-wide settings (the original's application environment, §3.1).
#[derive(Debug, Clone)]
pub struct Config {
    /// Cap on live connections, inbound and outbound (default 1024).
    pub max_connections: usize,
    /// Bind retries when an address is in use (default 5).
    pub bind_retries: u32,
    /// Delay between bind retries (default 1 s).
    pub bind_retry_delay: Duration,
    /// Host name that the special host `node` stands for (default: `localhost`).
    pub node_host: String,
    /// Longest a protocol callback may keep its thread; a callback that runs longer stops
    /// its connection (default 2 s). Protocol code must not block.
    pub callback_budget: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: nkp_core::options::defaults::MAX_CONNECTIONS,
            bind_retries: 5,
            bind_retry_delay: Duration::from_secs(1),
            node_host: "localhost".into(),
            callback_budget: Duration::from_secs(2),
        }
    }
}

/// Builds an [`Nkpacket`] node.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use nkpacket::{Nkpacket, echo::Echo};
/// let nk = Nkpacket::builder().max_connections(100).protocol("echo", Echo).build();
/// assert_eq!(nk.config().max_connections, 100);
/// # }
/// ```
pub struct NkpacketBuilder {
    config: Config,
    dns: DnsConfig,
    /// STUN transactions of queries sent from this node's UDP listeners.
    #[cfg(feature = "udp")]
    stun: nkp_stun::Transactions,
    /// The shared HTTP servers of this node.
    #[cfg(feature = "http")]
    http: Option<nkp_http::HttpServers>,
    /// The TLS transport (its configuration cache).
    #[cfg(feature = "tls")]
    tls: Option<nkp_tls::TlsTransport>,
    transports: HashMap<TransportKind, Arc<dyn Transport>>,
    registry: ProtocolRegistry,
}

impl NkpacketBuilder {
    /// Sets the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the connection cap.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Sets the bind retry policy.
    pub fn bind_retries(mut self, retries: u32, delay: Duration) -> Self {
        self.config.bind_retries = retries;
        self.config.bind_retry_delay = delay;
        self
    }

    /// Sets the DNS configuration (nameservers, timeouts, cache TTLs). Default: the
    /// system's resolver configuration.
    pub fn dns(mut self, dns: DnsConfig) -> Self {
        self.dns = dns;
        self
    }

    /// Adds (or replaces) a transport implementation for the kinds it serves.
    pub fn transport(mut self, t: Arc<dyn Transport>) -> Self {
        for k in t.kinds() {
            self.transports.insert(*k, t.clone());
        }
        self
    }

    /// Registers a protocol for a scheme, for every domain.
    pub fn protocol<P: Protocol>(self, scheme: &str, p: P) -> Self {
        self.registry.register(scheme, ProtoRef::new(scheme, p));
        self
    }

    /// Builds the node. If the DNS resolver cannot be built from its configuration, the
    /// error is logged and every resolution fails with it; use
    /// [`NkpacketBuilder::try_build`] to get the error here instead.
    pub fn build(self) -> Nkpacket {
        let dns = DnsResolver::new(self.dns.clone()).map_err(|e| {
            tracing::error!(error = %e, "cannot build the DNS resolver");
            e.to_string()
        });
        self.finish(dns)
    }

    /// Builds the node, or reports why the DNS resolver could not be built.
    pub fn try_build(self) -> Result<Nkpacket, Error> {
        let dns = DnsResolver::new(self.dns.clone())?;
        Ok(self.finish(Ok(dns)))
    }

    fn finish(self, dns: Result<DnsResolver, String>) -> Nkpacket {
        Nkpacket {
            inner: Arc::new(Inner {
                dns,
                #[cfg(feature = "udp")]
                stun: self.stun,
                #[cfg(feature = "udp")]
                external: RwLock::new(None),
                #[cfg(feature = "http")]
                http: self.http,
                #[cfg(feature = "tls")]
                tls: self.tls,
                conns: Arc::new(ConnectionTable::new(self.config.max_connections)),
                config: RwLock::new(self.config),
                transports: self.transports,
                registry: self.registry,
                listeners: Arc::new(ListenerTable::default()),
                shutdown: CancellationToken::new(),
                connect_locks: parking_lot::Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// One nkpacket node. Cheap to clone; clones share everything.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use nkpacket::{Nkpacket, Options, echo::Echo};
///
/// let nk = Nkpacket::builder().protocol("echo", Echo).build();
/// let listener = nk
///     .start_listener("echo://127.0.0.1:0;transport=tcp", Options::default())
///     .await
///     .unwrap();
/// let uri = format!("echo://127.0.0.1:{};transport=tcp", listener.info().port());
/// let conn = nk.send(uri.as_str(), bytes::Bytes::from_static(b"hi"), Options::default()).await.unwrap();
/// assert_eq!(conn.info().remote().port(), listener.info().port());
/// nk.shutdown().await;
/// # }
/// ```
#[derive(Clone)]
pub struct Nkpacket {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) dns: Result<DnsResolver, String>,
    #[cfg(feature = "udp")]
    pub(crate) stun: nkp_stun::Transactions,
    /// The address found by the last external address discovery.
    #[cfg(feature = "udp")]
    pub(crate) external: RwLock<Option<SocketAddr>>,
    #[cfg(feature = "http")]
    pub(crate) http: Option<nkp_http::HttpServers>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<nkp_tls::TlsTransport>,
    pub(crate) config: RwLock<Config>,
    pub(crate) transports: HashMap<TransportKind, Arc<dyn Transport>>,
    pub(crate) registry: ProtocolRegistry,
    pub(crate) conns: Arc<ConnectionTable>,
    pub(crate) listeners: Arc<ListenerTable>,
    pub(crate) shutdown: CancellationToken,
    /// Serializes concurrent connects to the same place (§5.6 step 3, keyed properly).
    pub(crate) connect_locks:
        parking_lot::Mutex<HashMap<crate::conn::table::ConnKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl ResolveCtx for Inner {
    fn protocol(&self, domain: Option<&str>, scheme: &str) -> Option<ProtoRef> {
        self.registry.get(domain, scheme)
    }
    fn protocol_by_name(&self, name: &str) -> Option<ProtoRef> {
        self.registry.get(None, name)
    }
    fn node_host(&self) -> String {
        self.config.read().node_host.clone()
    }
    fn dns(&self) -> Result<&DnsResolver, Error> {
        self.dns
            .as_ref()
            .map_err(|e| Error::Dns(format!("no resolver: {e}")))
    }
}

impl Default for Nkpacket {
    fn default() -> Self {
        Nkpacket::builder().build()
    }
}

impl Nkpacket {
    /// A builder with the transports compiled in (cargo features) and no protocols.
    pub fn builder() -> NkpacketBuilder {
        #[allow(unused_mut)]
        let mut b = NkpacketBuilder {
            config: Config::default(),
            dns: DnsConfig::default(),
            #[cfg(feature = "udp")]
            stun: nkp_stun::Transactions::new(),
            #[cfg(feature = "http")]
            http: None,
            #[cfg(feature = "tls")]
            tls: None,
            transports: HashMap::new(),
            registry: ProtocolRegistry::default(),
        };
        #[cfg(feature = "udp")]
        {
            let stun = crate::stun::interceptor_factory(b.stun.clone());
            b = b.transport(Arc::new(
                nkp_udp::UdpTransport::new().with_interceptor(stun),
            ));
            b = b.protocol("stun", crate::stun::StunServer);
        }
        #[cfg(feature = "http")]
        {
            // One shared HTTP server per ip:port, for every http/https/ws/wss listener.
            let servers = nkp_http::HttpServers::new();
            b = b.transport(Arc::new(nkp_http::HttpTransport::new(servers.clone())));
            #[cfg(feature = "ws")]
            {
                b = b.transport(Arc::new(nkp_ws::WsTransport::new(servers.clone())));
            }
            b.http = Some(servers);
        }
        #[cfg(feature = "sctp")]
        {
            b = b.transport(Arc::new(nkp_sctp::SctpTransport::new()));
        }
        #[cfg(feature = "tls")]
        {
            let tls = nkp_tls::TlsTransport::new();
            b = b.transport(Arc::new(tls.clone()));
            b.tls = Some(tls);
        }
        #[cfg(feature = "tcp")]
        {
            // Bind retries are the node's (for every transport), not the transport's.
            b = b.transport(Arc::new(
                nkp_tcp::TcpTransport::new().with_bind_retry(0, Duration::ZERO),
            ));
        }
        b
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.inner.config.read().clone()
    }

    /// Changes the configuration at run time (the connection cap applies at once).
    pub fn set_config(&self, config: Config) {
        self.inner.conns.set_max(config.max_connections);
        *self.inner.config.write() = config;
    }

    // ---------------------------------------------------------------- protocols

    /// Registers a protocol for a scheme in every domain; a later registration replaces it.
    pub fn register_protocol<P: Protocol>(&self, scheme: &str, p: P) {
        self.inner
            .registry
            .register(scheme, ProtoRef::new(scheme, p));
    }

    /// Registers a protocol for a scheme in one domain (it wins over the global one there).
    pub fn register_domain_protocol<P: Protocol>(&self, domain: &str, scheme: &str, p: P) {
        self.inner
            .registry
            .register_in(domain, scheme, ProtoRef::new(scheme, p));
    }

    /// The Rust type name of the protocol a scheme maps to (in `domain`, falling back to
    /// the global registration), or `None`.
    pub fn protocol_type(&self, domain: Option<&str>, scheme: &str) -> Option<&'static str> {
        self.inner
            .registry
            .get(domain, scheme)
            .map(|p| p.proto.type_name())
    }

    // ---------------------------------------------------------------- resolution

    /// Resolves a spec into destinations, as `connect` would (`listen`: as a listener).
    pub async fn resolve(
        &self,
        spec: impl Into<Spec>,
        opts: &Options,
        listen: bool,
    ) -> Result<Vec<Destination>, Error> {
        let mode = if listen {
            ResolveType::Listen
        } else {
            ResolveType::Connect
        };
        let targets = resolve::resolve_spec(&*self.inner, spec.into(), opts, mode).await?;
        Ok(targets
            .into_iter()
            .filter_map(|t| match t {
                Target::Dest(d) | Target::Current(d) | Target::Connect(d) => Some(d),
                Target::Conn(_) => None,
            })
            .collect())
    }

    pub(crate) fn transport(&self, kind: TransportKind) -> Result<Arc<dyn Transport>, Error> {
        self.inner.transports.get(&kind).cloned().ok_or_else(|| {
            Error::Unsupported(format!(
                "transport {kind} is not available in this build (enable its cargo feature)"
            ))
        })
    }

    // ---------------------------------------------------------------- listeners

    /// Starts a listener. The spec must resolve to exactly one address.
    ///
    /// Errors: [`Error::NoListener`] / [`Error::MultipleListeners`], [`Error::AlreadyStarted`]
    /// for the same id on the same address, bind errors (after the configured retries when
    /// the address is in use), [`Error::Unsupported`] for a transport not compiled in.
    pub async fn start_listener(
        &self,
        spec: impl Into<Spec>,
        opts: Options,
    ) -> Result<ListenerHandle, Error> {
        let spec = spec.into();
        let from_dest = matches!(spec, Spec::Dest(_));
        let mut dests = self.resolve(spec, &opts, true).await?;
        // A name with several addresses (localhost: 127.0.0.1 and ::1) listens on the first
        // (IPv4 first); several URIs are still an error.
        if dests.len() > 1
            && dests.iter().all(|d| {
                d.options.id == dests[0].options.id
                    && d.transport == dests[0].transport
                    && d.addr.port() == dests[0].addr.port()
            })
        {
            dests.truncate(1);
        }
        let d = match dests.len() {
            0 => return Err(Error::NoListener),
            1 => dests.remove(0),
            n => return Err(Error::MultipleListeners(n)),
        };
        let proto = d.proto.clone().unwrap_or_else(ProtoRef::none);
        let id = d.options.id.clone().unwrap_or_else(resolve::random_id);
        let domain = d.options.domain_or_default().to_string();
        let endpoint = format!("{}:{}", d.transport, d.addr);
        if self.inner.listeners.all().iter().any(|l| {
            l.info().id() == id
                && l.info().transport() == d.transport
                && (l.info().local() == d.addr
                    || (d.addr.port() != 0
                        && l.info().local().port() == d.addr.port()
                        && l.info().listen_ip() == d.addr.ip()))
        }) {
            return Err(Error::AlreadyStarted { id, endpoint });
        }
        let transport = self.transport(d.transport)?;
        let mut options = d.options.clone();
        if options.tcp_packet.is_none()
            && let Some(f) = proto.proto.framing()
        {
            options.tcp_packet = Some(f);
        }
        let options = Arc::new(options);

        // Port 0 on a destination given directly: the protocol's default port first, then
        // an ephemeral one (§2.6).
        let mut candidates = vec![d.addr];
        if d.addr.port() == 0
            && from_dest
            && let Some(p) = proto.proto.default_port(d.transport)
        {
            candidates.insert(0, SocketAddr::new(d.addr.ip(), p));
        }
        let (retries, delay) = {
            let c = self.inner.config.read();
            (c.bind_retries, c.bind_retry_delay)
        };
        let mut last_err = None;
        let mut socket = None;
        'outer: for (i, addr) in candidates.iter().enumerate() {
            let last_candidate = i + 1 == candidates.len();
            let mut attempt = 0;
            loop {
                let req = ListenRequest {
                    transport: d.transport,
                    addr: *addr,
                    options: options.clone(),
                };
                match transport.listen(req).await {
                    Ok(s) => {
                        socket = Some(s);
                        break 'outer;
                    }
                    Err(e) if e.code() == "eaddrinuse" && !last_candidate => {
                        last_err = Some(e);
                        continue 'outer;
                    }
                    Err(e) if e.code() == "eaddrinuse" && attempt < retries => {
                        attempt += 1;
                        tracing::debug!(%addr, attempt, "address in use; retrying");
                        last_err = Some(e);
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let Some(mut socket) = socket else {
            return Err(last_err.unwrap_or(Error::NoListener));
        };
        // `udp_starts_tcp` on an ephemeral port: the port must be free for TCP too (a port
        // can be free for UDP and not for TCP, e.g. held by TIME-WAIT connections).
        if d.transport == TransportKind::Udp
            && options.udp_starts_tcp == Some(true)
            && d.addr.port() == 0
        {
            let mut tries = 0;
            while std::net::TcpListener::bind(socket.local_addr()).is_err() && tries < 20 {
                tries += 1;
                let req = ListenRequest {
                    transport: d.transport,
                    addr: d.addr,
                    options: options.clone(),
                };
                socket = transport.listen(req).await?;
            }
        }
        let external_url = options
            .external_url
            .clone()
            .or_else(|| external_url(d.transport, socket.local_addr(), options.path.as_deref()));
        let local = socket.local_addr();
        let start = |socket, options: Arc<Options>| ListenerStart {
            rebind: Some(rebind_for(&transport, d.transport, local, options.clone())),
            id: id.clone(),
            domain: domain.clone(),
            proto: proto.clone(),
            transport: d.transport,
            listen_ip: d.addr.ip(),
            options,
            external_url: external_url.clone(),
            socket,
            conns: self.inner.conns.clone(),
            shutdown: self.inner.shutdown.clone(),
            callback_budget: self.inner.config.read().callback_budget,
        };
        let handle = listener::spawn(&self.inner.listeners, start(socket, options.clone()));
        // `reuseport`: more sockets on the same address, one task each; they stop with the
        // first one.
        let workers = options.reuseport.unwrap_or(1);
        if workers > 1 && matches!(d.transport, TransportKind::Tcp | TransportKind::Udp) {
            let mut wopts = (*options).clone();
            wopts.monitor = Some(handle.cancel.clone());
            let wopts = Arc::new(wopts);
            for _ in 1..workers {
                let req = ListenRequest {
                    transport: d.transport,
                    addr: local,
                    options: wopts.clone(),
                };
                match transport.listen(req).await {
                    Ok(s) => {
                        listener::spawn(&self.inner.listeners, start(s, wopts.clone()));
                    }
                    Err(e) => {
                        handle.stop().await;
                        return Err(e);
                    }
                }
            }
        }
        if d.transport == TransportKind::Udp && options.udp_starts_tcp == Some(true) {
            self.start_tcp_companion(&handle, &d, &options, &id).await?;
        }
        Ok(handle)
    }

    /// `udp_starts_tcp` (§6.9): a TCP listener on the same port, with the same domain and
    /// protocol, id `udp_to_tcp:<id>`; the two live and die together.
    async fn start_tcp_companion(
        &self,
        udp: &ListenerHandle,
        d: &Destination,
        options: &Options,
        id: &str,
    ) -> Result<(), Error> {
        let mut topts = options.clone();
        topts.id = Some(format!("udp_to_tcp:{id}"));
        topts.udp_starts_tcp = None;
        topts.udp_no_connections = None;
        topts.udp_stun_reply = None;
        // Stops when the UDP listener stops.
        topts.monitor = Some(udp.cancel.clone());
        let mut tdest = Destination::new(
            d.scheme.clone(),
            TransportKind::Tcp,
            SocketAddr::new(d.addr.ip(), udp.info().port()),
        )
        .with_options(topts);
        tdest.proto = d.proto.clone();
        match Box::pin(self.start_listener(Spec::Dest(tdest), Options::default())).await {
            Ok(tcp) => {
                // ... and the UDP listener stops when the TCP one does.
                let udp = udp.clone();
                tokio::spawn(async move {
                    tcp.stopped().await;
                    udp.stop().await;
                });
                Ok(())
            }
            Err(e) => {
                tracing::warn!(port = udp.info().port(), error = %e, "udp_starts_tcp: no TCP listener; the UDP one stops too");
                udp.stop().await;
                Err(e)
            }
        }
    }

    /// The node's DNS resolver (its cache can be cleared or seeded); `None` when it could
    /// not be built.
    pub fn dns(&self) -> Option<&DnsResolver> {
        self.inner.dns.as_ref().ok()
    }

    /// Sends a STUN Binding query from a UDP listener's socket and returns the address the
    /// server saw (so the mapping is the listener's), retransmitting as RFC 5389 says with
    /// the listener's `udp_stun_t1` (default 500 ms) and giving up at 31·T1.
    #[cfg(feature = "udp")]
    pub async fn stun_query(
        &self,
        listener: &ListenerHandle,
        server: SocketAddr,
    ) -> Result<SocketAddr, Error> {
        crate::stun::query_from(&self.inner.stun, listener, server).await
    }

    /// Finds the external address of this node through STUN servers, tried in order from
    /// the first UDP listener of the family (opt-in: never done at start-up).
    #[cfg(feature = "udp")]
    pub async fn discover_external(&self, servers: &[SocketAddr]) -> Result<SocketAddr, Error> {
        let mut last = Error::NoTransports;
        for server in servers {
            let found = self.stun_from_family(server).await;
            match found {
                Ok(a) => {
                    *self.inner.external.write() = Some(a);
                    return Ok(a);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The external address found by the last successful
    /// [`Nkpacket::discover_external`], for protocols that put it in their messages.
    #[cfg(feature = "udp")]
    pub fn external_address(&self) -> Option<SocketAddr> {
        *self.inner.external.read()
    }

    #[cfg(feature = "udp")]
    async fn stun_from_family(&self, server: &SocketAddr) -> Result<SocketAddr, Error> {
        {
            let Some(l) = self.listeners().into_iter().find(|l| {
                l.info().transport() == TransportKind::Udp
                    && l.info().local().is_ipv6() == server.is_ipv6()
            }) else {
                return Err(Error::NoListeningTransport {
                    transport: TransportKind::Udp,
                    domain: "any".into(),
                    family: if server.is_ipv6() { "IPv6" } else { "IPv4" },
                });
            };
            self.stun_query(&l, *server).await
        }
    }

    /// The node's shared HTTP servers (one per ip:port, serving every http, https, ws and
    /// wss listener on it): introspection, and [`nkp_http::HttpServers::attach_service`] to
    /// mount an axum `Router` or any tower service on a host and path.
    #[cfg(feature = "http")]
    pub fn http_servers(&self) -> Option<&nkp_http::HttpServers> {
        self.inner.http.as_ref()
    }

    /// Serves an axum `Router`, any tower service, or [`crate::http::StaticFiles`] on an
    /// http/https URI (the original's `http_init`): the shared server of that ip:port routes
    /// the requests whose host and path match to it, among the other listeners there.
    /// Serving stops when the returned attachment is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use nkpacket::{Nkpacket, Options, http::StaticFiles};
    /// let nk = Nkpacket::default();
    /// let site = nk
    ///     .serve_http("http://127.0.0.1:0/static", &Options::default(), StaticFiles::new("."))
    ///     .await
    ///     .unwrap();
    /// assert_ne!(site.local_addr().port(), 0);
    /// # }
    /// ```
    #[cfg(feature = "http")]
    pub async fn serve_http<S, B>(
        &self,
        spec: impl Into<Spec>,
        opts: &Options,
        service: S,
    ) -> Result<nkp_http::Attachment, Error>
    where
        S: tower::Service<
                http::Request<nkp_http::Body>,
                Response = http::Response<B>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<nkp_http::BoxError>,
    {
        let mut dests = self.resolve(spec, opts, true).await?;
        dests.truncate(1);
        let d = dests.pop().ok_or(Error::NoListener)?;
        if !matches!(d.transport, TransportKind::Http | TransportKind::Https) {
            return Err(Error::InvalidTransport(format!(
                "{}: a service is served over http or https",
                d.transport
            )));
        }
        let servers = self
            .inner
            .http
            .as_ref()
            .ok_or_else(|| Error::Unsupported("HTTP is not available in this build".into()))?;
        let filter = nkp_http::FilterSpec::from_options(nkp_http::RouteKind::Http, &d.options);
        servers.attach_service(
            d.addr,
            &d.options,
            d.transport == TransportKind::Https,
            filter,
            service,
        )
    }

    /// Makes TLS listeners read their certificate and key files again: new handshakes use
    /// the new certificate, established connections go on. (Listeners also notice changed
    /// files by themselves: each accepted connection checks the files' size and time.)
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self) {
        if let Some(t) = &self.inner.tls {
            t.cache().clear();
        }
    }

    /// Every running listener, in start order.
    pub fn listeners(&self) -> Vec<ListenerHandle> {
        self.inner.listeners.all()
    }

    /// The running listeners of a domain.
    pub fn listeners_in(&self, domain: &str) -> Vec<ListenerHandle> {
        self.listeners()
            .into_iter()
            .filter(|l| l.info().domain() == domain)
            .collect()
    }

    /// Domains with listeners, each with its listener ids.
    pub fn listener_domains(&self) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in self.listeners() {
            m.entry(l.info().domain().to_string())
                .or_default()
                .push(l.info().id().to_string());
        }
        m
    }

    /// The listener with this id.
    ///
    /// Errors: [`Error::IdNotFound`], [`Error::MultipleIds`] when several share it.
    pub fn listener(&self, id: &str) -> Result<ListenerHandle, Error> {
        let mut found: Vec<_> = self
            .listeners()
            .into_iter()
            .filter(|l| l.info().id() == id)
            .collect();
        match found.len() {
            0 => Err(Error::IdNotFound(id.to_string())),
            1 => Ok(found.remove(0)),
            _ => Err(Error::MultipleIds(id.to_string())),
        }
    }

    /// Stops every listener with this id (fine if there is none).
    pub async fn stop_listeners(&self, id: &str) {
        for l in self.listeners().into_iter().filter(|l| l.info().id() == id) {
            l.stop().await;
        }
    }

    /// Stops every listener, or those of one domain.
    pub async fn stop_all(&self, domain: Option<&str>) {
        for l in self.listeners() {
            if domain.is_none_or(|d| l.info().domain() == d) {
                l.stop().await;
            }
        }
    }

    /// Listeners that can serve as base for outbound connections (§5.6): same domain,
    /// protocol and transport, and an address of the given family.
    pub fn listening(
        &self,
        protocol: &str,
        transport: TransportKind,
        domain: &str,
        ipv6: bool,
    ) -> Vec<ListenerHandle> {
        self.listeners()
            .into_iter()
            .filter(|l| {
                let i = l.info();
                i.protocol() == protocol
                    && i.transport() == transport
                    && i.domain() == domain
                    && i.local().is_ipv6() == ipv6
            })
            .collect()
    }

    /// True when the URI resolves to an address one of our listeners serves (§12).
    pub async fn is_local(&self, spec: impl Into<Spec>, opts: &Options) -> bool {
        let Ok(dests) = self.resolve(spec, opts, false).await else {
            return false;
        };
        let listeners = self.listeners();
        dests.iter().any(|d| {
            listeners.iter().any(|l| {
                let i = l.info();
                let port_ok = i.port() == d.addr.port();
                let ip_ok = i.local().ip() == d.addr.ip()
                    || (i.local().ip().is_unspecified()
                        && i.local().is_ipv6() == d.addr.is_ipv6()
                        && is_local_ip(d.addr.ip()));
                i.transport() == d.transport && i.protocol() == d.scheme && port_ok && ip_ok
            })
        })
    }

    // ---------------------------------------------------------------- connections

    /// Every live connection, oldest first.
    pub fn connections(&self) -> Vec<Connection> {
        self.inner.conns.all()
    }

    /// The live connections of a domain.
    pub fn connections_in(&self, domain: &str) -> Vec<Connection> {
        self.connections()
            .into_iter()
            .filter(|c| c.info().domain() == domain)
            .collect()
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.inner.conns.count()
    }

    /// Live connections reusable for (domain, protocol, transport, remote) — what `send`
    /// would reuse.
    pub fn find_connections(
        &self,
        domain: &str,
        protocol: &str,
        transport: TransportKind,
        remote: SocketAddr,
    ) -> Vec<Connection> {
        self.inner.conns.lookup(&crate::conn::table::ConnKey {
            domain: domain.to_string(),
            protocol: Arc::from(protocol),
            transport,
            remote,
        })
    }

    /// Stops every connection, or those of one domain.
    pub fn stop_connections(&self, domain: Option<&str>) {
        for c in self.connections() {
            if domain.is_none_or(|d| c.info().domain() == d) {
                c.stop();
            }
        }
    }

    /// Stops everything: listeners stop accepting, connections close (WebSocket with
    /// 1001), and this waits until all of them have ended or `grace` has passed.
    pub async fn shutdown_with(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        for l in self.inner.listeners.all() {
            let _ = tokio::time::timeout_at(deadline, l.stop()).await;
        }
        for c in self.inner.conns.all() {
            let _ = tokio::time::timeout_at(deadline, c.closed()).await;
        }
    }

    /// [`Nkpacket::shutdown_with`] with a 5 s grace period.
    pub async fn shutdown(&self) {
        self.shutdown_with(Duration::from_secs(5)).await
    }
}

/// Reopens a listener's socket on the same address (with the real port) and options.
fn rebind_for(
    transport: &Arc<dyn Transport>,
    kind: TransportKind,
    addr: SocketAddr,
    options: Arc<Options>,
) -> listener::Rebind {
    let transport = transport.clone();
    let req = ListenRequest {
        transport: kind,
        addr,
        options,
    };
    Arc::new(move || transport.listen(req.clone()))
}

/// The generated external URL of an http/https listener (§2.8), with the original's bugs
/// fixed: IPv6 in brackets, and `::` replaced by `::1` as `0.0.0.0` is by `127.0.0.1`.
///
/// ```
/// use nkpacket::{TransportKind, external_url};
/// let a = "0.0.0.0:8080".parse().unwrap();
/// assert_eq!(external_url(TransportKind::Http, a, Some("/test1")).unwrap(), "http://127.0.0.1:8080/test1");
/// let b = "[::]:443".parse().unwrap();
/// assert_eq!(external_url(TransportKind::Https, b, None).unwrap(), "https://[::1]");
/// assert_eq!(external_url(TransportKind::Tcp, a, None), None);
/// ```
pub fn external_url(
    transport: TransportKind,
    local: SocketAddr,
    path: Option<&str>,
) -> Option<String> {
    let default_port = match transport {
        TransportKind::Http => 80,
        TransportKind::Https => 443,
        _ => return None,
    };
    let ip = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        other => other,
    };
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let port = if local.port() == default_port {
        String::new()
    } else {
        format!(":{}", local.port())
    };
    let mut url = format!("{transport}://{host}{port}{}", path.unwrap_or("/"));
    if url.len() > 2 && url.ends_with('/') {
        url.pop();
    }
    Some(url)
}

/// True for unspecified addresses and the machine's loopback; other local addresses are
/// checked by trying to bind them.
pub fn is_local_ip(ip: IpAddr) -> bool {
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}
