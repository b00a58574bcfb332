//! HTTP transport for nkpacket: one shared hyper HTTP/1.1 server per ip:port, routing
//! requests and WebSocket upgrades to listeners by host, path prefix and sub-protocol.
//!
//! * [`HttpServers`] is the registry of shared servers (spec §9.1–§9.3): http, https, ws and
//!   wss listeners do not bind sockets themselves but attach a *filter* ([`FilterSpec`]:
//!   kind, host, path prefix, sub-protocol) with a [`RouteHandler`] to the server on their
//!   ip:port. Requests go to the first matching filter in order (longest path first); a
//!   handler may decline; no match is a `404` with an empty body. Every response carries
//!   `server: NkPACKET`. Limits: request head size (`http_max_head_size`, 64 KiB → `431`),
//!   header count (`http_max_headers`), requests per connection (`http_max_keepalive`),
//!   header read timeout (`http_request_timeout`), concurrent connections
//!   (`tcp_max_connections`), TLS handshake timeout.
//! * [`HttpTransport`] implements [`nkp_core::Transport`] for `http`/`https`: server links
//!   are one request each ([`HttpExchangeLink`]: the body in, the response out, with
//!   [`HttpResponse`] for status and headers), client links POST each frame
//!   ([`HttpClientLink`]).
//! * [`HttpServers::attach_service`] mounts any tower service (an axum `Router`) for a host
//!   and path: the Rust form of the original's `http_init`.
//!
//! The `nkp-ws` crate attaches its ws filters to the same [`HttpServers`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use nkp_core::{ListenRequest, Options, Transport, TransportKind};
//! use nkp_http::{HttpServers, HttpTransport};
//!
//! let servers = HttpServers::new();
//! let http = HttpTransport::new(servers.clone());
//! let listen = |path: &str| {
//!     let mut o = Options::default();
//!     o.set("path", path).unwrap();
//!     o
//! };
//! let a = http
//!     .listen(ListenRequest { transport: TransportKind::Http, addr: "127.0.0.1:0".parse().unwrap(),
//!                             options: Arc::new(listen("/a")) })
//!     .await
//!     .unwrap();
//! // a second listener on the same port shares the server; more specific paths route first
//! let b = http
//!     .listen(ListenRequest { transport: TransportKind::Http, addr: a.local_addr(),
//!                             options: Arc::new(listen("/a/b")) })
//!     .await
//!     .unwrap();
//! let info = servers.servers();
//! assert_eq!(info.len(), 1);
//! let paths: Vec<_> = info[0].filters.iter().map(|f| f.spec.path.as_str()).collect();
//! assert_eq!(paths, ["/a/b", "/a"]);
//! # drop((a, b));
//! # }
//! ```

mod client;
mod exchange;
pub mod files;
mod path;
mod request;
mod response;
mod server;
mod settings;
mod transport;
mod wire;

pub use client::{HttpClientLink, host_header};
pub use exchange::{HttpExchangeLink, LISTENER_QUEUE, RoutedListener};
pub use path::{host_without_port, normalize_path, path_segments, sub_path};
pub use request::HttpRequest;
pub use response::HttpResponse;
pub use server::{
    Attachment, BoxError, ConnSlot, FilterInfo, FilterSpec, HttpServers, RouteContext,
    RouteHandler, RouteKind, Routed, SERVER_HEADER, ServerInfo, is_websocket_upgrade,
    status_response,
};
pub use settings::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_HEADERS, DEFAULT_REQUEST_TIMEOUT, ServerSettings,
};
pub use transport::HttpTransport;

#[doc(no_inline)]
pub use axum::body::Body;
