//! WebSocket transport for nkpacket: the server side runs on the shared HTTP servers of
//! `nkp-http` (upgrades routed by host, path and sub-protocol), the client side does its own
//! handshake over TCP or TLS.
//!
//! * [`WsTransport`] implements [`nkp_core::Transport`] for `ws` and `wss`; build it with the
//!   same [`nkp_http::HttpServers`] as the http transport so that all four share ports.
//! * [`WsLink`] is a WebSocket session as a link: text stays text, binary stays binary,
//!   fragmented messages are reassembled, a ping is answered by exactly one pong, pongs
//!   and the peer's close are passed up as frames, the close handshake is completed, and a
//!   message over `max_message_size` (16 MiB by default) is refused with close 1009.
//! * permessage-deflate (RFC 7692) with the option `ws_deflate=true`: a listener accepts a
//!   client's offer, a client offers it ([`deflate`]). Off by default.
//!
//! Everything is ours, in the style of quinn and ntex-codec: the RFC 6455 framing
//! ([`frame`]) and the message codec ([`codec`]: checks, reassembly, compression) are pure
//! and driven from memory by the tests and the fuzz targets; [`WsLink`] is the poll-based
//! I/O shell around them (its stream is cancel-safe, as nkpacket requires). The handshakes
//! are ours too: sub-protocol and extension negotiation on the server,
//! `Sec-WebSocket-Accept`, sub-protocol and extension checks on the client.
//!
//! See [`WsTransport`] for an example.

mod client;
pub mod codec;
pub mod deflate;
pub mod frame;
mod link;
mod server;
mod transport;

pub use client::MAX_RESPONSE_HEAD;
pub use link::{BoxIo, WsIo, WsLink};
pub use server::accept_key;
pub use transport::WsTransport;
