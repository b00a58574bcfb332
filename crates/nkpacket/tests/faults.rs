//! Faults and limits: blocking protocol code, per-source-IP caps, peers that reset or
//! half-close mid-stream. Each ends what it must and nothing else.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use nkpacket::{
    Config, ConnInfo, EncodeError, Frame, Nkpacket, Options, Parse, Protocol, StopReason,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Echoes, but blocks its thread on `block!`; reports how connections stop.
struct Sluggish(mpsc::UnboundedSender<StopReason>);

impl Protocol for Sluggish {
    type Message = Bytes;
    type State = ();
    fn parse(&self, f: Frame, _c: &ConnInfo, _s: &mut ()) -> Parse<Bytes> {
        if f.payload() == b"block!" {
            std::thread::sleep(Duration::from_millis(600));
        }
        Parse::Reply(f.into_data().unwrap_or_default())
    }
    fn encode(&self, m: Bytes, _c: &ConnInfo, _s: &mut ()) -> Result<Frame, EncodeError> {
        Ok(Frame::Binary(m))
    }
    fn conn_stop(&self, reason: &StopReason, _c: &ConnInfo, _s: Option<()>) {
        let _ = self.0.send(reason.clone());
    }
}

async fn echo_once(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_protocol_code_ends_only_its_connection() {
    let (tx, mut stops) = mpsc::unbounded_channel();
    let nk = Nkpacket::builder()
        .protocol("slug", Sluggish(tx))
        .config(Config {
            callback_budget: Duration::from_millis(200),
            ..Config::default()
        })
        .build();
    let l = nk
        .start_listener("slug://127.0.0.1:0;transport=tcp", Options::default())
        .await
        .unwrap();
    let mut good = TcpStream::connect(l.info().local()).await.unwrap();
    assert_eq!(echo_once(&mut good, b"one").await, b"one");
    let mut bad = TcpStream::connect(l.info().local()).await.unwrap();
    bad.write_all(b"block!").await.unwrap();
    // the other connection keeps being served (another worker steals its task)
    assert_eq!(echo_once(&mut good, b"two").await, b"two");
    let reason = tokio::time::timeout(Duration::from_secs(5), stops.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(reason, StopReason::Blocked("parse", _)),
        "{reason}"
    );
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), bad.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the blocked connection is closed without a reply");
    assert_eq!(echo_once(&mut good, b"three").await, b"three");
    assert!(l.is_running());
    nk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_ip_cap() {
    let nk = Nkpacket::builder()
        .protocol("echo", nkpacket::echo::Echo)
        .build();
    let l = nk
        .start_listener(
            "echo://0.0.0.0:0;transport=tcp;max_connections_per_ip=2",
            Options::default(),
        )
        .await
        .unwrap();
    let port = l.info().port();
    let mut a = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut b = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(echo_once(&mut a, b"a").await, b"a");
    assert_eq!(echo_once(&mut b, b"b").await, b"b");
    // a third from the same address is closed
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = c.write_all(b"c").await;
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    // another source address is served
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut d = sock
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(echo_once(&mut d, b"d").await, b"d");
    // a place is given back when a connection ends
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut e = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(echo_once(&mut e, b"e").await, b"e");
    nk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_frame_and_half_close() {
    let (tx, mut stops) = mpsc::unbounded_channel();
    let nk = Nkpacket::builder().protocol("slug", Sluggish(tx)).build();
    let l = nk
        .start_listener(
            "slug://127.0.0.1:0;transport=tcp;tcp_packet=4",
            Options::default(),
        )
        .await
        .unwrap();
    // a peer that announces 100 bytes, sends 10 and resets
    let s = TcpStream::connect(l.info().local()).await.unwrap();
    let mut s = s;
    s.write_all(&[0, 0, 0, 100]).await.unwrap();
    s.write_all(&[1u8; 10]).await.unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let reason = tokio::time::timeout(Duration::from_secs(5), stops.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(reason, StopReason::Error(_)), "{reason}");
    // a half-closed peer still gets its replies, then the connection ends
    let mut h = TcpStream::connect(l.info().local()).await.unwrap();
    h.write_all(b"\x00\x00\x00\x02hi").await.unwrap();
    h.shutdown().await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), h.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, b"\x00\x00\x00\x02hi");
    let reason = tokio::time::timeout(Duration::from_secs(5), stops.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, StopReason::PeerClosed);
    assert!(l.is_running());
    nk.shutdown().await;
}

/// Keepalives (RFC 5626 CRLF on raw TCP): answered ones keep the connection, unanswered
/// ones end it and tell the protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_keepalives_and_dead_peers() {
    /// Counts the units it is given.
    struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl Protocol for Count {
        type Message = Bytes;
        type State = ();
        fn parse(&self, _f: Frame, _c: &ConnInfo, _s: &mut ()) -> Parse<Bytes> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Parse::Continue
        }
    }
    let parsed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, mut stops) = mpsc::unbounded_channel();
    let nk = Nkpacket::builder()
        .protocol("slug", Sluggish(tx))
        .protocol("count", Count(parsed.clone()))
        .build();
    let l = nk
        .start_listener(
            "count://127.0.0.1:0;transport=tcp;crlf_keepalive",
            Options::default(),
        )
        .await
        .unwrap();
    let uri = format!(
        "slug://127.0.0.1:{};transport=tcp;keepalive_interval=100;keepalive_timeout=300",
        l.info().port()
    );
    let c = nk.connect(uri.as_str(), Options::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(c.is_alive(), "answered keepalives keep it");
    // the keepalives never reached the server's protocol
    assert_eq!(parsed.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(stops.try_recv().is_err());
    // a peer that never answers
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!(
        "slug://{};transport=tcp;keepalive_interval=100;keepalive_timeout=200",
        silent.local_addr().unwrap()
    );
    let c2 = nk.connect(uri.as_str(), Options::default()).await.unwrap();
    let (_peer, _) = silent.accept().await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), stops.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, StopReason::KeepaliveTimeout);
    tokio::time::timeout(Duration::from_secs(2), c2.closed())
        .await
        .unwrap();
    assert!(c.is_alive());
    nk.shutdown().await;
}

/// PROXY protocol on a TCP listener: the connection's remote address is the one the header
/// gives; a malformed header closes that connection only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_gives_the_real_client_address() {
    struct Who;
    impl Protocol for Who {
        type Message = Bytes;
        type State = ();
        fn parse(&self, _f: Frame, c: &ConnInfo, _s: &mut ()) -> Parse<Bytes> {
            Parse::Reply(Bytes::from(format!("{}\n", c.remote())))
        }
        fn encode(&self, m: Bytes, _c: &ConnInfo, _s: &mut ()) -> Result<Frame, EncodeError> {
            Ok(Frame::Binary(m))
        }
    }
    let nk = Nkpacket::builder().protocol("who", Who).build();
    let l = nk
        .start_listener(
            "who://127.0.0.1:0;transport=tcp;proxy_protocol",
            Options::default(),
        )
        .await
        .unwrap();
    // v1, with data right behind the header in the same write
    let mut s = TcpStream::connect(l.info().local()).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 5060\r\nx")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"203.0.113.7:40000\n");
    // v2, IPv6
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2.extend_from_slice(
        &"2001:db8::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v2.extend_from_slice(&[0x13, 0x88, 0x13, 0xc4]);
    let mut s2 = TcpStream::connect(l.info().local()).await.unwrap();
    s2.write_all(&v2).await.unwrap();
    s2.write_all(b"y").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s2.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"[2001:db8::5]:5000\n");
    // no header: closed, the listener goes on
    let mut s3 = TcpStream::connect(l.info().local()).await.unwrap();
    s3.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s3.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    s.write_all(b"again").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"203.0.113.7:40000\n");
    nk.shutdown().await;
}

/// PROXY protocol on TLS and HTTP listeners: the header comes before the TLS handshake or the
/// HTTP request, and the connection's remote address is the one it gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_on_tls_and_http() {
    struct Who;
    impl Protocol for Who {
        type Message = Bytes;
        type State = ();
        fn parse(&self, _f: Frame, c: &ConnInfo, _s: &mut ()) -> Parse<Bytes> {
            Parse::Reply(Bytes::from(format!("{}", c.remote())))
        }
        fn encode(&self, m: Bytes, _c: &ConnInfo, _s: &mut ()) -> Result<Frame, EncodeError> {
            Ok(Frame::Binary(m))
        }
    }
    let dir = std::env::temp_dir().join(format!("nkp-proxy-{}", std::process::id()));
    let (cert, key) = nkpacket::tls::write_self_signed(&dir, &["localhost".into()]).unwrap();
    let nk = Nkpacket::builder().protocol("who", Who).build();
    let mut o = Options::default();
    o.tls_certfile = Some(cert.display().to_string());
    o.tls_keyfile = Some(key.display().to_string());
    o.proxy_protocol = Some(true);
    let tls = nk
        .start_listener("who://127.0.0.1:0;transport=tls", o)
        .await
        .unwrap();
    let mut tcp = TcpStream::connect(tls.info().local()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 198.51.100.9 127.0.0.1 1234 443\r\n")
        .await
        .unwrap();
    let mut co = Options::default();
    co.tls_verify = Some(false);
    let config = nkp_tls::client_config(&co).unwrap();
    let name = nkp_tls::server_name(&co, tls.info().local()).unwrap();
    let mut s = nkp_tls::connect_tls(config, name, tcp, Duration::from_secs(5))
        .await
        .unwrap();
    s.write_all(b"hi").await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"198.51.100.9:1234");

    let http = nk
        .start_listener(
            "who://127.0.0.1:0;transport=http;proxy_protocol",
            Options::default(),
        )
        .await
        .unwrap();
    let mut h = TcpStream::connect(http.info().local()).await.unwrap();
    h.write_all(
        b"PROXY TCP4 203.0.113.5 127.0.0.1 999 80\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), h.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("203.0.113.5:999"), "{text}");
    nk.shutdown().await;
}
