//! # nkpacket
//!
//! A generic transport layer. Write a [`Protocol`] once — how its messages are parsed and
//! encoded, what happens on each connection event — and run it as server, client or both
//! over UDP, TCP, TLS, SCTP, WebSocket and HTTP, addressed by URIs such as
//! `sip://example.com;transport=tls`.
//!
//! * [`Nkpacket`] is a node: protocols, listeners, connections, configuration. No globals.
//! * [`Nkpacket::start_listener`] runs a protocol on a URI
//!   (`echo://0.0.0.0:7000;transport=tcp;tcp_packet=4`).
//! * [`Nkpacket::send`] resolves a URI, reuses a live connection of the same domain or opens a
//!   new one, and sends; [`Nkpacket::connect`] always opens a new one.
//! * Each connection is one task owning its link and the protocol state; a [`Connection`] is
//!   the handle to it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use bytes::Bytes;
//! use nkpacket::{ConnInfo, EncodeError, Frame, Nkpacket, Options, Parse, Protocol};
//!
//! /// Answers every message with its length, as text.
//! struct Len;
//! impl Protocol for Len {
//!     type Message = String;
//!     type State = ();
//!     fn parse(&self, f: Frame, _c: &ConnInfo, _s: &mut ()) -> Parse<String> {
//!         Parse::Reply(f.len().to_string())
//!     }
//!     fn encode(&self, m: String, _c: &ConnInfo, _s: &mut ()) -> Result<Frame, EncodeError> {
//!         Ok(Frame::Binary(Bytes::from(m)))
//!     }
//! }
//!
//! let nk = Nkpacket::builder().protocol("len", Len).build();
//! let l = nk.start_listener("len://127.0.0.1:0;transport=tcp;tcp_packet=2", Options::default())
//!     .await.unwrap();
//! assert!(l.info().port() > 0);
//! nk.shutdown().await;
//! # }
//! ```

mod conn;
mod dynproto;
pub mod echo;
mod listener;
pub mod metrics;
mod node;
mod protocol;
mod registry;
mod resolve;
mod send;
#[cfg(feature = "udp")]
mod stun;

pub use conn::{ConnInfo, Connection, Direction};
pub use listener::{ListenerHandle, ListenerInfo};
pub use node::{Config, Nkpacket, NkpacketBuilder, external_url, is_local_ip};
pub use protocol::{
    BridgeAction, BridgeDir, EncodeError, Handled, Init, Parse, Protocol, StopReason, Timeout,
    TransportRule,
};
pub use resolve::{Destination, Spec};
#[cfg(feature = "udp")]
pub use stun::StunServer;

pub use nkp_core::{
    CloseReason, Endpoint, Error, Frame, Framing, LinkMeta, Options, TransportKind, UserState,
    codec, options,
};
pub use nkp_uri as uri;

/// TLS helpers: self-signed certificates for tests and tools, session details.
#[cfg(feature = "tls")]
pub mod tls {
    pub use nkp_tls::{DEFAULT_HOSTS, self_signed, write_self_signed};
}

/// HTTP: the shared servers, requests and responses with a method, status and headers,
/// services.
#[cfg(feature = "http")]
pub mod http {
    pub use nkp_http::files::StaticFiles;
    pub use nkp_http::{Attachment, HttpRequest, HttpResponse, HttpServers};
}

/// DNS location (RFC 3263): configuration, resolver and cache.
pub mod dns {
    pub use nkp_dns::order::{NaptrRecord, SrvRecord};
    pub use nkp_dns::{DnsConfig, DnsResolver};
}

/// The README's example, compiled as a doctest so it cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
