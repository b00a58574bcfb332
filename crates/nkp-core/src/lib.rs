//! The shared vocabulary of nkpacket.
//!
//! Every transport crate (`nkp-tcp`, `nkp-udp`, `nkp-tls`, ...) and the `nkpacket` facade speak
//! in these types:
//!
//! * [`TransportKind`]: the eight transports (`udp`, `tcp`, `tls`, `sctp`, `ws`, `wss`, `http`,
//!   `https`) and their properties;
//! * [`Endpoint`]: a transport plus a socket address;
//! * [`Frame`]: one message unit travelling on a link (binary, text, ping, pong, close);
//! * [`Options`]: the typed listen / connect / send options with the defaults of the
//!   original NkPACKET, settable by name (as URI parameters are) with validation errors that
//!   name the offending key;
//! * [`Error`]: one error enum for everything a transport operation can report;
//! * [`Link`] and [`Transport`]: the small trait pair every transport implements: listen and
//!   connect, producing framed, bidirectional links with local and remote addresses.
//!
//! ```
//! use nkp_core::{Options, TransportKind};
//!
//! let t: TransportKind = "TLS".parse().unwrap();
//! assert!(t.is_secure() && t.is_stream());
//!
//! let mut opts = Options::default();
//! opts.set("idle_timeout", "5000").unwrap();
//! assert_eq!(opts.idle_timeout, Some(std::time::Duration::from_secs(5)));
//! assert!(opts.set("idle_timeout", "soon").is_err());
//! ```

pub mod codec;
mod endpoint;
mod error;
mod frame;
mod link;
pub mod options;
pub mod proxy;
mod stream_link;
mod transport;
mod transport_kind;

pub use codec::{FrameCodec, Framing, StreamCodec};
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use frame::{CloseReason, Frame};
pub use link::{BoxLink, Link, LinkInfo, LinkMeta};
pub use options::{Options, UserState};
pub use stream_link::StreamLink;
pub use transport::{Accepted, BoxListener, ConnectRequest, ListenRequest, Listener, Transport};
pub use transport_kind::{ParseTransportError, TransportKind};
