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
//!
//! Frames are handled by tungstenite (through tokio-tungstenite, poll-based, so the link's
//! stream is cancel-safe as nkpacket requires); the handshakes are ours: sub-protocol
//! selection on the server, `Sec-WebSocket-Accept` and sub-protocol checks on the client.
//!
//! See [`WsTransport`] for an example.

mod client;
mod link;
mod server;
mod transport;

pub use client::MAX_RESPONSE_HEAD;
pub use link::{BoxIo, WsIo, WsLink};
pub use server::accept_key;
pub use transport::WsTransport;
