//! STUN for nkpacket: a Binding codec, a responder for shared UDP ports, and a client with the
//! RFC 5389 retransmission schedule.
//!
//! Pure logic first, I/O second:
//!
//! * [`codec`]: RFC 5389 messages: [`is_stun`], [`Message`] decode/encode, the Binding
//!   attributes (XOR-MAPPED-ADDRESS and MAPPED-ADDRESS over IPv4 and IPv6, SOFTWARE,
//!   USERNAME, ERROR-CODE, UNKNOWN-ATTRIBUTES, ...), FINGERPRINT (verified when present) and
//!   MESSAGE-INTEGRITY with short-term credentials. Checked against the RFC 5769 test vectors.
//! * server: [`respond`] answers one datagram (for a UDP listener with `udp_stun_reply`);
//!   [`serve`] runs a standalone server on a socket.
//! * client: [`Retransmit`] is the schedule as a value; [`binding_request`] and
//!   [`parse_binding_response`] build and read messages; [`Transactions`] matches responses
//!   arriving on a shared socket to waiting clients; [`query`], [`query_with`] and
//!   [`discover_external`] run queries.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), nkp_core::Error> {
//! use std::time::Duration;
//! use tokio::net::UdpSocket;
//!
//! // A STUN server on loopback...
//! let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
//! let server_addr = server.local_addr().unwrap();
//! tokio::spawn(nkp_stun::serve(server));
//!
//! // ... tells a client its address.
//! let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
//! let mapped = nkp_stun::query(&client, server_addr, nkp_stun::DEFAULT_T1).await?;
//! assert_eq!(mapped, client.local_addr().unwrap());
//! # Ok(())
//! # }
//! ```

mod client;
pub mod codec;
mod server;

pub use client::{
    DEFAULT_T1, PendingResponse, Retransmit, Step, Transactions, binding_request,
    discover_external, parse_binding_response, query, query_with,
};
pub use codec::{Attribute, Class, DecodeError, Message, Method, TransactionId, is_stun};
pub use server::{SOFTWARE, respond, serve};
