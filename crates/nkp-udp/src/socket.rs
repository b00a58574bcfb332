//! One UDP socket, with quinn-udp's batched I/O when available and plain tokio otherwise.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use nkp_core::Error;

use crate::sockopt;

/// Largest UDP payload (IPv4: 65535 − 20 − 8).
pub(crate) const MAX_DATAGRAM: usize = 65_535;
/// Largest payload the kernel accepts in one IPv4 UDP datagram.
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_507;
/// Largest datagram sent as part of a GSO batch: larger ones go alone, so a path MTU
/// below 1500 never makes the kernel refuse a batch (`EINVAL`) and turn GSO off for nothing.
const GSO_MAX_SEGMENT: usize = 1400;
/// Largest total payload of one GSO send.
const GSO_MAX_TOTAL: usize = 60_000;
/// Most segments in one GSO send (the kernel's historic `UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;
/// Datagrams read per wake-up on the plain path.
const PLAIN_DRAIN: usize = 64;

/// Socket settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SockConfig {
    pub(crate) recv_buffer: usize,
    pub(crate) send_buffer: usize,
    pub(crate) batched: bool,
    /// `SO_REUSEPORT`: several listener sockets on one address (`reuseport` option).
    pub(crate) reuse_port: bool,
}

/// A bound UDP socket.
pub(crate) struct Sock {
    io: UdpSocket,
    state: Option<quinn_udp::UdpSocketState>,
    gso: AtomicBool,
    local: SocketAddr,
}

impl std::fmt::Debug for Sock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sock")
            .field("local", &self.local)
            .field("batched", &self.state.is_some())
            .finish()
    }
}

/// Sets a socket buffer, forcing it past the system maximum when allowed.
fn size_buffer(sock: &Socket, recv: bool, size: usize) {
    if size == 0 {
        return;
    }
    let res = if recv {
        sock.set_recv_buffer_size(size)
    } else {
        sock.set_send_buffer_size(size)
    };
    if let Err(e) = res {
        tracing::debug!(recv, size, error = %e, "cannot size UDP socket buffer");
    }
    let got = if recv {
        sock.recv_buffer_size()
    } else {
        sock.send_buffer_size()
    }
    .ok();
    // Linux reports twice the value set (bookkeeping overhead); less than asked means the
    // system maximum capped it.
    if got.is_none_or(|g| g < size) {
        match sockopt::force_buffer(sock, recv, size) {
            Ok(()) => {}
            Err(e) => tracing::debug!(
                recv,
                size,
                got = got.unwrap_or(0),
                error = %e,
                "UDP socket buffer capped by the system maximum"
            ),
        }
    }
}

impl Sock {
    /// Creates and binds a socket: IPv6-only for IPv6, no address reuse, non-blocking,
    /// buffers sized, fragmentation allowed, quinn-udp state when `cfg.batched`.
    pub(crate) fn bind(
        addr: SocketAddr,
        connect: Option<SocketAddr>,
        cfg: SockConfig,
    ) -> Result<Sock, Error> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| Error::io("socket", Some(addr), e))?;
        if addr.is_ipv6() {
            sock.set_only_v6(true)
                .map_err(|e| Error::io("set IPV6_V6ONLY", Some(addr), e))?;
        }
        sock.set_reuse_address(false)
            .map_err(|e| Error::io("set SO_REUSEADDR", Some(addr), e))?;
        if cfg.reuse_port {
            sock.set_reuse_port(true)
                .map_err(|e| Error::io("set SO_REUSEPORT", Some(addr), e))?;
        }
        sock.set_nonblocking(true)
            .map_err(|e| Error::io("set O_NONBLOCK", Some(addr), e))?;
        size_buffer(&sock, true, cfg.recv_buffer);
        size_buffer(&sock, false, cfg.send_buffer);
        sock.bind(&addr.into())
            .map_err(|e| Error::io("bind", Some(addr), e))?;
        if let Some(remote) = connect {
            sock.connect(&remote.into())
                .map_err(|e| Error::io("connect", Some(remote), e))?;
        }
        let io = UdpSocket::from_std(sock.into())
            .map_err(|e| Error::io("register socket", Some(addr), e))?;
        let local = io
            .local_addr()
            .map_err(|e| Error::io("local address", Some(addr), e))?;

        let state = if cfg.batched {
            Self::batched_state(&io, local)
        } else {
            None
        };
        // After quinn-udp (which forces IP_PMTUDISC_PROBE): let large datagrams fragment.
        sockopt::allow_fragmentation(&io, local.is_ipv6())
            .map_err(|e| Error::io("set IP_MTU_DISCOVER", Some(local), e))?;
        let gso = state.as_ref().is_some_and(|s| s.max_gso_segments() > 1);
        Ok(Sock {
            io,
            state,
            gso: AtomicBool::new(gso),
            local,
        })
    }

    /// quinn-udp's state for `io`, with GRO turned off; `None` (plain tokio I/O) when it
    /// cannot be had.
    fn batched_state(io: &UdpSocket, local: SocketAddr) -> Option<quinn_udp::UdpSocketState> {
        let state = match quinn_udp::UdpSocketState::new(io.into()) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%local, error = %e, "quinn-udp unavailable, using plain UDP I/O");
                return None;
            }
        };
        if state.gro_segments() > 1
            && let Err(e) = sockopt::disable_gro(io)
        {
            // With GRO on, one buffer may hold 64 coalesced datagrams; ours hold one.
            tracing::debug!(%local, error = %e, "cannot turn UDP GRO off, using plain UDP I/O");
            return None;
        }
        Some(state)
    }

    /// The bound address.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// True when quinn-udp's batched I/O is in use.
    pub(crate) fn is_batched(&self) -> bool {
        self.state.is_some()
    }

    /// True while GSO sends are in use.
    pub(crate) fn gso_enabled(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// The raw socket (tests read options back).
    #[cfg(test)]
    pub(crate) fn io(&self) -> &UdpSocket {
        &self.io
    }

    fn transmit<'a>(
        to: SocketAddr,
        contents: &'a [u8],
        segment_size: Option<usize>,
    ) -> quinn_udp::Transmit<'a> {
        quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    /// Sends one datagram without waiting (`WouldBlock` when the socket buffer is full).
    pub(crate) fn try_send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        match &self.state {
            Some(state) => self.io.try_io(Interest::WRITABLE, || {
                state.try_send((&self.io).into(), &Self::transmit(to, data, None))
            }),
            None => self.io.try_send_to(data, to).map(drop),
        }
    }

    /// Sends one datagram.
    pub(crate) async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        match &self.state {
            Some(state) => {
                self.io
                    .async_io(Interest::WRITABLE, || {
                        state.try_send((&self.io).into(), &Self::transmit(to, data, None))
                    })
                    .await
            }
            None => self.io.send_to(data, to).await.map(drop),
        }
    }

    /// Sends several datagrams to one destination, grouping runs of equal-sized ones into
    /// GSO sends when the kernel supports it. A GSO send refused with `EIO`/`EINVAL` turns
    /// GSO off for this socket and the datagrams are sent one by one. On error, returns the
    /// failing datagram's size with the error.
    pub(crate) async fn send_many(
        &self,
        items: &[Bytes],
        to: SocketAddr,
    ) -> Result<(), (usize, io::Error)> {
        let max_segments = self
            .state
            .as_ref()
            .map_or(1, |s| s.max_gso_segments())
            .min(GSO_MAX_SEGMENTS);
        self.send_many_with(items, to, max_segments).await
    }

    async fn send_many_with(
        &self,
        items: &[Bytes],
        to: SocketAddr,
        max_segments: usize,
    ) -> Result<(), (usize, io::Error)> {
        let mut i = 0;
        while i < items.len() {
            if let Some(end) = self.gso_run(items, i, max_segments) {
                let size = items[i].len();
                let total: usize = items[i..end].iter().map(Bytes::len).sum();
                let mut buf = Vec::with_capacity(total);
                for d in &items[i..end] {
                    buf.extend_from_slice(d);
                }
                match self.send_gso(&buf, size, to).await {
                    Ok(()) => {
                        i = end;
                        continue;
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                        tracing::info!(local = %self.local, error = %e, "GSO send refused; sending datagrams one by one");
                        self.gso.store(false, Ordering::Relaxed);
                    }
                    Err(e) => return Err((size, e)),
                }
            }
            self.send_to(&items[i], to)
                .await
                .map_err(|e| (items[i].len(), e))?;
            i += 1;
        }
        Ok(())
    }

    /// End (exclusive) of a run of datagrams starting at `start` that can go out in one
    /// GSO send: same size (the last may be shorter), at least two, at most `max_segments`.
    fn gso_run(&self, items: &[Bytes], start: usize, max_segments: usize) -> Option<usize> {
        if !self.gso_enabled() {
            return None;
        }
        let size = items[start].len();
        if size == 0 || size > GSO_MAX_SEGMENT || max_segments < 2 {
            return None;
        }
        let mut end = start + 1;
        let mut total = size;
        while end < items.len() && end - start < max_segments {
            let len = items[end].len();
            if len == 0 || len > size || total + len > GSO_MAX_TOTAL {
                break;
            }
            total += len;
            end += 1;
            if len < size {
                break;
            }
        }
        (end - start > 1).then_some(end)
    }

    async fn send_gso(&self, buf: &[u8], segment: usize, to: SocketAddr) -> io::Result<()> {
        let Some(state) = &self.state else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        self.io
            .async_io(Interest::WRITABLE, || {
                state.try_send((&self.io).into(), &Self::transmit(to, buf, Some(segment)))
            })
            .await
    }

    /// Waits for datagrams and appends every one available now (up to a batch) to `out`.
    pub(crate) async fn recv_batch(
        &self,
        rb: &mut RecvBuf,
        out: &mut Vec<(SocketAddr, Bytes)>,
    ) -> io::Result<()> {
        match &self.state {
            Some(state) => loop {
                self.io.readable().await?;
                let res = self.io.try_io(Interest::READABLE, || {
                    let mut iovs: Vec<IoSliceMut<'_>> = rb
                        .buf
                        .chunks_mut(MAX_DATAGRAM)
                        .map(IoSliceMut::new)
                        .collect();
                    state.recv((&self.io).into(), &mut iovs, &mut rb.meta)
                });
                match res {
                    Ok(n) => {
                        for (meta, chunk) in rb.meta[..n].iter().zip(rb.buf.chunks(MAX_DATAGRAM)) {
                            let data = &chunk[..meta.len.min(chunk.len())];
                            // GRO is off, but split by stride anyway should a kernel
                            // coalesce regardless.
                            if meta.stride == 0 || meta.stride >= data.len() {
                                out.push((meta.addr, Bytes::copy_from_slice(data)));
                            } else {
                                for seg in data.chunks(meta.stride) {
                                    out.push((meta.addr, Bytes::copy_from_slice(seg)));
                                }
                            }
                        }
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            },
            None => {
                let (n, from) = self.io.recv_from(&mut rb.buf[..MAX_DATAGRAM]).await?;
                out.push((from, Bytes::copy_from_slice(&rb.buf[..n])));
                for _ in 1..PLAIN_DRAIN {
                    match self.io.try_recv_from(&mut rb.buf[..MAX_DATAGRAM]) {
                        Ok((n, from)) => out.push((from, Bytes::copy_from_slice(&rb.buf[..n]))),
                        Err(_) => break,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Receive buffers: one maximum-sized datagram per batch slot.
pub(crate) struct RecvBuf {
    buf: Vec<u8>,
    meta: Vec<quinn_udp::RecvMeta>,
}

impl RecvBuf {
    /// Buffers for `sock` (a batch of them when it reads in batches).
    pub(crate) fn for_sock(sock: &Sock) -> RecvBuf {
        let slots = if sock.is_batched() {
            quinn_udp::BATCH_SIZE.clamp(1, 32)
        } else {
            1
        };
        RecvBuf {
            buf: vec![0; MAX_DATAGRAM * slots],
            meta: vec![quinn_udp::RecvMeta::default(); slots],
        }
    }
}

/// Is this receive error transient (ICMP feedback, signals) rather than a broken socket?
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    ) || matches!(
        e.raw_os_error(),
        Some(libc::ENOBUFS | libc::ENOMEM | libc::EHOSTUNREACH | libc::ENETUNREACH)
    )
}

/// Maps a send error: `EMSGSIZE` is [`Error::UdpTooLarge`], anything else an I/O error.
pub(crate) fn send_error(e: io::Error, size: usize, max: usize, to: SocketAddr) -> Error {
    if quinn_udp::is_msg_size_err(&e) {
        Error::UdpTooLarge { size, max }
    } else {
        Error::io("send", Some(to), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(batched: bool) -> SockConfig {
        SockConfig {
            recv_buffer: 1 << 20,
            send_buffer: 1 << 20,
            batched,
            reuse_port: false,
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn fragmentation_is_allowed_after_quinn_udp() {
        let s = Sock::bind("127.0.0.1:0".parse().unwrap(), None, cfg(true)).unwrap();
        assert!(
            s.is_batched(),
            "quinn-udp state should be available on Linux"
        );
        let v = sockopt::get_int(s.io(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER).unwrap();
        assert_eq!(v, libc::IP_PMTUDISC_DONT);
        let gro = sockopt::get_int(s.io(), libc::SOL_UDP, libc::UDP_GRO).unwrap();
        assert_eq!(gro, 0);

        if let Ok(s6) = Sock::bind("[::1]:0".parse().unwrap(), None, cfg(true)) {
            let v = sockopt::get_int(s6.io(), libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER).unwrap();
            assert_eq!(v, libc::IPV6_PMTUDISC_DONT);
            let df = sockopt::get_int(s6.io(), libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG).unwrap();
            assert_eq!(df, 0);
        }
    }

    #[tokio::test]
    async fn buffers_are_sized() {
        let s = Sock::bind("127.0.0.1:0".parse().unwrap(), None, cfg(false)).unwrap();
        let sock = socket2::SockRef::from(s.io());
        // At least what was asked, unless the system maximum caps it and we lack the
        // privilege to force it past (then the maximum).
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(1 << 20);
        assert!(sock.recv_buffer_size().unwrap() >= max.min(1 << 20));
        assert!(sock.send_buffer_size().unwrap() >= 1 << 16);
    }

    #[test]
    fn gso_runs_group_equal_sizes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = Sock::bind("127.0.0.1:0".parse().unwrap(), None, cfg(true)).unwrap();
            if !s.gso_enabled() {
                return;
            }
            let d = |n: usize| Bytes::from(vec![1u8; n]);
            let items = vec![d(100), d(100), d(100), d(50), d(100), d(2000), d(10)];
            let m = GSO_MAX_SEGMENTS;
            assert_eq!(s.gso_run(&items, 0, m), Some(4));
            assert_eq!(s.gso_run(&items, 0, 2), Some(2));
            assert_eq!(s.gso_run(&items, 4, m), None);
            assert_eq!(s.gso_run(&items, 5, m), None);
            assert_eq!(s.gso_run(&[d(0), d(0)], 0, m), None);
        });
    }

    /// A GSO send the kernel refuses (here: more segments than `UDP_MAX_SEGMENTS`, which
    /// gives `EINVAL`) turns GSO off and the datagrams still go out, one by one.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn refused_gso_falls_back_to_single_sends() {
        let s = Sock::bind("127.0.0.1:0".parse().unwrap(), None, cfg(true)).unwrap();
        if !s.gso_enabled() {
            return;
        }
        let peer = Sock::bind("127.0.0.1:0".parse().unwrap(), None, cfg(false)).unwrap();
        let items: Vec<Bytes> = (0..300u16)
            .map(|i| Bytes::from(i.to_be_bytes().to_vec()))
            .collect();
        s.send_many_with(&items, peer.local(), 1000).await.unwrap();
        assert!(!s.gso_enabled(), "the kernel should refuse 300 segments");

        let mut rb = RecvBuf::for_sock(&peer);
        let mut got = Vec::new();
        while got.len() < items.len() {
            let mut out = Vec::new();
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                peer.recv_batch(&mut rb, &mut out),
            )
            .await
            .unwrap()
            .unwrap();
            got.extend(out.into_iter().map(|(from, d)| {
                assert_eq!(from, s.local());
                d
            }));
        }
        assert_eq!(got, items);
    }
}
