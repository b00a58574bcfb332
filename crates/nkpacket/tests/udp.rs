//! §13 udp_test items (6–25) and the UDP parts of tcp_test send (36, 41, 42, 47) through the
//! facade, on loopback.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use nkpacket::{
    Destination, Error, Nkpacket, Options, Spec, StopReason, TransportKind, echo::Echo,
};
use support::*;

fn client_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65535];
    let (n, from) = s.recv_from(&mut buf).unwrap();
    buf.truncate(n);
    (buf, from)
}

/// Items 6, 10: a listener from a destination with port 0 takes the protocol's default
/// port if free; listings; stop_all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_basic_listing() {
    let nk = node();
    let l = nk
        .start_listener(
            Destination::new("test", TransportKind::Udp, "0.0.0.0:0".parse().unwrap()),
            Options::default(),
        )
        .await
        .unwrap();
    let port = l.info().port();
    assert_ne!(port, 0);
    assert_eq!(l.info().local(), format!("0.0.0.0:{port}").parse().unwrap());
    assert_eq!(nk.listeners().len(), 1);
    assert_eq!(nk.listener_domains().get("none").map(Vec::len), Some(1));
    assert!(nk.listeners_in("dom1").is_empty());
    assert_eq!(l.info().protocol(), "test");
    // 7: udp_starts_tcp → a TCP listener on the same port, same domain
    // a port free for both UDP and TCP (TIME-WAIT connections can hold a TCP port)
    let free = loop {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("0.0.0.0", p)).is_ok() {
            break p;
        }
    };
    let mut o = Options::default().with_domain("dom2");
    o.udp_starts_tcp = Some(true);
    let u2 = nk
        .start_listener(format!("test://all:{free};transport=udp"), o)
        .await
        .unwrap();
    let dom2 = nk.listeners_in("dom2");
    assert_eq!(dom2.len(), 2);
    let mut kinds: Vec<_> = dom2
        .iter()
        .map(|l| (l.info().transport(), l.info().port()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![(TransportKind::Udp, free), (TransportKind::Tcp, free)]
    );
    // 8: the TCP companion dying takes the UDP listener with it
    let tcp = dom2
        .iter()
        .find(|l| l.info().transport() == TransportKind::Tcp)
        .unwrap()
        .clone();
    tcp.stop().await;
    tokio::time::timeout(Duration::from_secs(2), u2.stopped())
        .await
        .unwrap();
    // 10
    nk.stop_all(Some("none")).await;
    nk.stop_all(Some("dom2")).await;
    assert!(nk.listeners().is_empty());
}

/// Items 11–21: per-peer connections, sends from the listener's port, raw sends, reuse
/// lookups, udp_no_connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_listen() {
    let nk = node();
    let mut r = Reports::new();
    let l = nk
        .start_listener("<test://all:0;transport=udp>", r.opts("l", "dom1"))
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    let port = l.info().port();
    let peer = client_socket();
    let peer_addr = peer.local_addr().unwrap();
    // 12
    peer.send_to(b"test1", ("127.0.0.1", port)).unwrap();
    let conn_info = match r.next().await {
        ("l", Ev::ConnInit(i)) => i,
        other => panic!("{other:?}"),
    };
    r.expect("l", "parse test1", is_parse(b"test1")).await;
    // 13
    assert_eq!(
        conn_info.local(),
        format!("0.0.0.0:{port}").parse().unwrap()
    );
    assert_eq!(conn_info.remote(), peer_addr);
    assert_eq!(conn_info.listen(), Some(l.info().local()));
    assert_eq!(conn_info.id(), l.info().id());
    assert_eq!(conn_info.domain(), "dom1");
    // 17
    let found = nk.find_connections("dom1", "test", TransportKind::Udp, peer_addr);
    assert_eq!(found.len(), 1);
    let conn = found[0].clone();
    assert_eq!(nk.connections_in("dom1"), vec![conn.clone()]);
    // 14: an encoded send reaches the peer from the listener's port
    conn.send(Bytes::from_static(b"test2")).await.unwrap();
    r.expect("l", "encode test2", is_encode(b"test2")).await;
    let (data, from) = recv(&peer);
    assert_eq!((&data[..], from.port()), (&b"test2"[..], port));
    // 15: raw (no encode)
    conn.send(nkpacket::Frame::binary(&b"test3"[..]))
        .await
        .unwrap();
    let (data, from) = recv(&peer);
    assert_eq!((&data[..], from.port()), (&b"test3"[..], port));
    // 16: a datagram from the listener's socket outside any connection
    l.send_datagram(peer_addr, Bytes::from_static(b"test4"))
        .await
        .unwrap();
    let (data, from) = recv(&peer);
    assert_eq!((&data[..], from.port()), (&b"test4"[..], port));
    // a later datagram goes to the same connection
    peer.send_to(b"again", ("127.0.0.1", port)).unwrap();
    r.expect("l", "parse again", is_parse(b"again")).await;
    // 18
    conn.stop_and_wait().await;
    r.expect("l", "conn_stop", is_conn_stop).await;
    assert!(
        nk.find_connections("dom1", "test", TransportKind::Udp, peer_addr)
            .is_empty()
    );
    assert!(nk.connections_in("dom1").is_empty());
    // 19
    l.stop().await;
    r.expect("l", "listen_stop", is_listen_stop).await;
    assert!(nk.listeners().is_empty());
    // 20: udp_no_connections, default port from resolution (or the URI's port)
    let mut o = r.opts("nc", "dom1");
    o.udp_no_connections = Some(true);
    let l2 = nk
        .start_listener("<test://127.0.0.1:0;transport=udp>", o)
        .await
        .unwrap();
    r.expect("nc", "listen_init", is_listen_init).await;
    peer.send_to(b"test5", l2.info().local()).unwrap();
    match r.next().await {
        ("nc", Ev::ListenParse(from, data)) => {
            assert_eq!(from, peer_addr);
            assert_eq!(&data[..], b"test5");
        }
        other => panic!("{other:?}"),
    }
    assert!(nk.connections().is_empty());
    // 21
    l2.stop().await;
    r.expect("nc", "listen_stop", is_listen_stop).await;
    r.none_pending().await;
}

/// Items 22–25: STUN on shared ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_stun() {
    let nk = node();
    let mut r = Reports::new();
    let mut o1 = r.opts("s1", "d");
    o1.udp_no_connections = Some(true);
    let l1 = nk
        .start_listener("test://127.0.0.1:0;transport=udp;stun", o1)
        .await
        .unwrap();
    r.expect("s1", "listen_init", is_listen_init).await;
    let mut o2 = r.opts("s2", "d");
    o2.udp_no_connections = Some(true);
    let l2 = nk
        .start_listener("test://127.0.0.1:0;transport=udp", o2)
        .await
        .unwrap();
    r.expect("s2", "listen_init", is_listen_init).await;
    // 22: a Binding request is answered, not passed to listen_parse
    let client = client_socket();
    let (tid, req) = nkp_stun_request();
    client.send_to(&req, l1.info().local()).unwrap();
    let (resp, _) = recv(&client);
    let msg = nkpacket_stun_decode(&resp);
    assert_eq!(msg.0, tid);
    assert_eq!(msg.1, client.local_addr().unwrap());
    // 23: without udp_stun_reply it is data
    client.send_to(&req, l2.info().local()).unwrap();
    match r.next().await {
        ("s2", Ev::ListenParse(_, data)) => assert_eq!(&data[..2], &[0x00, 0x01]),
        other => panic!("{other:?}"),
    }
    // 24: a query from listener 2's socket to listener 1: the mapping is listener 2's
    let mapped = nk.stun_query(&l2, l1.info().local()).await.unwrap();
    assert_eq!(mapped, l2.info().local());
    // 25
    l1.stop().await;
    l2.stop().await;
    let got = r.collect(2, 1.0).await;
    assert!(got.iter().all(|(_, e)| is_listen_stop(e)), "{got:?}");
    r.none_pending().await;
    // the standalone STUN server protocol
    let s = nk
        .start_listener("stun://127.0.0.1:0", Options::default())
        .await
        .unwrap();
    client.send_to(&req, s.info().local()).unwrap();
    let (resp, _) = recv(&client);
    assert_eq!(nkpacket_stun_decode(&resp).1, client.local_addr().unwrap());
    nk.shutdown().await;
}

fn nkp_stun_request() -> (Vec<u8>, Vec<u8>) {
    // RFC 5389 Binding request: type 0x0001, length 0, magic cookie, transaction id.
    let tid: Vec<u8> = (1..=12).collect();
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(&tid);
    (tid, req)
}

/// (transaction id, XOR-MAPPED-ADDRESS) of a Binding success response.
fn nkpacket_stun_decode(resp: &[u8]) -> (Vec<u8>, SocketAddr) {
    assert_eq!(&resp[..2], &[0x01, 0x01], "a Binding success response");
    let tid = resp[8..20].to_vec();
    let mut i = 20;
    while i + 4 <= resp.len() {
        let typ = u16::from_be_bytes([resp[i], resp[i + 1]]);
        let len = u16::from_be_bytes([resp[i + 2], resp[i + 3]]) as usize;
        let v = &resp[i + 4..i + 4 + len];
        if typ == 0x0020 && v[1] == 0x01 {
            let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
            let ip = [v[4] ^ 0x21, v[5] ^ 0x12, v[6] ^ 0xa4, v[7] ^ 0x42];
            return (tid, SocketAddr::from((ip, port)));
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    panic!("no XOR-MAPPED-ADDRESS");
}

/// Items 36–47 (UDP parts): udp_too_large, UDP → TCP on the same port, reuse of that TCP
/// connection, listeners stopping everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_to_tcp() {
    let nk = node();
    let mut r = Reports::new();
    // 36
    let mut o1 = r.opts("l1", "dom1");
    o1.udp_starts_tcp = Some(true);
    let l1 = nk
        .start_listener("test://127.0.0.1:0;transport=udp", o1)
        .await
        .unwrap();
    let mut o2 = r.opts("l2", "dom2");
    o2.udp_starts_tcp = Some(true);
    o2.idle_timeout = Some(Duration::from_millis(1000));
    o2.tcp_packet = Some(nkpacket::Framing::Prefix4);
    let l2 = nk
        .start_listener("test://127.0.0.1:0;transport=udp", o2)
        .await
        .unwrap();
    let got = r.collect(4, 1.0).await;
    assert!(got.iter().all(|(_, e)| is_listen_init(e)), "{got:?}");
    let p2 = l2.info().port();
    let a2: SocketAddr = format!("127.0.0.1:{p2}").parse().unwrap();
    let big = Bytes::from(vec![b'x'; 5000]);
    // 41: too large, no udp_to_tcp
    let mut o = r.opts("c", "dom1");
    o.udp_max_size = Some(1500);
    o.base_listener = Some(true);
    let e = nk
        .send(
            Spec::Connect(Destination::new("test", TransportKind::Udp, a2)),
            big.clone(),
            o,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::UdpTooLarge {
                size: 5000,
                max: 1500
            }
        ),
        "{e}"
    );
    // the per-peer UDP connection was made from listener 1's socket (it carries the
    // caller's user state); nothing reached the server
    match r.next().await {
        ("c", Ev::ConnInit(i)) => {
            assert_eq!(i.remote(), a2);
            assert_eq!(i.local(), l1.info().local());
            assert_eq!(i.listen(), Some(l1.info().local()));
        }
        other => panic!("{other:?}"),
    }
    r.expect(
        "c",
        "encode of the big message",
        |e| matches!(e, Ev::Encode(b) if b.len() == 5000),
    )
    .await;
    r.none_pending().await;
    // 42: with udp_to_tcp the message goes over TCP to the same ip:port
    let mut o = r.opts("c", "dom1");
    o.udp_max_size = Some(1500);
    o.udp_to_tcp = Some(true);
    o.tcp_packet = Some(nkpacket::Framing::Prefix4);
    o.base_listener = Some(true);
    let c = nk
        .send(
            Destination::new("test", TransportKind::Udp, a2),
            big.clone(),
            o,
        )
        .await
        .unwrap();
    assert_eq!(c.info().transport(), TransportKind::Tcp);
    assert_eq!(c.info().remote(), a2);
    // client: encode (UDP, too large), conn_init + encode (TCP); server: conn_init + parse
    let got = r.collect(5, 2.0).await;
    let summary: Vec<String> = got
        .iter()
        .map(|(t, e)| {
            format!(
                "{t}:{}",
                format!("{e:?}").chars().take(12).collect::<String>()
            )
        })
        .collect();
    assert!(
        got.iter()
            .any(|(t, e)| *t == "l2" && matches!(e, Ev::Parse(f) if f.payload() == &big[..])),
        "{summary:?}"
    );
    assert_eq!(
        got.iter()
            .filter(|(t, e)| *t == "c" && matches!(e, Ev::Encode(_)))
            .count(),
        2,
        "{summary:?}"
    );
    // 43: a TCP send to the same place reuses it
    let mut o = r.opts("c", "dom1");
    o.tcp_packet = Some(nkpacket::Framing::Prefix4);
    let c2 = nk
        .send(
            Destination::new("test", TransportKind::Tcp, a2),
            Bytes::from_static(b"msg2"),
            o,
        )
        .await
        .unwrap();
    assert_eq!(c2, c);
    r.expect("c", "encode msg2", is_encode(b"msg2")).await;
    r.expect("l2", "parse msg2", is_parse(b"msg2")).await;
    // 47: stopping the listeners stops everything
    l1.stop().await;
    l2.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(nk.listeners().is_empty());
    assert!(nk.connections().is_empty(), "{:?}", nk.connections());
    // conn_stop: the UDP client connection and the TCP client (built on listener 1) for
    // "c", the TCP server connection for "l2"; listen_stop ×2 per listener pair
    // (a client may also report `peer_closed` first, depending on which side ends first)
    let mut got = Vec::new();
    while got.len() < 3 + 4 {
        let ev = r.next_within(2.0).await;
        if !matches!(ev.1, Ev::PeerClosed) {
            got.push(ev);
        }
    }
    let stops = |tag: &str| {
        got.iter()
            .filter(|(t, e)| *t == tag && matches!(e, Ev::ConnStop(..)))
            .count()
    };
    assert_eq!((stops("c"), stops("l2")), (2, 1));
    assert!(
        got.iter()
            .any(|(_, e)| matches!(e, Ev::ConnStop(StopReason::ListenerStopped, _)))
    );
    assert_eq!(got.iter().filter(|(_, e)| is_listen_stop(e)).count(), 4);
}

/// Many peers at once, each getting only its own replies; IPv6; a burst without loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peers_ipv6_and_bursts() {
    let nk = Nkpacket::builder().protocol("echo", Echo).build();
    for host in ["127.0.0.1", "[::1]"] {
        let l = nk
            .start_listener(format!("echo://{host}:0;transport=udp"), Options::default())
            .await
            .unwrap();
        let target = l.info().local();
        let mut peers = Vec::new();
        for i in 0..100 {
            let bind = if target.is_ipv6() {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            };
            let s = tokio::net::UdpSocket::bind(bind).await.unwrap();
            s.send_to(format!("peer {i}").as_bytes(), target)
                .await
                .unwrap();
            peers.push(s);
        }
        for (i, s) in peers.iter().enumerate() {
            let mut buf = [0u8; 64];
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(from, target);
            assert_eq!(&buf[..n], format!("peer {i}").as_bytes());
        }
        assert_eq!(nk.connections().len(), 100);
        // bursts of 100 datagrams from one peer (the client's own receive buffer bounds the
        // window): every datagram echoed
        let s = &peers[0];
        let mut seen = vec![false; 2000];
        for window in 0..20u32 {
            for i in window * 100..(window + 1) * 100 {
                s.send_to(&i.to_be_bytes(), target).await.unwrap();
            }
            for _ in 0..100 {
                let mut buf = [0u8; 8];
                let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(n, 4);
                seen[u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
        l.stop().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(nk.connections().is_empty());
    }
    nk.shutdown().await;
}

/// Idle UDP connections expire; without a listener a UDP send needs `udp_ephemeral`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_expiry_and_ephemeral() {
    let nk = Nkpacket::builder().protocol("echo", Echo).build();
    let l = nk
        .start_listener(
            "echo://127.0.0.1:0;transport=udp;idle_timeout=200",
            Options::default(),
        )
        .await
        .unwrap();
    let peer = client_socket();
    peer.send_to(b"hi", l.info().local()).unwrap();
    recv(&peer);
    assert_eq!(nk.connections().len(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(nk.connections().is_empty());
    // client node without listeners: refused, unless ephemeral
    let client = Nkpacket::builder().protocol("echo", Echo).build();
    let uri = format!("echo://{};transport=udp", l.info().local());
    let e = client
        .send(uri.as_str(), Bytes::from_static(b"x"), Options::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "no_listening_transport");
    let mut o = Options::default();
    o.udp_ephemeral = Some(true);
    let c = client
        .send(uri.as_str(), Bytes::from_static(b"x"), o)
        .await
        .unwrap();
    assert_ne!(c.info().local().port(), l.info().port());
    client.shutdown().await;
    nk.shutdown().await;
}

/// External address discovery through STUN servers (opt-in), tried in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_external_address() {
    let server_node = Nkpacket::default();
    let stun = server_node
        .start_listener("stun://127.0.0.1:0", Options::default())
        .await
        .unwrap();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nk = Nkpacket::default();
    assert_eq!(nk.external_address(), None);
    // no UDP listener yet
    let e = nk
        .discover_external(&[stun.info().local()])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "no_listening_transport");
    let mut o = Options::default();
    o.udp_stun_t1 = Some(Duration::from_millis(20));
    let l = nk.start_listener("stun://127.0.0.1:0", o).await.unwrap();
    let found = nk
        .discover_external(&[silent.local_addr().unwrap(), stun.info().local()])
        .await
        .unwrap();
    assert_eq!(found, l.info().local());
    assert_eq!(nk.external_address(), Some(found));
    nk.shutdown().await;
    server_node.shutdown().await;
}
