//! `nkp send`: a client protocol that hands every received unit to the command.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nkpacket::echo::{ECHO_TRANSPORTS, echo_default_port, echo_naptr};
use nkpacket::{
    ConnInfo, EncodeError, Frame, Framing, Nkpacket, Options, Parse, Protocol, TransportKind,
    TransportRule,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Resolves like `echo`, and collects what arrives instead of echoing it.
struct Collector {
    tx: mpsc::UnboundedSender<Frame>,
}

impl Protocol for Collector {
    type Message = Frame;
    type State = ();

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

    fn parse(&self, frame: Frame, _conn: &ConnInfo, _state: &mut ()) -> Parse<Frame> {
        if frame.is_data() {
            let _ = self.tx.send(frame);
        }
        Parse::Continue
    }

    fn encode(&self, msg: Frame, _conn: &ConnInfo, _state: &mut ()) -> Result<Frame, EncodeError> {
        Ok(msg)
    }
}

fn scheme_of(uri: &str) -> Result<String, String> {
    let uris = nkpacket::uri::parse_list(uri).map_err(|e| e.to_string())?;
    uris.first()
        .map(|u| u.scheme.clone())
        .ok_or_else(|| format!("invalid URI {uri:?}: it is empty"))
}

/// Sends `message` `count` times on one connection and prints each reply.
pub(crate) async fn send(
    uri: &str,
    message: &str,
    binary: bool,
    count: usize,
    timeout: Duration,
    dns: nkpacket::dns::DnsConfig,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let scheme = scheme_of(uri)?;
    let nk = Nkpacket::builder()
        .protocol(&scheme, Collector { tx })
        .dns(dns)
        .try_build()
        .map_err(|e| e.to_string())?;
    let frame = if binary {
        Frame::Binary(Bytes::copy_from_slice(message.as_bytes()))
    } else {
        Frame::Text(message.to_string())
    };
    let deadline = Instant::now() + timeout;
    let mut opts = Options::default();
    opts.connect_timeout = Some(timeout);
    // A UDP client has no listener to send from: use a socket of its own.
    opts.udp_ephemeral = Some(true);
    let timed_out = |got: usize| format!("timeout after {got} of {count} replies");

    let mut conn = None;
    let mut pending = BytesMut::new();
    for got in 0..count {
        let sent = match &conn {
            None => tokio::time::timeout_at(deadline, nk.send(uri, frame.clone(), opts.clone()))
                .await
                .map_err(|_| timed_out(got))?
                .map(|c| {
                    conn = Some(c);
                }),
            Some(c) => tokio::time::timeout_at(deadline, c.send(frame.clone()))
                .await
                .map_err(|_| timed_out(got))?,
        };
        sent.map_err(|e| e.to_string())?;
        let Some(c) = &conn else {
            return Err("no connection".into());
        };
        let raw_stream = c.info().transport().is_stream()
            && matches!(c.info().options().framing(), Framing::Raw);
        let reply = if raw_stream {
            // A byte stream: the echo is complete when as many bytes came back.
            while pending.len() < message.len() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(f)) => pending.extend_from_slice(f.payload()),
                    Ok(None) => return Err(timed_out(got)),
                    Err(_) => return Err(timed_out(got)),
                }
            }
            pending.split_to(message.len()).freeze()
        } else {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(f)) => Bytes::copy_from_slice(f.payload()),
                _ => return Err(timed_out(got)),
            }
        };
        crate::say(&String::from_utf8_lossy(&reply));
    }
    nk.shutdown_with(Duration::from_millis(500)).await;
    Ok(())
}
