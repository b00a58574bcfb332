//! A small length-prefixed protocol, shared by the `shout_server` and `shout_client`
//! examples.
//!
//! Every message is UTF-8 text in a 2-byte length-prefixed frame (`tcp_packet=2`). The server
//! side answers each message with the same text in upper case; the client side hands what it
//! receives to the application through a channel kept in the connection's user state.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nkpacket::Error> {
//! use nkpacket::{Nkpacket, Options};
//! use nkpacket_examples::{Shout, replies};
//!
//! let nk = Nkpacket::builder().protocol("shout", Shout).build();
//! nk.start_listener("shout://127.0.0.1:7100;transport=tcp", Options::default()).await?;
//! let (state, mut rx) = replies();
//! nk.send("shout://127.0.0.1:7100;transport=tcp", "hello".to_string(),
//!         Options::default().with_user_state(state)).await?;
//! assert_eq!(rx.recv().await.as_deref(), Some("HELLO"));
//! # Ok(()) }
//! ```

use bytes::Bytes;
use nkpacket::{
    ConnInfo, Direction, EncodeError, Frame, Framing, Parse, Protocol, TransportKind,
    TransportRule, UserState,
};
use tokio::sync::mpsc;

/// The protocol: scheme `shout`, TCP or TLS, default port 7100, 2-byte frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shout;

/// Where a client connection delivers the replies it receives.
#[derive(Clone)]
pub struct Replies(pub mpsc::UnboundedSender<String>);

/// A user state for client connections, and the receiver of their replies.
pub fn replies() -> (UserState, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (UserState::new(Replies(tx)), rx)
}

impl Protocol for Shout {
    type Message = String;
    type State = ();

    fn transports(&self, _scheme: &str) -> Option<Vec<TransportRule>> {
        Some(vec![
            TransportRule::Plain(TransportKind::Tcp),
            TransportRule::Plain(TransportKind::Tls),
        ])
    }

    fn default_port(&self, _t: TransportKind) -> Option<u16> {
        Some(7100)
    }

    // Frames on the stream: a 2-byte big-endian length before each message.
    fn framing(&self) -> Option<Framing> {
        Some(Framing::Prefix2)
    }

    fn parse(&self, frame: Frame, conn: &ConnInfo, _state: &mut ()) -> Parse<String> {
        let text = String::from_utf8_lossy(frame.payload()).into_owned();
        match conn.direction() {
            // The server shouts back.
            Direction::Inbound => Parse::Reply(text.to_uppercase()),
            // The client hands the reply to the application.
            Direction::Outbound => {
                if let Some(Replies(tx)) = conn.user_state().and_then(|s| s.downcast_ref()) {
                    let _ = tx.send(text);
                }
                Parse::Continue
            }
        }
    }

    fn encode(&self, msg: String, _conn: &ConnInfo, _state: &mut ()) -> Result<Frame, EncodeError> {
        if msg.len() > u16::MAX as usize {
            return Err(EncodeError::new("message longer than 65535 bytes"));
        }
        Ok(Frame::Binary(Bytes::from(msg)))
    }
}
