//! The `http` and `https` transport.

use std::sync::Arc;
use std::time::Instant;

use futures_core::future::BoxFuture;
use nkp_core::{
    BoxLink, BoxListener, ConnectRequest, Error, ListenRequest, Options, Transport, TransportKind,
};
use nkp_tls::{CleanEof, ConfigCache};

use crate::client::HttpClientLink;
use crate::exchange::{RoutedListener, exchange_channel};
use crate::server::{FilterSpec, HttpServers, RouteKind};

/// The `http`/`https` transport.
///
/// * `listen` attaches an http filter (host, path, from the options) to the shared server on
///   the address (see [`HttpServers`]) and returns a listener yielding one
///   [`HttpExchangeLink`](crate::HttpExchangeLink) per routed request.
/// * `connect` opens an [`HttpClientLink`]: each data frame written is POSTed to the `path`
///   option, each response body comes back as a frame.
///
/// Cheap to clone. Build it with the same [`HttpServers`] as the ws transport so that
/// http(s) and ws(s) listeners share ports.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use futures_util::{SinkExt, StreamExt};
/// use nkp_core::{Accepted, ConnectRequest, Frame, ListenRequest, Options, Transport, TransportKind};
/// use nkp_http::{HttpServers, HttpTransport};
///
/// let http = HttpTransport::new(HttpServers::new());
/// let mut lopts = Options::default();
/// lopts.set("path", "/echo").unwrap();
/// let mut listener = http
///     .listen(ListenRequest {
///         transport: TransportKind::Http,
///         addr: "127.0.0.1:0".parse().unwrap(),
///         options: Arc::new(lopts),
///     })
///     .await
///     .unwrap();
/// let addr = listener.local_addr();
/// tokio::spawn(async move {
///     while let Some(Ok(Accepted::Link(mut link))) = listener.next().await {
///         tokio::spawn(async move {
///             // echo: the request body is the response body
///             while let Some(Ok(frame)) = link.next().await {
///                 link.send(frame).await.unwrap();
///             }
///         });
///     }
/// });
///
/// let mut copts = Options::default();
/// copts.set("path", "/echo/x").unwrap();
/// let mut client = http
///     .connect(ConnectRequest { transport: TransportKind::Http, remote: addr, options: Arc::new(copts) })
///     .await
///     .unwrap();
/// client.send(Frame::binary(&b"hello"[..])).await.unwrap();
/// assert_eq!(client.next().await.unwrap().unwrap(), Frame::binary(&b"hello"[..]));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HttpTransport {
    servers: HttpServers,
    tls: Arc<ConfigCache>,
}

impl HttpTransport {
    /// A transport attaching its listeners to `servers`.
    pub fn new(servers: HttpServers) -> Self {
        HttpTransport {
            servers,
            tls: Arc::new(ConfigCache::with_alpn(vec![b"http/1.1".to_vec()])),
        }
    }

    /// The shared server registry.
    pub fn servers(&self) -> &HttpServers {
        &self.servers
    }

    /// Connects to `remote` (TCP, plus TLS for https) within the options' `connect_timeout`
    /// and returns the concrete client link.
    pub async fn connect_link(
        &self,
        transport: TransportKind,
        remote: std::net::SocketAddr,
        opts: &Options,
    ) -> Result<HttpClientLink, Error> {
        check_kind(transport)?;
        let timeout = opts.effective_connect_timeout();
        let start = Instant::now();
        let tcp = nkp_tcp::socket::connect(remote, timeout).await?;
        let local = tcp
            .local_addr()
            .map_err(|e| Error::io("local address", Some(remote), e))?;
        if transport == TransportKind::Https {
            let config = self.tls.client_config(opts)?;
            let name = nkp_tls::server_name(opts, remote)?;
            let left = timeout.saturating_sub(start.elapsed());
            let tls = nkp_tls::connect_tls(config, name, tcp, left)
                .await
                .map_err(|e| match e {
                    Error::Timeout { op, .. } => Error::Timeout { op, after: timeout },
                    e => e,
                })?;
            HttpClientLink::new(CleanEof::new(tls), transport, local, remote, opts).await
        } else {
            HttpClientLink::new(tcp, transport, local, remote, opts).await
        }
    }
}

fn check_kind(t: TransportKind) -> Result<(), Error> {
    match t {
        TransportKind::Http | TransportKind::Https => Ok(()),
        _ => Err(Error::InvalidTransport(format!(
            "{t} (the HTTP transport serves http and https only)"
        ))),
    }
}

impl Transport for HttpTransport {
    fn kinds(&self) -> &'static [TransportKind] {
        &[TransportKind::Http, TransportKind::Https]
    }

    fn listen(&self, req: ListenRequest) -> BoxFuture<'static, Result<BoxListener, Error>> {
        let servers = self.servers.clone();
        Box::pin(async move {
            check_kind(req.transport)?;
            let opts = &req.options;
            let spec = FilterSpec::from_options(RouteKind::Http, opts);
            let (handler, rx) = exchange_channel(req.transport, opts.effective_max_message_size());
            let attachment = servers.attach(
                req.addr,
                opts,
                req.transport == TransportKind::Https,
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
