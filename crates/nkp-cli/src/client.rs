//! `nkp send`: a client protocol that hands every received unit to the command.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nkpacket::echo::EchoClient;
use nkpacket::{Frame, Framing, Nkpacket, Options};
use tokio::time::Instant;

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
    let (client, mut rx) = EchoClient::new();
    let scheme = scheme_of(uri)?;
    let nk = Nkpacket::builder()
        .protocol(&scheme, client)
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

    // SCTP goes out from a listener's socket (as the original): give the client one.
    if let Some(d) = nk
        .resolve(uri, &opts, false)
        .await
        .map_err(|e| e.to_string())?
        .first()
        && d.transport == nkpacket::TransportKind::Sctp
    {
        // A URI listener keeps port 0 (an ephemeral port, never the protocol's default).
        let any = if d.addr.is_ipv6() { "[::]" } else { "0.0.0.0" };
        nk.start_listener(
            format!("{scheme}://{any}:0;transport=sctp"),
            Options::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    }
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
