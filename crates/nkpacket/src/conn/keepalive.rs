//! Keepalives and dead-peer detection: RFC 5626 CRLF on raw TCP/TLS streams, ping on
//! WebSocket. Pure timing logic; the engine sends what it is told to.

use std::time::Duration;

use bytes::Bytes;
use nkp_core::{Frame, Options, TransportKind};
use tokio::time::Instant;

/// Keepalives (RFC 5626 CRLF on raw streams, ping on WebSocket) and dead-peer detection.
pub(crate) struct Keepalive {
    /// Send one this often (`None`: off).
    interval: Option<Duration>,
    /// The peer is dead when nothing arrives this long after a keepalive.
    timeout: Duration,
    /// The keepalive frame of this transport (`None`: the transport has none).
    ping: Option<Frame>,
    /// Answer `\r\n\r\n` with `\r\n` (raw streams, `crlf_keepalive`).
    answer_crlf: bool,
    /// Raw stream: a lone `\r\n` is a keepalive answer, not data.
    raw_stream: bool,
    last_sent: Instant,
    waiting_until: Option<Instant>,
}

pub(crate) enum KeepaliveStep {
    Wait(Instant),
    Send(Frame, Instant),
    Dead,
}

impl Keepalive {
    pub(crate) fn new(options: &Options, transport: TransportKind) -> Self {
        let raw_stream =
            transport.is_stream() && matches!(options.framing(), nkp_core::Framing::Raw);
        let ping = match transport {
            TransportKind::Ws | TransportKind::Wss => Some(Frame::Ping(Bytes::new())),
            _ if raw_stream => Some(Frame::Binary(Bytes::from_static(b"\r\n\r\n"))),
            _ => None,
        };
        let interval = options.keepalive_interval.filter(|_| ping.is_some());
        Keepalive {
            interval,
            timeout: options.keepalive_timeout.unwrap_or(Duration::from_secs(10)),
            ping,
            answer_crlf: raw_stream && options.crlf_keepalive == Some(true),
            raw_stream,
            last_sent: Instant::now(),
            waiting_until: None,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.interval.is_some()
    }

    /// When the keepalive timer should next fire.
    pub(crate) fn next_event(&self) -> Instant {
        match (self.waiting_until, self.interval) {
            (Some(w), _) => w,
            (None, Some(i)) => self.last_sent + i,
            (None, None) => Instant::now() + Duration::from_secs(3600),
        }
    }

    /// Something arrived: the peer is alive.
    pub(crate) fn heard(&mut self) {
        self.waiting_until = None;
    }

    /// Whether a received unit is keepalive traffic (not for the protocol), and what to
    /// answer.
    pub(crate) fn consumes(&self, frame: &Frame) -> Option<Option<Frame>> {
        if !self.raw_stream {
            return None;
        }
        match frame {
            Frame::Binary(b) if self.answer_crlf && &b[..] == b"\r\n\r\n" => {
                Some(Some(Frame::Binary(Bytes::from_static(b"\r\n"))))
            }
            Frame::Binary(b) if self.interval.is_some() && &b[..] == b"\r\n" => Some(None),
            _ => None,
        }
    }

    pub(crate) fn due(&mut self, now: Instant) -> KeepaliveStep {
        let Some(interval) = self.interval else {
            return KeepaliveStep::Wait(now + Duration::from_secs(3600));
        };
        if let Some(w) = self.waiting_until {
            if now >= w {
                return KeepaliveStep::Dead;
            }
            return KeepaliveStep::Wait(w);
        }
        let at = self.last_sent + interval;
        if now < at {
            return KeepaliveStep::Wait(at);
        }
        match &self.ping {
            Some(p) => {
                self.last_sent = now;
                let wait = now + self.timeout;
                self.waiting_until = Some(wait);
                KeepaliveStep::Send(p.clone(), wait)
            }
            None => KeepaliveStep::Wait(now + Duration::from_secs(3600)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Options {
        let mut o = Options::default();
        for kv in s.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            o.set(k, v).unwrap();
        }
        o
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_send_wait_dead() {
        let mut k = Keepalive::new(
            &opts("keepalive_interval=100;keepalive_timeout=50"),
            TransportKind::Tcp,
        );
        assert!(k.enabled());
        let t0 = Instant::now();
        assert!(
            matches!(k.due(t0), KeepaliveStep::Wait(at) if at == t0 + Duration::from_millis(100))
        );
        let t1 = t0 + Duration::from_millis(100);
        match k.due(t1) {
            KeepaliveStep::Send(f, at) => {
                assert_eq!(f.payload(), b"\r\n\r\n");
                assert_eq!(at, t1 + Duration::from_millis(50));
            }
            _ => panic!("a keepalive is due"),
        }
        // an answer: the next keepalive one interval after the last
        k.heard();
        assert!(
            matches!(k.due(t1 + Duration::from_millis(50)), KeepaliveStep::Wait(at) if at == t1 + Duration::from_millis(100))
        );
        // no answer this time
        let t2 = t1 + Duration::from_millis(100);
        assert!(matches!(k.due(t2), KeepaliveStep::Send(..)));
        assert!(matches!(
            k.due(t2 + Duration::from_millis(50)),
            KeepaliveStep::Dead
        ));
    }

    #[test]
    fn what_is_keepalive_traffic() {
        let crlf2 = Frame::binary(&b"\r\n\r\n"[..]);
        let crlf = Frame::binary(&b"\r\n"[..]);
        let server = Keepalive::new(&opts("crlf_keepalive"), TransportKind::Tcp);
        assert!(!server.enabled());
        assert_eq!(server.consumes(&crlf2), Some(Some(crlf.clone())));
        assert_eq!(server.consumes(&crlf), None);
        let client = Keepalive::new(&opts("keepalive_interval=100"), TransportKind::Tls);
        assert_eq!(client.consumes(&crlf), Some(None));
        assert_eq!(client.consumes(&Frame::binary(&b"x\r\n"[..])), None);
        // framed streams and datagrams have no CRLF keepalives; WebSocket pings
        let framed = Keepalive::new(
            &opts("keepalive_interval=100;tcp_packet=4"),
            TransportKind::Tcp,
        );
        assert!(!framed.enabled());
        assert!(!Keepalive::new(&opts("keepalive_interval=100"), TransportKind::Udp).enabled());
        let mut ws = Keepalive::new(&opts("keepalive_interval=100"), TransportKind::Ws);
        let later = Instant::now() + Duration::from_secs(1);
        assert!(matches!(
            ws.due(later),
            KeepaliveStep::Send(Frame::Ping(_), _)
        ));
    }
}
