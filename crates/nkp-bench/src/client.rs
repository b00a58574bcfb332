//! The load client: closed-loop echo over any byte stream or UDP socket, timing each round
//! trip, bounded in time and in count.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// When a connection's loop measures and stops.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Round trips started before this are warm-up (not counted).
    pub warm_until: Instant,
    /// No round trip starts after this.
    pub end: Instant,
    /// At most this many round trips per connection.
    pub max_msgs: u64,
}

impl Plan {
    /// Length of the measured window.
    pub fn window(&self) -> Duration {
        self.end.saturating_duration_since(self.warm_until)
    }
}

/// What one connection measured.
#[derive(Debug, Default)]
pub struct Samples {
    /// Round trips completed in the measured window.
    pub msgs: u64,
    /// Their durations, in nanoseconds.
    pub lat_ns: Vec<u32>,
    /// UDP datagrams that got no answer in time.
    pub lost: u64,
}

impl Samples {
    /// Counts a round trip started at `started` that took `rtt`, unless it began in the
    /// warm-up.
    pub fn record(&mut self, started: Instant, rtt: Duration, plan: &Plan) {
        if started >= plan.warm_until {
            self.msgs += 1;
            self.lat_ns
                .push(u32::try_from(rtt.as_nanos()).unwrap_or(u32::MAX));
        }
    }

    /// Adds another connection's samples.
    pub fn merge(&mut self, other: Samples) {
        self.msgs += other.msgs;
        self.lost += other.lost;
        self.lat_ns.extend(other.lat_ns);
    }
}

/// Throughput and latency of one run of one implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoResult {
    /// Messages per second.
    pub rate: f64,
    /// Median round trip, microseconds.
    pub p50_us: f64,
    /// 99th percentile round trip, microseconds.
    pub p99_us: f64,
    /// Lost datagrams (UDP).
    pub lost: u64,
    /// Server CPU time per message, microseconds (NaN when not measured).
    pub cpu_us: f64,
}

impl EchoResult {
    /// Summarizes merged samples over `window`.
    pub fn from_samples(mut s: Samples, window: Duration) -> EchoResult {
        s.lat_ns.sort_unstable();
        let pct = |p: f64| -> f64 {
            if s.lat_ns.is_empty() {
                return f64::NAN;
            }
            let i = ((s.lat_ns.len() as f64 - 1.0) * p).round() as usize;
            f64::from(s.lat_ns[i.min(s.lat_ns.len() - 1)]) / 1000.0
        };
        EchoResult {
            rate: s.msgs as f64 / window.as_secs_f64().max(1e-9),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            lost: s.lost,
            cpu_us: f64::NAN,
        }
    }
}

/// Closed-loop echo over a byte stream: write `wire`, read as many bytes back, repeat.
pub async fn stream_loop<S>(io: &mut S, wire: &[u8], plan: Plan) -> io::Result<Samples>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; wire.len()];
    let mut s = Samples::default();
    let mut n = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= plan.end || n >= plan.max_msgs {
            break;
        }
        stream_ping(io, wire, &mut buf).await?;
        s.record(t0, t0.elapsed(), &plan);
        n += 1;
    }
    Ok(s)
}

/// One round trip on a byte stream (`buf` as long as `wire`).
pub async fn stream_ping<S>(io: &mut S, wire: &[u8], buf: &mut [u8]) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(wire).await?;
    io.flush().await?;
    io.read_exact(buf).await?;
    Ok(())
}

/// How long a UDP client waits for an answer before counting the datagram lost.
pub const UDP_WAIT: Duration = Duration::from_millis(200);

/// Closed-loop echo over a connected UDP socket. `check` validates an answer (STUN: the
/// transaction); a datagram unanswered within [`UDP_WAIT`] is counted lost and the loop goes
/// on.
pub async fn udp_loop(
    sock: &UdpSocket,
    wire: &[u8],
    plan: Plan,
    check: impl Fn(&[u8]) -> bool,
) -> io::Result<Samples> {
    let mut buf = vec![0u8; 65_536];
    let mut s = Samples::default();
    let mut n = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= plan.end || n >= plan.max_msgs {
            break;
        }
        n += 1;
        if udp_ping(sock, wire, &mut buf, &check).await? {
            s.record(t0, t0.elapsed(), &plan);
        } else if t0 >= plan.warm_until {
            s.lost += 1;
        }
    }
    Ok(s)
}

/// One datagram out and its answer back; `false` when none came within [`UDP_WAIT`].
pub async fn udp_ping(
    sock: &UdpSocket,
    wire: &[u8],
    buf: &mut [u8],
    check: &impl Fn(&[u8]) -> bool,
) -> io::Result<bool> {
    sock.send(wire).await?;
    let deadline = Instant::now() + UDP_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, sock.recv(buf)).await {
            Ok(Ok(n)) if check(&buf[..n]) => return Ok(true),
            // A late answer to an earlier datagram: keep waiting for this one.
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rate() {
        let s = Samples {
            msgs: 100,
            lat_ns: (1..=100).map(|i| i * 1000).collect(),
            lost: 0,
        };
        let r = EchoResult::from_samples(s, Duration::from_secs(2));
        assert_eq!(r.rate, 50.0);
        assert_eq!(r.p50_us, 51.0);
        assert_eq!(r.p99_us, 99.0);
    }
}
