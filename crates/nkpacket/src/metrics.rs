//! Counters through the `metrics` facade: install any recorder (Prometheus exporter, ...) in
//! the application to collect them; without one they cost nothing.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `nkpacket_connections_active` | gauge | `transport`, `listener` |
//! | `nkpacket_connections_total` | counter | `transport`, `listener`, `direction` |
//! | `nkpacket_connections_refused_total` | counter | `transport`, `listener`, `reason` |
//! | `nkpacket_messages_received_total`, `nkpacket_messages_sent_total` | counter | `transport`, `listener` |
//! | `nkpacket_bytes_received_total`, `nkpacket_bytes_sent_total` | counter | `transport`, `listener` |
//! | `nkpacket_connection_errors_total` | counter | `transport`, `listener`, `reason` |
//!
//! `listener` is the listener id for inbound connections and for outbound ones built on a
//! listener, empty otherwise.

use metrics::{Counter, Gauge, counter, gauge};

use crate::conn::{ConnInfo, Direction};
use crate::protocol::StopReason;

/// The per-connection handles, created once so that counting a message is one atomic add.
pub(crate) struct ConnMetrics {
    active: Gauge,
    rx_msgs: Counter,
    rx_bytes: Counter,
    tx_msgs: Counter,
    tx_bytes: Counter,
    transport: &'static str,
    listener: String,
}

impl ConnMetrics {
    pub(crate) fn start(info: &ConnInfo) -> Self {
        let transport = info.transport().as_str();
        let listener = info.listener_id().unwrap_or_default().to_string();
        let labels = [
            ("transport", transport.to_string()),
            ("listener", listener.clone()),
        ];
        let direction = match info.direction() {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        };
        counter!(
            "nkpacket_connections_total",
            "transport" => transport,
            "listener" => listener.clone(),
            "direction" => direction
        )
        .increment(1);
        let active = gauge!("nkpacket_connections_active", &labels);
        active.increment(1.0);
        ConnMetrics {
            active,
            rx_msgs: counter!("nkpacket_messages_received_total", &labels),
            rx_bytes: counter!("nkpacket_bytes_received_total", &labels),
            tx_msgs: counter!("nkpacket_messages_sent_total", &labels),
            tx_bytes: counter!("nkpacket_bytes_sent_total", &labels),
            transport,
            listener,
        }
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.rx_msgs.increment(1);
        self.rx_bytes.increment(bytes as u64);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.tx_msgs.increment(1);
        self.tx_bytes.increment(bytes as u64);
    }

    pub(crate) fn stopped(&self, reason: &StopReason) {
        let kind = match reason {
            StopReason::Error(_) => "error",
            StopReason::Panic(_) => "panic",
            StopReason::Blocked(..) => "blocked",
            StopReason::ReplyError(_) => "reply_error",
            _ => return,
        };
        counter!(
            "nkpacket_connection_errors_total",
            "transport" => self.transport,
            "listener" => self.listener.clone(),
            "reason" => kind
        )
        .increment(1);
    }
}

impl Drop for ConnMetrics {
    fn drop(&mut self) {
        self.active.decrement(1.0);
    }
}

/// An incoming connection refused by a cap.
pub(crate) fn refused(transport: &'static str, listener: &str, reason: &'static str) {
    counter!(
        "nkpacket_connections_refused_total",
        "transport" => transport,
        "listener" => listener.to_string(),
        "reason" => reason
    )
    .increment(1);
}
