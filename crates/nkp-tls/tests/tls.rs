//! TLS transport over loopback: echo, verification, versions, mutual TLS, hostile peers,
//! certificate file errors, and interop with `openssl s_client`.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nkp_core::{
    Accepted, BoxLink, ConnectRequest, Error, Frame, LinkInfo, ListenRequest, Options, Transport,
    TransportKind,
};
use nkp_tls::TlsTransport;
use nkp_tls::rustls::ProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nkp-tls-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A self-signed server certificate for localhost, 127.0.0.1 and ::1.
struct ServerCert {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn server_cert() -> ServerCert {
    let dir = TempDir::new("srv");
    let (cert, key) = nkp_tls::write_self_signed(&dir.0, &[]).unwrap();
    ServerCert { dir, cert, key }
}

fn listen_opts(c: &ServerCert) -> Options {
    let mut o = Options::default();
    o.set("tls_certfile", s(&c.cert)).unwrap();
    o.set("tls_keyfile", s(&c.key)).unwrap();
    o
}

/// Client options trusting the test certificate.
fn trusting(c: &ServerCert) -> Options {
    let mut o = Options::default();
    o.set("tls_cacertfile", s(&c.cert)).unwrap();
    o.set("connect_timeout", "5000").unwrap();
    o
}

#[derive(Debug)]
enum Event {
    Up(LinkInfo),
    HandshakeFailed(Error),
    Ended(Option<Error>),
}

/// Runs an echo server on a TLS listener; reports link events.
async fn echo_server(
    addr: &str,
    opts: Options,
) -> Result<(SocketAddr, mpsc::UnboundedReceiver<Event>), Error> {
    let t = TlsTransport::new();
    let mut listener = t
        .listen(ListenRequest {
            transport: TransportKind::Tls,
            addr: addr.parse().unwrap(),
            options: Arc::new(opts),
        })
        .await?;
    let local = listener.local_addr();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = listener.next().await {
            let Ok(Accepted::Pending(handshake)) = item else {
                panic!("unexpected listener item {item:?}");
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut link: BoxLink = match handshake.await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Event::HandshakeFailed(e));
                        return;
                    }
                };
                let _ = tx.send(Event::Up(link.info().clone()));
                let end = loop {
                    match link.next().await {
                        Some(Ok(f)) => {
                            if let Err(e) = link.send(f).await {
                                break Some(e);
                            }
                        }
                        Some(Err(e)) => break Some(e),
                        None => break None,
                    }
                };
                let _ = tx.send(Event::Ended(end));
            });
        }
    });
    Ok((local, rx))
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no server event in time")
        .expect("server gone")
}

async fn connect(remote: SocketAddr, opts: Options) -> Result<BoxLink, Error> {
    TlsTransport::new()
        .connect(ConnectRequest {
            transport: TransportKind::Tls,
            remote,
            options: Arc::new(opts),
        })
        .await
}

/// Sends `msg` and reads raw bytes until as many came back.
async fn echo_raw(link: &mut BoxLink, msg: &[u8]) -> Vec<u8> {
    link.send(Frame::binary(msg.to_vec())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < msg.len() {
        let f = tokio::time::timeout(WAIT, link.next())
            .await
            .expect("echo timed out")
            .expect("link closed")
            .expect("link error");
        got.extend_from_slice(f.payload());
    }
    got
}

fn tls_message<T>(r: Result<T, Error>) -> String {
    match r {
        Err(Error::Tls(m)) => m,
        Err(e) => panic!("expected Error::Tls, got {e:?}"),
        Ok(_) => panic!("expected Error::Tls, got success"),
    }
}

#[tokio::test]
async fn echo_ipv4_raw_verified_by_ip() {
    let c = server_cert();
    let (addr, mut ev) = echo_server("127.0.0.1:0", listen_opts(&c)).await.unwrap();
    // no host: the certificate is checked against the IP address (IP SAN), no SNI is sent
    let mut link = connect(addr, trusting(&c)).await.unwrap();
    assert_eq!(link.info().transport, TransportKind::Tls);
    assert_eq!(link.info().remote, addr);
    assert_eq!(
        echo_raw(&mut link, b"hello over tls").await,
        b"hello over tls"
    );
    match next_event(&mut ev).await {
        Event::Up(info) => {
            assert_eq!(info.transport, TransportKind::Tls);
            assert_eq!(info.local, addr);
            assert_eq!(info.remote, link.info().local);
            assert_eq!(info.meta.host, None, "no SNI for an IP address");
        }
        other => panic!("{other:?}"),
    }
    // a clean close: the server's link ends without error
    link.close().await.unwrap();
    match next_event(&mut ev).await {
        Event::Ended(None) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn echo_ipv6_framed_with_sni() {
    let c = server_cert();
    let mut lo = listen_opts(&c);
    lo.set("tcp_packet", "4").unwrap();
    let (addr, mut ev) = echo_server("[::1]:0", lo).await.unwrap();
    assert!(addr.is_ipv6());
    let mut co = trusting(&c);
    co.set("tcp_packet", "4").unwrap();
    co.set("host", "localhost").unwrap();
    let mut link = connect(addr, co).await.unwrap();
    assert_eq!(link.info().meta.host.as_deref(), Some("localhost"));
    for msg in [&b"one"[..], &b""[..], &[7u8; 70_000][..]] {
        link.send(Frame::binary(msg.to_vec())).await.unwrap();
        let f = tokio::time::timeout(WAIT, link.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(f.payload(), msg, "frames come back whole");
    }
    match next_event(&mut ev).await {
        Event::Up(info) => assert_eq!(info.meta.host.as_deref(), Some("localhost")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn verification_is_on_by_default() {
    let c = server_cert();
    let (addr, mut ev) = echo_server("127.0.0.1:0", listen_opts(&c)).await.unwrap();
    let mut o = Options::default();
    o.set("host", "localhost").unwrap();
    let msg = tls_message(connect(addr, o).await);
    assert!(msg.contains("certificate"), "{msg}");
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains(&addr.to_string()), "names the peer: {msg}");
    match next_event(&mut ev).await {
        Event::HandshakeFailed(Error::Tls(m)) => assert!(m.contains("handshake from"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn verify_false_accepts_a_self_signed_server() {
    let c = server_cert();
    let (addr, _ev) = echo_server("127.0.0.1:0", listen_opts(&c)).await.unwrap();
    let mut o = Options::default();
    o.set("tls_verify", "false").unwrap();
    o.set("host", "not-the-right-name.example").unwrap();
    let mut link = connect(addr, o).await.unwrap();
    assert_eq!(echo_raw(&mut link, b"insecure").await, b"insecure");
}

#[tokio::test]
async fn wrong_host_name_is_rejected() {
    let c = server_cert();
    let (addr, _ev) = echo_server("127.0.0.1:0", listen_opts(&c)).await.unwrap();
    let mut o = trusting(&c);
    o.set("host", "other.example").unwrap();
    let msg = tls_message(connect(addr, o).await);
    assert!(msg.contains("certificate"), "{msg}");
    assert!(msg.contains("other.example"), "{msg}");

    // the same trust with the right name works
    let mut o = trusting(&c);
    o.set("host", "localhost").unwrap();
    let mut link = connect(addr, o).await.unwrap();
    assert_eq!(echo_raw(&mut link, b"x").await, b"x");
}

#[tokio::test]
async fn tls_versions_select_the_protocol() {
    let c = server_cert();
    let (addr, _ev) = echo_server("127.0.0.1:0", listen_opts(&c)).await.unwrap();
    let t = TlsTransport::new();

    let link = t.connect_link(addr, &trusting(&c)).await.unwrap();
    assert_eq!(
        nkp_tls::session_info(&link).version,
        Some(ProtocolVersion::TLSv1_3)
    );

    let mut o = trusting(&c);
    o.set("tls_versions", "tls1.2").unwrap();
    let mut link = t.connect_link(addr, &o).await.unwrap();
    let info = nkp_tls::session_info(&link);
    assert_eq!(info.version, Some(ProtocolVersion::TLSv1_2));
    assert!(info.cipher_suite.is_some());
    link.send(Frame::binary(&b"v12"[..])).await.unwrap();
    let f = tokio::time::timeout(WAIT, link.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(f.payload(), b"v12");

    // a TLS 1.3-only listener refuses a TLS 1.2-only client
    let mut lo = listen_opts(&c);
    lo.set("tls_versions", "tls1.3").unwrap();
    let (addr13, _ev13) = echo_server("127.0.0.1:0", lo).await.unwrap();
    let msg = tls_message(t.connect_link(addr13, &o).await);
    assert!(msg.contains("handshake with"), "{msg}");
}

#[tokio::test]
async fn alpn_is_negotiated() {
    let c = server_cert();
    let server = TlsTransport::with_alpn(vec![b"http/1.1".to_vec()]);
    let mut listener = server
        .bind("127.0.0.1:0".parse().unwrap(), Arc::new(listen_opts(&c)))
        .unwrap();
    let addr = listener.local_addr();
    let accept = tokio::spawn(async move {
        let Some(Ok(Accepted::Pending(h))) = listener.next().await else {
            panic!("no connection");
        };
        h.await.map(|l| l.info().clone())
    });
    let client = TlsTransport::with_alpn(vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    let link = client.connect_link(addr, &trusting(&c)).await.unwrap();
    assert_eq!(
        nkp_tls::session_info(&link).alpn.as_deref(),
        Some(&b"http/1.1"[..])
    );
    accept.await.unwrap().unwrap();
}

struct ClientCa {
    _dir: TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a client certificate it signed.
fn client_ca() -> ClientCa {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let dir = TempDir::new("ca");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "nkp test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "nkp test client");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.path("ca.pem"),
        dir.path("client.pem"),
        dir.path("client.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    ClientCa {
        _dir: dir,
        ca: paths.0,
        cert: paths.1,
        key: paths.2,
    }
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let c = server_cert();
    let ca = client_ca();
    let mut lo = listen_opts(&c);
    lo.set("tls_verify", "true").unwrap();
    lo.set("tls_cacertfile", s(&ca.ca)).unwrap();
    let (addr, mut ev) = echo_server("127.0.0.1:0", lo).await.unwrap();

    // without a certificate: the server refuses the handshake; the client never gets an echo
    // (with TLS 1.3 its own handshake may finish before the server's verdict arrives)
    match connect(addr, trusting(&c)).await {
        Err(Error::Tls(_)) => {}
        Err(e) => panic!("{e:?}"),
        Ok(mut link) => {
            let _ = link.send(Frame::binary(&b"let me in"[..])).await;
            if let Some(Ok(f)) = tokio::time::timeout(WAIT, link.next()).await.unwrap() {
                panic!("echo without a client certificate: {f:?}");
            }
        }
    }
    match next_event(&mut ev).await {
        Event::HandshakeFailed(Error::Tls(m)) => assert!(m.contains("certificate"), "{m}"),
        other => panic!("{other:?}"),
    }

    // a certificate signed by someone else is refused too
    let other = server_cert();
    let mut o = trusting(&c);
    o.set("tls_certfile", s(&other.cert)).unwrap();
    o.set("tls_keyfile", s(&other.key)).unwrap();
    if let Ok(mut link) = connect(addr, o).await {
        let _ = link.send(Frame::binary(&b"let me in"[..])).await;
        let r = tokio::time::timeout(WAIT, link.next()).await.unwrap();
        assert!(
            !matches!(r, Some(Ok(_))),
            "echo with an untrusted certificate"
        );
    }
    match next_event(&mut ev).await {
        Event::HandshakeFailed(Error::Tls(m)) => assert!(m.contains("certificate"), "{m}"),
        other => panic!("{other:?}"),
    }

    // with a certificate signed by the CA: accepted
    let mut o = trusting(&c);
    o.set("tls_certfile", s(&ca.cert)).unwrap();
    o.set("tls_keyfile", s(&ca.key)).unwrap();
    let mut link = connect(addr, o).await.unwrap();
    assert_eq!(echo_raw(&mut link, b"mutual").await, b"mutual");
    assert!(matches!(next_event(&mut ev).await, Event::Up(_)));
}

#[tokio::test]
async fn listener_with_tls_verify_needs_a_ca_file() {
    let c = server_cert();
    let mut lo = listen_opts(&c);
    lo.set("tls_verify", "true").unwrap();
    let msg = tls_message(echo_server("127.0.0.1:0", lo).await);
    assert!(msg.contains("tls_cacertfile"), "{msg}");
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let c = server_cert();
    let mut lo = listen_opts(&c);
    lo.set("connect_timeout", "400").unwrap();
    let (addr, mut ev) = echo_server("127.0.0.1:0", lo).await.unwrap();

    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // the listener keeps serving others meanwhile
    let mut link = connect(addr, trusting(&c)).await.unwrap();
    assert_eq!(echo_raw(&mut link, b"still here").await, b"still here");

    // two events, in either order on a slow machine: the good link, the silent timeout
    let (mut up, mut timed_out) = (false, false);
    for _ in 0..2 {
        match next_event(&mut ev).await {
            Event::Up(_) => up = true,
            Event::HandshakeFailed(Error::Timeout { op, after }) => {
                assert_eq!(op, "tls handshake");
                assert_eq!(after, Duration::from_millis(400));
                timed_out = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(up && timed_out);
    // the server closed the silent socket
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("silent socket not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn garbage_instead_of_client_hello_fails_that_handshake_only() {
    let c = server_cert();
    let (addr, mut ev) = echo_server("127.0.0.1:0", listen_opts(&c)).await.unwrap();
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    match next_event(&mut ev).await {
        Event::HandshakeFailed(Error::Tls(m)) => assert!(m.contains("handshake from"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut link = connect(addr, trusting(&c)).await.unwrap();
    assert_eq!(
        echo_raw(&mut link, b"after garbage").await,
        b"after garbage"
    );
}

#[tokio::test]
async fn peer_closing_without_close_notify_is_a_clean_close() {
    let c = server_cert();
    let (addr, mut ev) = echo_server("127.0.0.1:0", listen_opts(&c)).await.unwrap();
    let mut o = trusting(&c);
    o.set("host", "localhost").unwrap();
    let config = nkp_tls::client_config(&o).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = nkp_tls::server_name(&o, addr).unwrap();
    let mut tls = nkp_tls::connect_tls(config, name, tcp, WAIT).await.unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    assert!(matches!(next_event(&mut ev).await, Event::Up(_)));
    // drop TCP under TLS: no close_notify
    let (tcp, _) = tls.into_inner();
    drop(tcp);
    match next_event(&mut ev).await {
        Event::Ended(None) => {}
        other => panic!("expected a clean end, got {other:?}"),
    }
}

#[tokio::test]
async fn max_connections_pauses_accepting() {
    let c = server_cert();
    let mut lo = listen_opts(&c);
    lo.set("tcp_max_connections", "1").unwrap();
    let (addr, mut ev) = echo_server("127.0.0.1:0", lo).await.unwrap();
    let mut first = connect(addr, trusting(&c)).await.unwrap();
    assert_eq!(echo_raw(&mut first, b"1").await, b"1");
    assert!(matches!(next_event(&mut ev).await, Event::Up(_)));

    let mut o = trusting(&c);
    o.set("connect_timeout", "500").unwrap();
    match connect(addr, o).await {
        Err(Error::Timeout { op, .. }) => assert_eq!(op, "tls handshake"),
        other => panic!("expected a handshake timeout, got {:?}", other.err()),
    }

    first.close().await.unwrap();
    drop(first);
    let mut third = connect(addr, trusting(&c)).await.unwrap();
    assert_eq!(echo_raw(&mut third, b"3").await, b"3");
}

#[tokio::test]
async fn certificate_file_errors_name_the_file() {
    let c = server_cert();
    let t = TlsTransport::new();
    let bind = |o: Options| t.bind("127.0.0.1:0".parse().unwrap(), Arc::new(o));

    let msg = tls_message(bind(Options::default()));
    assert!(msg.contains("tls_certfile and tls_keyfile"), "{msg}");

    let missing = c.dir.path("missing.pem");
    let mut o = listen_opts(&c);
    o.set("tls_certfile", s(&missing)).unwrap();
    let msg = tls_message(bind(o));
    assert!(
        msg.contains("missing.pem") && msg.contains("tls_certfile"),
        "{msg}"
    );

    let junk = c.dir.path("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let mut o = listen_opts(&c);
    o.set("tls_certfile", s(&junk)).unwrap();
    let msg = tls_message(bind(o));
    assert!(
        msg.contains("junk.pem") && msg.contains("no certificate"),
        "{msg}"
    );

    let mut o = listen_opts(&c);
    o.set("tls_keyfile", s(&c.cert)).unwrap();
    let msg = tls_message(bind(o));
    assert!(msg.contains("no private key"), "{msg}");

    // a key that does not belong to the certificate
    let other = server_cert();
    let mut o = listen_opts(&c);
    o.set("tls_keyfile", s(&other.key)).unwrap();
    let msg = tls_message(bind(o));
    assert!(msg.contains("cannot be used"), "{msg}");

    // a CA file that cannot be read, on the client side
    let mut o = Options::default();
    o.set("tls_cacertfile", s(&missing)).unwrap();
    let msg = tls_message(nkp_tls::client_config(&o));
    assert!(
        msg.contains("tls_cacertfile") && msg.contains("missing.pem"),
        "{msg}"
    );
}

/// Skips (or fails under `NKP_REQUIRE_PEERS`) when openssl is missing.
fn have_openssl(test: &str) -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("NKP_REQUIRE_PEERS").is_some() {
            panic!("{test}: openssl not installed and NKP_REQUIRE_PEERS is set");
        }
        eprintln!("SKIPPED {test}: openssl not installed");
    }
    ok
}

#[tokio::test]
async fn encrypted_keys_are_refused_with_advice() {
    let c = server_cert();
    let enc = c.dir.path("enc.key");
    if !have_openssl("encrypted_keys_are_refused_with_advice") {
        return;
    }
    let st = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
            "-in",
        ])
        .arg(&c.key)
        .arg("-out")
        .arg(&enc)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let mut o = listen_opts(&c);
    o.set("tls_keyfile", s(&enc)).unwrap();
    o.set("tls_password", "secret").unwrap();
    let msg = tls_message(nkp_tls::server_config(&o));
    assert!(
        msg.contains("encrypted") && msg.contains("openssl pkey"),
        "{msg}"
    );
    assert!(msg.contains("enc.key"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_interop() {
    if !have_openssl("openssl_s_client_interop") {
        return;
    }
    let c = server_cert();
    let (addr, mut ev) = echo_server("127.0.0.1:0", listen_opts(&c)).await.unwrap();
    let cert = c.cert.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error"])
            .args(["-connect", &addr.to_string()])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-CAfile")
            .arg(&cert)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl");
        let mut stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        stdin.write_all(b"hello from openssl\n").unwrap();
        stdin.flush().unwrap();
        let line = rx.recv_timeout(WAIT);
        let _ = child.kill();
        let _ = child.wait();
        line
    })
    .await
    .unwrap();
    assert_eq!(
        result.expect("no echo from s_client within 10 s"),
        "hello from openssl\n"
    );
    match next_event(&mut ev).await {
        Event::Up(info) => assert_eq!(info.meta.host.as_deref(), Some("localhost")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tls_depth_limits_the_chain() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let dir = TempDir::new("depth");
    let ca_params = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p
    };
    let root =
        CertifiedIssuer::self_signed(ca_params("root"), KeyPair::generate().unwrap()).unwrap();
    let inter = CertifiedIssuer::signed_by(
        ca_params("intermediate"),
        KeyPair::generate().unwrap(),
        &root,
    )
    .unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &inter)
        .unwrap();
    let (ca, chain, key) = (
        dir.path("ca.pem"),
        dir.path("chain.pem"),
        dir.path("key.pem"),
    );
    std::fs::write(&ca, root.pem()).unwrap();
    std::fs::write(&chain, format!("{}{}", leaf.pem(), inter.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();

    let mut lo = Options::default();
    lo.set("tls_certfile", s(&chain)).unwrap();
    lo.set("tls_keyfile", s(&key)).unwrap();
    let (addr, _ev) = echo_server("127.0.0.1:0", lo).await.unwrap();

    let mut o = Options::default();
    o.set("tls_cacertfile", s(&ca)).unwrap();
    o.set("host", "localhost").unwrap();
    let mut link = connect(addr, o.clone()).await.unwrap();
    assert_eq!(echo_raw(&mut link, b"chain").await, b"chain");

    o.set("tls_depth", "1").unwrap();
    let mut link = connect(addr, o.clone()).await.unwrap();
    assert_eq!(echo_raw(&mut link, b"depth 1").await, b"depth 1");

    o.set("tls_depth", "0").unwrap();
    let msg = tls_message(connect(addr, o).await);
    assert!(msg.contains("tls_depth 0"), "{msg}");
    assert!(msg.contains("1 intermediate"), "{msg}");
}

/// A free loopback port (bound then released) for an external server.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_against_openssl_s_server() {
    if !have_openssl("client_against_openssl_s_server") {
        return;
    }
    let c = server_cert();
    let port = free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet"])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(&c.cert)
        .arg("-key")
        .arg(&c.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut stdin = server.stdin.take().unwrap();
    let stdout = server.stdout.take().unwrap();
    let _guard = Kill(server);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });

    // wait for s_server to listen, then connect with full verification (IP SAN)
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut link = connect(addr, trusting(&c)).await.unwrap();
    link.send(Frame::binary(&b"hello s_server\n"[..]))
        .await
        .unwrap();
    let got = tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("s_server printed nothing");
    assert_eq!(got, "hello s_server\n");
    stdin.write_all(b"hello nkp\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(echo_raw_read(&mut link, 10).await, b"hello nkp\n");
}

async fn echo_raw_read(link: &mut BoxLink, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let f = tokio::time::timeout(WAIT, link.next())
            .await
            .expect("read timed out")
            .expect("link closed")
            .expect("link error");
        got.extend_from_slice(f.payload());
    }
    got
}
