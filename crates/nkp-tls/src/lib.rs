//! TLS transport for nkpacket: rustls (ring provider) over TCP, certificates and verification.
//!
//! * [`TlsTransport`] implements [`nkp_core::Transport`] for `tls`: listeners accept TCP
//!   sockets and hand each one out as [`Accepted::Pending`], whose future runs the TLS
//!   handshake in the connection's task (bounded by the listener's `connect_timeout`, 10 s
//!   by default); outbound links connect and handshake within `connect_timeout`. Links are
//!   [`StreamLink`]s framed by `tcp_packet`.
//! * [`server_config`], [`client_config`] and [`ConfigCache`] build rustls configurations
//!   from the `tls_*` options; [`accept`], [`connect_tls`] and [`server_name`] are the
//!   building blocks the WSS and HTTPS transports use on their own sockets.
//! * [`self_signed`] and [`write_self_signed`] make certificates for tests and for `nkp
//!   listen` without certificate files.
//!
//! Clients verify the server by default (Mozilla roots, or `tls_cacertfile`), against the
//! `host` option or else the IP address; `tls_verify=false` opts out. A listener asks for
//! client certificates only with `tls_verify=true` (and then requires them, verified against
//! `tls_cacertfile`). Versions: TLS 1.2 and 1.3 (`tls_versions` restricts them).
//!
//! Every configuration uses the *ring* crypto provider explicitly, so the process-wide
//! default provider is never needed (and aws-lc-rs is never compiled).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use futures_util::{SinkExt, StreamExt};
//! use nkp_core::{Accepted, ConnectRequest, Frame, ListenRequest, Options, Transport, TransportKind};
//! use nkp_tls::TlsTransport;
//!
//! let dir = std::env::temp_dir().join(format!("nkp-tls-doc-lib-{}", std::process::id()));
//! let (cert, key) = nkp_tls::write_self_signed(&dir, &["localhost".into()]).unwrap();
//! let mut lopts = Options::default();
//! lopts.set("tls_certfile", cert.to_str().unwrap()).unwrap();
//! lopts.set("tls_keyfile", key.to_str().unwrap()).unwrap();
//! lopts.set("tcp_packet", "4").unwrap();
//!
//! let tls = TlsTransport::new();
//! let mut listener = tls
//!     .listen(ListenRequest {
//!         transport: TransportKind::Tls,
//!         addr: "127.0.0.1:0".parse().unwrap(),
//!         options: Arc::new(lopts),
//!     })
//!     .await
//!     .unwrap();
//! let addr = listener.local_addr();
//! tokio::spawn(async move {
//!     while let Some(Ok(Accepted::Pending(handshake))) = listener.next().await {
//!         tokio::spawn(async move {
//!             let mut link = handshake.await.unwrap();
//!             while let Some(Ok(frame)) = link.next().await {
//!                 link.send(frame).await.unwrap();
//!             }
//!         });
//!     }
//! });
//!
//! let mut copts = Options::default();
//! copts.set("tls_cacertfile", cert.to_str().unwrap()).unwrap();
//! copts.set("host", "localhost").unwrap();
//! copts.set("tcp_packet", "4").unwrap();
//! let mut link = tls
//!     .connect(ConnectRequest { transport: TransportKind::Tls, remote: addr, options: Arc::new(copts) })
//!     .await
//!     .unwrap();
//! link.send(Frame::binary(&b"hello"[..])).await.unwrap();
//! assert_eq!(link.next().await.unwrap().unwrap(), Frame::binary(&b"hello"[..]));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # }
//! ```

mod cert;
mod config;
mod stream;
mod transport;

pub use cert::{DEFAULT_HOSTS, self_signed, write_self_signed};
pub use config::{ConfigCache, client_config, provider, server_config};
pub use stream::{CleanEof, SessionInfo, accept, connect_tls, server_name};
pub use transport::{DEFAULT_HANDSHAKE_TIMEOUT, TlsLink, TlsListener, TlsTransport, session_info};

#[doc(no_inline)]
pub use nkp_core::{Accepted, StreamLink};
#[doc(no_inline)]
pub use {rustls, tokio_rustls};
