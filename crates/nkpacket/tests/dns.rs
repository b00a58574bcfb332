//! §13 dns_test items through the facade: URIs resolved by NAPTR → SRV → A with the DNS
//! cache seeded (as the original's tests did) and a silent nameserver behind it, so no query
//! ever leaves the machine; and connect/send falling through dead SRV targets.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use nkpacket::dns::{DnsConfig, NaptrRecord, SrvRecord};
use nkpacket::{Nkpacket, Options, TransportKind, echo::Echo};
use support::*;

const TTL: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A node whose only nameserver never answers (a bound socket nobody reads), so every
/// lookup not in the cache fails fast and locally.
fn node_with_silent_dns() -> (Nkpacket, std::net::UdpSocket) {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut dns = DnsConfig::with_nameservers(vec![silent.local_addr().expect("addr")]);
    dns.timeout = Duration::from_millis(200);
    dns.attempts = 1;
    let nk = Nkpacket::builder()
        .protocol("test", TestProto)
        .protocol("echo", Echo)
        .dns(dns)
        .try_build()
        .expect("node");
    (nk, silent)
}

#[tokio::test]
async fn naptr_srv_a_through_the_facade() {
    let (nk, _silent) = node_with_silent_dns();
    let dns = nk.dns().expect("resolver");
    dns.insert_naptr(
        "example.test",
        vec![
            NaptrRecord::new(2, 1, "s", "ECHO+D2U", "", "_echo._udp.example.test"),
            NaptrRecord::new(1, 1, "S", "ECHOS+D2T", "", "_echos._tls.example.test"),
            NaptrRecord::new(1, 2, "s", "ECHO+D2T", "", "_echo._tcp.example.test"),
            NaptrRecord::new(1, 3, "u", "ECHO+D2T", "!x!y!", "ignored.example.test"),
        ],
        TTL,
    );
    dns.insert_srv(
        "_echos._tls.example.test",
        vec![SrvRecord::new(1, 1, 4001, "a.example.test")],
        TTL,
    );
    dns.insert_srv(
        "_echo._tcp.example.test",
        vec![SrvRecord::new(1, 1, 4002, "b.example.test")],
        TTL,
    );
    dns.insert_srv(
        "_echo._udp.example.test",
        vec![SrvRecord::new(1, 1, 4003, "b.example.test")],
        TTL,
    );
    dns.insert_ips("a.example.test", vec![ip("10.0.0.1")], TTL);
    dns.insert_ips("b.example.test", vec![ip("10.0.0.2"), ip("fd00::2")], TTL);

    let d = nk
        .resolve("echo://example.test", &Options::default(), false)
        .await
        .unwrap();
    let got: Vec<_> = d
        .iter()
        .map(|d| (d.transport, d.addr.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            (TransportKind::Tls, "10.0.0.1:4001".to_string()),
            (TransportKind::Tcp, "10.0.0.2:4002".to_string()),
            (TransportKind::Tcp, "[fd00::2]:4002".to_string()),
            (TransportKind::Udp, "10.0.0.2:4003".to_string()),
            (TransportKind::Udp, "[fd00::2]:4003".to_string()),
        ]
    );
    // the host stays the URI's (Host header, TLS server name)
    assert!(
        d.iter()
            .all(|d| d.options.host.as_deref() == Some("example.test"))
    );
    // a transport given: SRV only for it; a port given: A records only
    let d = nk
        .resolve(
            "echo://example.test;transport=tcp",
            &Options::default(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].addr.port(), 4002);
    let d = nk
        .resolve(
            "echo://b.example.test:99;transport=tcp",
            &Options::default(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.addr.port() == 99));
    // listen mode: no NAPTR/SRV, port kept
    let d = nk
        .resolve("echo://b.example.test", &Options::default(), true)
        .await
        .unwrap();
    assert_eq!((d[0].transport, d[0].addr.port()), (TransportKind::Tcp, 0));
    // no SRV: A records with the protocol's default port
    dns.insert_srv("_echo._ws.a.example.test", vec![], TTL);
    let d = nk
        .resolve(
            "echo://a.example.test;transport=ws",
            &Options::default(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].transport, d[0].addr.port()), (TransportKind::Ws, 80));
}

#[tokio::test]
async fn dns_failure_is_a_typed_error_naming_the_query() {
    let (nk, _silent) = node_with_silent_dns();
    let e = nk
        .send(
            "test://nowhere.example.test:5;transport=tcp",
            Bytes::new(),
            Options::default(),
        )
        .await
        .unwrap_err();
    assert!(
        e.code() == "dns_error" && e.to_string().contains("nowhere.example.test"),
        "{e}"
    );
}

/// A dead SRV target (connection refused) falls through to the next one, for `connect` and
/// for `send`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_srv_target_falls_through() {
    let (nk, _silent) = node_with_silent_dns();
    let mut r = Reports::new();
    let l = nk
        .start_listener("test://127.0.0.1:0;transport=tcp", r.opts("l", "none"))
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dns = nk.dns().unwrap();
    dns.insert_srv(
        "_test._tcp.svc.test",
        vec![
            SrvRecord::new(1, 10, dead_port, "dead.svc.test"),
            SrvRecord::new(2, 10, l.info().port(), "live.svc.test"),
        ],
        TTL,
    );
    dns.insert_ips("dead.svc.test", vec![ip("127.0.0.1")], TTL);
    dns.insert_ips("live.svc.test", vec![ip("127.0.0.1")], TTL);
    let c = nk
        .connect("test://svc.test;transport=tcp", Options::default())
        .await
        .unwrap();
    assert_eq!(c.info().remote().port(), l.info().port());
    r.expect("l", "conn_init", is_conn_init).await;
    let c2 = nk
        .send(
            "test://svc.test;transport=tcp",
            Bytes::from_static(b"via srv"),
            Options::default().with_domain("other"),
        )
        .await
        .unwrap();
    assert_eq!(c2.info().remote().port(), l.info().port());
    r.expect("l", "conn_init", is_conn_init).await;
    r.expect("l", "parse", is_parse(b"via srv")).await;
    nk.shutdown().await;
}

/// A node with an echo listener on 127.0.0.1 and, on `[::1]` at the same port, a listener
/// whose backlog is full (new SYNs are never answered); `dual.test` resolves to both, IPv6
/// first. Returns the node, the port, and the sockets keeping the hole open.
async fn dual_stack_with_silent_ipv6() -> (Nkpacket, u16, Vec<socket2::Socket>) {
    use socket2::{Domain, Socket, Type};
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut dns = DnsConfig::with_nameservers(vec![silent.local_addr().unwrap()]);
    dns.prefer_ipv6 = true;
    let nk = Nkpacket::builder()
        .protocol("echo", Echo)
        .dns(dns)
        .try_build()
        .unwrap();
    let l = nk
        .start_listener("echo://127.0.0.1:0;transport=tcp", Options::default())
        .await
        .unwrap();
    let port = l.info().port();
    let v6: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let hole = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
    hole.set_only_v6(true).unwrap();
    hole.bind(&v6.into()).unwrap();
    hole.listen(0).unwrap();
    let mut keep = vec![hole];
    for _ in 0..8 {
        let s = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&v6.into());
        keep.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    nk.dns()
        .unwrap()
        .insert_ips("dual.test", vec![ip("::1"), ip("127.0.0.1")], TTL);
    (nk, port, keep)
}

/// Happy Eyeballs (RFC 8305): a name with an IPv6 address that never answers and an IPv4
/// one that does connects over IPv4 without waiting for the IPv6 attempt to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_eyeballs_races_the_families() {
    let (nk, port, hole) = dual_stack_with_silent_ipv6().await;
    let mut o = Options::default();
    o.connect_timeout = Some(Duration::from_secs(20));
    let c = tokio::time::timeout(
        Duration::from_secs(10),
        nk.connect(format!("echo://dual.test:{port};transport=tcp"), o),
    )
    .await
    .expect("Happy Eyeballs does not wait for the silent IPv6 attempt")
    .unwrap();
    assert_eq!(
        c.info().remote(),
        format!("127.0.0.1:{port}").parse().unwrap()
    );
    drop(hole);
    nk.shutdown().await;
}

/// `send` races the families too when it has to open a connection, and reuses the winner
/// for the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_races_the_families_and_reuses_the_winner() {
    let (nk, port, hole) = dual_stack_with_silent_ipv6().await;
    let mut o = Options::default();
    o.connect_timeout = Some(Duration::from_secs(20));
    let uri = format!("echo://dual.test:{port};transport=tcp");
    let c = tokio::time::timeout(
        Duration::from_secs(10),
        nk.send(uri.as_str(), Bytes::from_static(b"first"), o.clone()),
    )
    .await
    .expect("Happy Eyeballs does not wait for the silent IPv6 attempt")
    .unwrap();
    assert_eq!(
        c.info().remote(),
        format!("127.0.0.1:{port}").parse().unwrap()
    );
    let again = tokio::time::timeout(
        Duration::from_secs(10),
        nk.send(uri.as_str(), Bytes::from_static(b"second"), o),
    )
    .await
    .expect("the live IPv4 connection is reused, without a new race")
    .unwrap();
    assert_eq!(again, c);
    drop(hole);
    nk.shutdown().await;
}
