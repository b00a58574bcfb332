//! STUN on UDP listeners (§8): Binding requests answered on shared ports (`udp_stun_reply`,
//! `;stun` in a URI), Binding queries sent from a listener's own socket, and the standalone
//! STUN server protocol (scheme `stun`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use nkp_core::{Error, Options, TransportKind};
use nkp_stun::Transactions;
use nkp_udp::{DatagramInterceptor, Intercept, InterceptorFactory};

use crate::listener::{ListenerHandle, ListenerInfo};
use crate::protocol::{Handled, Protocol, TransportRule};

/// Looks at every datagram a UDP listener receives before the protocol does: responses to
/// our own Binding queries are taken, Binding requests are answered when the listener has
/// `udp_stun_reply`, everything else is protocol data.
struct StunInterceptor {
    transactions: Transactions,
    reply: bool,
}

impl DatagramInterceptor for StunInterceptor {
    fn intercept(&self, data: &[u8], from: SocketAddr, _local: SocketAddr) -> Intercept {
        if self.transactions.on_datagram(data, from) {
            return Intercept::Consumed;
        }
        if self.reply
            && let Some(response) = nkp_stun::respond(data, from)
        {
            return Intercept::Reply(response);
        }
        Intercept::Pass
    }
}

/// The interceptor factory installed on the node's UDP transport.
pub(crate) fn interceptor_factory(transactions: Transactions) -> InterceptorFactory {
    Arc::new(move |opts: &Options| {
        Some(Arc::new(StunInterceptor {
            transactions: transactions.clone(),
            reply: opts.udp_stun_reply == Some(true),
        }) as Arc<dyn DatagramInterceptor>)
    })
}

/// Sends a Binding query from a UDP listener's socket and returns the mapped address the
/// server saw (with the listener's `udp_stun_t1` retransmission base, default 500 ms).
pub(crate) async fn query_from(
    transactions: &Transactions,
    listener: &ListenerHandle,
    server: SocketAddr,
) -> Result<SocketAddr, Error> {
    if listener.info().transport() != TransportKind::Udp {
        return Err(Error::Unsupported(format!(
            "STUN queries go out from UDP listeners; this one is {}",
            listener.info().transport()
        )));
    }
    let t1 = listener
        .info()
        .options()
        .udp_stun_t1
        .unwrap_or(nkp_stun::DEFAULT_T1);
    nkp_stun::query_with(
        |b: Bytes| listener.send_datagram(server, b),
        transactions,
        t1,
    )
    .await
}

/// The standalone STUN server: scheme `stun`, UDP only, port 3478, every Binding request
/// answered, nothing else kept.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use nkpacket::{Nkpacket, Options};
/// let nk = Nkpacket::builder().build();
/// let l = nk.start_listener("stun://127.0.0.1:0", Options::default()).await.unwrap();
/// assert_eq!(l.info().transport(), nkpacket::TransportKind::Udp);
/// nk.shutdown().await;
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StunServer;

impl Protocol for StunServer {
    type Message = Bytes;
    type State = ();

    fn transports(&self, _scheme: &str) -> Option<Vec<TransportRule>> {
        Some(vec![TransportRule::Plain(TransportKind::Udp)])
    }

    fn default_port(&self, _t: TransportKind) -> Option<u16> {
        Some(3478)
    }

    fn resolve_options(&self) -> Options {
        let mut o = Options::default();
        o.udp_stun_reply = Some(true);
        o.udp_no_connections = Some(true);
        o
    }

    fn listen_parse(&self, remote: SocketAddr, data: Bytes, _l: &ListenerInfo) -> Handled {
        tracing::trace!(%remote, len = data.len(), "non-STUN datagram on a STUN server dropped");
        Handled::Continue
    }
}
