//! The built-in `echo` protocol: every message goes back on the connection it came from.
//!
//! Datagrams as they are, stream chunks (or frames with `tcp_packet`) as they arrive,
//! WebSocket messages with their type kept. Resolution: all eight transports, `tcp` when none
//! is given; default ports udp/tcp/tls/sctp 7, ws/http 80, wss/https 443; NAPTR services
//! `ECHO+D2U` → udp, `ECHO+D2T` → tcp, `ECHOS+D2T` → tls, `ECHO+D2S` → sctp, `ECHO+D2W` → ws,
//! `ECHOS+D2W` → wss (case-insensitive).
//!
//! ```
//! use nkpacket::{Protocol, TransportKind, echo::Echo};
//! assert_eq!(Echo.default_port(TransportKind::Wss), Some(443));
//! assert_eq!(Echo.naptr("echo", "echos+d2t"), Some(TransportKind::Tls));
//! ```

use nkp_core::{Frame, TransportKind};
use tokio::sync::mpsc;

use crate::conn::ConnInfo;
use crate::protocol::{EncodeError, Parse, Protocol, TransportRule};

/// The echo protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

/// Transports of the echo protocol, the default first.
pub const ECHO_TRANSPORTS: [TransportKind; 8] = [
    TransportKind::Tcp,
    TransportKind::Udp,
    TransportKind::Tls,
    TransportKind::Sctp,
    TransportKind::Ws,
    TransportKind::Wss,
    TransportKind::Http,
    TransportKind::Https,
];

/// Default port of the echo protocol for a transport.
pub fn echo_default_port(t: TransportKind) -> u16 {
    match t {
        TransportKind::Udp | TransportKind::Tcp | TransportKind::Tls | TransportKind::Sctp => 7,
        TransportKind::Ws | TransportKind::Http => 80,
        TransportKind::Wss | TransportKind::Https => 443,
    }
}

/// NAPTR service → transport mapping of the echo protocol.
pub fn echo_naptr(service: &str) -> Option<TransportKind> {
    let s = service.to_ascii_uppercase();
    Some(match s.as_str() {
        "ECHO+D2U" => TransportKind::Udp,
        "ECHO+D2T" => TransportKind::Tcp,
        "ECHOS+D2T" => TransportKind::Tls,
        "ECHO+D2S" => TransportKind::Sctp,
        "ECHO+D2W" => TransportKind::Ws,
        "ECHOS+D2W" => TransportKind::Wss,
        _ => return None,
    })
}

/// The resolution callbacks shared by [`Echo`] and [`EchoClient`].
macro_rules! echo_resolution {
    () => {
        fn transports(&self, _scheme: &str) -> Option<Vec<TransportRule>> {
            Some(
                ECHO_TRANSPORTS
                    .iter()
                    .map(|t| TransportRule::Plain(*t))
                    .collect(),
            )
        }

        fn default_port(&self, transport: TransportKind) -> Option<u16> {
            Some(echo_default_port(transport))
        }

        fn naptr(&self, _scheme: &str, service: &str) -> Option<TransportKind> {
            echo_naptr(service)
        }

        fn uses_naptr(&self) -> bool {
            true
        }

        fn encode(
            &self,
            msg: Frame,
            _conn: &ConnInfo,
            _state: &mut (),
        ) -> Result<Frame, EncodeError> {
            Ok(msg)
        }
    };
}

impl Protocol for Echo {
    type Message = Frame;
    type State = ();

    echo_resolution!();

    fn parse(&self, frame: Frame, _conn: &ConnInfo, _state: &mut ()) -> Parse<Frame> {
        if frame.is_data() {
            Parse::Reply(frame)
        } else {
            Parse::Continue
        }
    }
}

/// The client side of echo: resolves like [`Echo`], and hands every data unit it receives
/// to a channel instead of echoing it (used by `nkp send`).
///
/// ```
/// use nkpacket::{Nkpacket, echo::EchoClient};
/// let (client, mut replies) = EchoClient::new();
/// let nk = Nkpacket::builder().protocol("echo", client).build();
/// # drop((nk, replies.try_recv()));
/// ```
#[derive(Debug, Clone)]
pub struct EchoClient {
    tx: mpsc::UnboundedSender<Frame>,
}

impl EchoClient {
    /// The protocol, and the receiver of what arrives on its connections.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Frame>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EchoClient { tx }, rx)
    }
}

impl Protocol for EchoClient {
    type Message = Frame;
    type State = ();

    echo_resolution!();

    fn parse(&self, frame: Frame, _conn: &ConnInfo, _state: &mut ()) -> Parse<Frame> {
        if frame.is_data() {
            let _ = self.tx.send(frame);
        }
        Parse::Continue
    }
}
