//! The PROXY protocol (HAProxy, versions 1 and 2): behind a load balancer, the first bytes
//! of an accepted stream carry the real client's address.
//!
//! [`parse`] is pure (it never reads beyond what it is given, and says when it needs more);
//! [`read_header`] reads a header from a stream within a time limit and returns the stream
//! with any bytes read past the header put back in front ([`Prefixed`]).
//!
//! ```
//! use nkp_core::proxy::{parse, ProxyHeader};
//! let (h, used) = parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 5060 443\r\nhello").unwrap().unwrap();
//! assert_eq!(used, 44);
//! assert_eq!(h, ProxyHeader::Proxy {
//!     source: "192.0.2.1:5060".parse().unwrap(),
//!     destination: "198.51.100.2:443".parse().unwrap(),
//! });
//! assert_eq!(parse(b"PROXY TCP4 192.0.2.1").unwrap(), None); // needs more bytes
//! assert!(parse(b"GET / HTTP/1.1\r\n").is_err());
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::Error;

/// The version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 header (RFC text: 107 bytes including CRLF).
pub const V1_MAX: usize = 107;
/// Longest version 2 header accepted (16-byte fixed part + addresses + TLVs).
pub const V2_MAX: usize = 16 + 1024;

/// What a PROXY header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The connection was relayed for `source`, which connected to `destination`.
    Proxy {
        /// The real client.
        source: SocketAddr,
        /// The address the client connected to (on the proxy).
        destination: SocketAddr,
    },
    /// The proxy's own connection (health checks): keep the socket's addresses.
    Local,
    /// An unknown or unsupported family (v1 `UNKNOWN`, v2 UNIX/unspecified): keep the
    /// socket's addresses.
    Unknown,
}

/// Parses a PROXY header at the start of `buf`.
///
/// `Ok(None)`: the bytes so far are a valid beginning, more are needed. `Ok(Some((header,
/// consumed)))`: the header and its length. `Err`: not a PROXY header, or a malformed one.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'\r' {
        return parse_v2(buf);
    }
    if buf[0] == b'P' {
        return parse_v1(buf);
    }
    Err(bad(
        "the stream does not start with a PROXY protocol header",
    ))
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Protocol(format!("PROXY protocol: {}", reason.into()))
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, Error> {
    let prefix = b"PROXY ";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(bad(
            "the stream does not start with a PROXY protocol header",
        ));
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(bad("version 1 header longer than 107 bytes"));
        }
        return Ok(None);
    };
    if end + 2 > V1_MAX {
        return Err(bad("version 1 header longer than 107 bytes"));
    }
    let line = std::str::from_utf8(&buf[prefix.len()..end])
        .map_err(|_| bad("version 1 header is not text"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let header = match parts.as_slice() {
        ["UNKNOWN", ..] => ProxyHeader::Unknown,
        [fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, Error> {
                let ip: IpAddr = s.parse().map_err(|_| bad(format!("bad address {s:?}")))?;
                if ip.is_ipv4() != (*fam == "TCP4") {
                    return Err(bad(format!("address {s} is not {fam}")));
                }
                Ok(ip)
            };
            let port = |s: &str| -> Result<u16, Error> {
                if s.len() > 1 && s.starts_with('0') {
                    return Err(bad(format!("bad port {s:?}")));
                }
                s.parse().map_err(|_| bad(format!("bad port {s:?}")))
            };
            ProxyHeader::Proxy {
                source: SocketAddr::new(ip(src)?, port(sport)?),
                destination: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(bad(format!("malformed version 1 header {line:?}"))),
    };
    Ok(Some((header, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, Error> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(bad(
            "the stream does not start with a PROXY protocol header",
        ));
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(bad(format!("unsupported version {}", ver_cmd >> 4)));
    }
    let fam = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if 16 + len > V2_MAX {
        return Err(bad(format!(
            "version 2 header of {} bytes is too long",
            16 + len
        )));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let header = match ver_cmd & 0x0f {
        0x0 => ProxyHeader::Local,
        0x1 => match fam >> 4 {
            0x1 => {
                if body.len() < 12 {
                    return Err(bad("version 2 IPv4 addresses truncated"));
                }
                let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
                ProxyHeader::Proxy {
                    source: SocketAddr::new(src.into(), u16::from_be_bytes([body[8], body[9]])),
                    destination: SocketAddr::new(
                        dst.into(),
                        u16::from_be_bytes([body[10], body[11]]),
                    ),
                }
            }
            0x2 => {
                if body.len() < 36 {
                    return Err(bad("version 2 IPv6 addresses truncated"));
                }
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&body[..16]);
                d.copy_from_slice(&body[16..32]);
                ProxyHeader::Proxy {
                    source: SocketAddr::new(
                        Ipv6Addr::from(s).into(),
                        u16::from_be_bytes([body[32], body[33]]),
                    ),
                    destination: SocketAddr::new(
                        Ipv6Addr::from(d).into(),
                        u16::from_be_bytes([body[34], body[35]]),
                    ),
                }
            }
            _ => ProxyHeader::Unknown,
        },
        c => return Err(bad(format!("unknown version 2 command {c}"))),
    };
    Ok(Some((header, 16 + len)))
}

/// Reads a PROXY header from `io` within `timeout`. Returns the header and the stream with
/// the bytes read past the header put back in front.
///
/// Errors: [`Error::Timeout`] (op `"PROXY header"`), [`Error::Protocol`] for a malformed or
/// missing header, [`Error::Closed`] when the peer closes first.
pub async fn read_header<S: AsyncRead + Unpin>(
    mut io: S,
    timeout: Duration,
) -> Result<(ProxyHeader, Prefixed<S>), Error> {
    let read = async {
        let mut buf = BytesMut::with_capacity(256);
        loop {
            if let Some((h, used)) = parse(&buf)? {
                buf.advance(used);
                return Ok((h, buf));
            }
            let n = io
                .read_buf(&mut buf)
                .await
                .map_err(|e| Error::io("read PROXY header", None, e))?;
            if n == 0 {
                return Err(Error::Closed(Some(
                    "before the PROXY header was complete".into(),
                )));
            }
        }
    };
    let (h, rest) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Error::Timeout {
            op: "PROXY header",
            after: timeout,
        })??;
    Ok((h, Prefixed::new(rest, io)))
}

/// A stream with some bytes already read put back in front of it.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `prefix` is read first, then `inner`.
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Prefixed { prefix, inner }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    // Forwarded so that a frame and its length prefix still go out in one write.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(0x20 | cmd);
        v.push(fam);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn v1_forms() {
        let (h, n) = parse(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(n, 32);
        assert_eq!(
            h,
            ProxyHeader::Proxy {
                source: "[2001:db8::1]:1".parse().unwrap(),
                destination: "[::1]:2".parse().unwrap()
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN whatever\r\n").unwrap().unwrap().0,
            ProxyHeader::Unknown
        );
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXX",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // no CRLF within 107 bytes
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(parse(&long).is_err());
        // every proper prefix of a valid header asks for more
        let full = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        for i in 0..full.len() - 1 {
            assert_eq!(parse(&full[..i]).unwrap(), None, "prefix {i}");
        }
    }

    #[test]
    fn v2_forms() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2];
        body.extend_from_slice(&5060u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0xff]); // a TLV, skipped
        let wire = v2(1, 0x11, &body);
        let (h, n) = parse(&wire).unwrap().unwrap();
        assert_eq!(n, wire.len());
        assert_eq!(
            h,
            ProxyHeader::Proxy {
                source: "192.0.2.1:5060".parse().unwrap(),
                destination: "198.51.100.2:443".parse().unwrap()
            }
        );
        for i in 0..wire.len() {
            assert_eq!(parse(&wire[..i]).unwrap(), None, "prefix {i}");
        }
        assert_eq!(
            parse(&v2(0, 0, &[])).unwrap().unwrap().0,
            ProxyHeader::Local
        );
        assert_eq!(
            parse(&v2(1, 0x31, &[0; 216])).unwrap().unwrap().0,
            ProxyHeader::Unknown
        );
        assert!(parse(&v2(1, 0x11, &[1, 2, 3])).is_err());
        assert!(parse(&v2(7, 0x11, &body)).is_err());
        let mut v3 = v2(1, 0x11, &body);
        v3[12] = 0x31;
        assert!(parse(&v3).is_err());
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(parse(&huge).is_err());
    }

    /// A writer that records how it was written to.
    struct Recorder {
        writes: Vec<Vec<u8>>,
    }
    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = all.len();
            self.writes.push(all);
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn prefixed_keeps_vectored_writes() {
        use tokio::io::AsyncWriteExt;
        let mut p = Prefixed::new(BytesMut::new(), Recorder { writes: Vec::new() });
        assert!(p.is_write_vectored());
        let bufs = [io::IoSlice::new(b"\x00\x05"), io::IoSlice::new(b"hello")];
        assert_eq!(p.write_vectored(&bufs).await.unwrap(), 7);
        assert_eq!(p.get_ref().writes, vec![b"\x00\x05hello".to_vec()]);
    }

    #[tokio::test]
    async fn read_header_keeps_the_rest() {
        let (mut a, b) = tokio::io::duplex(1024);
        use tokio::io::AsyncWriteExt;
        a.write_all(b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000\r\nHELLO")
            .await
            .unwrap();
        let (h, mut rest) = read_header(b, Duration::from_secs(1)).await.unwrap();
        assert!(matches!(h, ProxyHeader::Proxy { source, .. } if source.port() == 1000));
        let mut buf = [0u8; 5];
        rest.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HELLO");
        // silence → timeout; garbage → error
        let (_a2, b2) = tokio::io::duplex(64);
        let e = read_header(b2, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "timeout");
        let (mut a3, b3) = tokio::io::duplex(64);
        a3.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(
            read_header(b3, Duration::from_secs(1))
                .await
                .unwrap_err()
                .code(),
            "protocol_error"
        );
    }
}
