//! Loopback tests of the UDP transport (IPv4 and IPv6, batched and plain I/O).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nkp_core::{
    Accepted, BoxLink, ConnectRequest, Error, Frame, ListenRequest, Listener, Options, Transport,
    TransportKind,
};
use nkp_udp::{DatagramInterceptor, Intercept, UdpListener, UdpTransport};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);
const MODES: [bool; 2] = [true, false];

fn udp(batched: bool) -> UdpTransport {
    UdpTransport::new().with_batched_io(batched)
}

fn opts() -> Arc<Options> {
    Arc::new(Options::new())
}

async fn bind(t: &UdpTransport, addr: &str, o: Options) -> UdpListener {
    t.bind(addr.parse().unwrap(), Arc::new(o)).await.unwrap()
}

async fn client(addr: &str) -> UdpSocket {
    UdpSocket::bind(addr).await.unwrap()
}

async fn next_item(l: &mut UdpListener) -> Accepted {
    timeout(T, l.next())
        .await
        .expect("listener timed out")
        .expect("listener ended")
        .expect("listener error")
}

async fn next_link(l: &mut UdpListener) -> BoxLink {
    match next_item(l).await {
        Accepted::Link(link) => link,
        other => panic!("expected a link, got {other:?}"),
    }
}

async fn next_data(link: &mut BoxLink) -> Bytes {
    match timeout(T, link.next()).await.expect("link timed out") {
        Some(Ok(Frame::Binary(b))) => b,
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

async fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = timeout(T, sock.recv_from(&mut buf))
        .await
        .expect("client recv timed out")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

/// Nothing arrives within a short while.
async fn assert_quiet(sock: &UdpSocket) {
    let mut buf = [0u8; 64];
    let r = timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await;
    assert!(r.is_err(), "unexpected datagram: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_peer_yields_link_and_replies_leave_from_listener_port() {
    for batched in MODES {
        let mut l = bind(&udp(batched), "127.0.0.1:0", Options::new()).await;
        assert_eq!(l.is_batched(), batched && cfg!(target_os = "linux"));
        let server = l.local_addr();
        let c = client("127.0.0.1:0").await;
        c.send_to(b"test1", server).await.unwrap();

        let mut link = next_link(&mut l).await;
        let info = link.info().clone();
        assert_eq!(info.transport, TransportKind::Udp);
        assert_eq!(info.local, server);
        assert_eq!(info.remote, c.local_addr().unwrap());
        assert_eq!(&next_data(&mut link).await[..], b"test1");

        c.send_to(b"again", server).await.unwrap();
        assert_eq!(&next_data(&mut link).await[..], b"again");

        link.send(Frame::binary(&b"test2"[..])).await.unwrap();
        assert_eq!(recv(&c).await, (b"test2".to_vec(), server));

        // Text goes out as UTF-8; control frames are ignored.
        link.send(Frame::Ping(Bytes::from_static(b"p")))
            .await
            .unwrap();
        link.send(Frame::text("héllo")).await.unwrap();
        assert_eq!(recv(&c).await, ("héllo".as_bytes().to_vec(), server));
        assert_eq!(l.links(), 1);
        assert_eq!(l.stats().links_created, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_peers_each_get_only_their_replies() {
    let mut l = bind(&udp(true), "127.0.0.1:0", Options::new()).await;
    let server = l.local_addr();
    let echo = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let mut link = next_link(&mut l).await;
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(f)) = link.next().await {
                    let mut reply = b"echo ".to_vec();
                    reply.extend_from_slice(f.payload());
                    link.send(Frame::binary(reply)).await.unwrap();
                }
            }));
        }
        (l, tasks)
    });

    let mut clients = Vec::new();
    for _ in 0..200 {
        clients.push(client("127.0.0.1:0").await);
    }
    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("peer-{i}-{round}").as_bytes(), server)
                .await
                .unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let (data, from) = recv(c).await;
            assert_eq!(from, server);
            assert_eq!(data, format!("echo peer-{i}-{round}").into_bytes());
        }
    }
    let (l, _tasks) = timeout(T, echo).await.unwrap().unwrap();
    assert_eq!(l.links(), 200);
    assert_eq!(l.stats().links_created, 200);
    assert_eq!(l.stats().received, 600);
    // Nobody got anything extra.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut buf = [0u8; 64];
    for c in &clients {
        assert!(c.try_recv_from(&mut buf).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connections_yields_datagrams_and_no_links() {
    for batched in MODES {
        let mut o = Options::new();
        o.udp_no_connections = Some(true);
        let mut l = bind(&udp(batched), "127.0.0.1:0", o).await;
        let server = l.local_addr();
        let (a, b) = (client("127.0.0.1:0").await, client("127.0.0.1:0").await);
        a.send_to(b"test5", server).await.unwrap();
        b.send_to(b"from b", server).await.unwrap();
        a.send_to(b"a again", server).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            match next_item(&mut l).await {
                Accepted::Datagram { remote, data } => got.push((remote, data.to_vec())),
                other => panic!("expected a datagram, got {other:?}"),
            }
        }
        got.sort();
        let mut want = vec![
            (a.local_addr().unwrap(), b"test5".to_vec()),
            (b.local_addr().unwrap(), b"from b".to_vec()),
            (a.local_addr().unwrap(), b"a again".to_vec()),
        ];
        want.sort();
        assert_eq!(got, want);
        assert_eq!(l.links(), 0);
        assert_eq!(l.stats().links_created, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_datagrams_fail_with_udp_too_large() {
    for batched in MODES {
        let t = udp(batched);
        let mut l = bind(&t, "127.0.0.1:0", Options::new()).await;
        let server = l.local_addr();
        let c = client("127.0.0.1:0").await;
        c.send_to(b"hi", server).await.unwrap();
        let mut link = next_link(&mut l).await;

        match link.send(Frame::binary(vec![7u8; 1301])).await {
            Err(Error::UdpTooLarge {
                size: 1301,
                max: 1300,
            }) => {}
            other => panic!("expected UdpTooLarge, got {other:?}"),
        }
        link.send(Frame::binary(vec![7u8; 1300])).await.unwrap();
        let (data, from) = recv(&c).await;
        assert_eq!((data.len(), from), (1300, server));

        // The listener's udp_max_size applies to the links it creates.
        let mut o = Options::new();
        o.udp_max_size = Some(500);
        let mut l2 = bind(&t, "127.0.0.1:0", o).await;
        c.send_to(b"hi", l2.local_addr()).await.unwrap();
        let mut link2 = next_link(&mut l2).await;
        assert!(matches!(
            link2.send(Frame::binary(vec![0u8; 501])).await,
            Err(Error::UdpTooLarge {
                size: 501,
                max: 500
            })
        ));
        link2.send(Frame::binary(vec![0u8; 500])).await.unwrap();
        assert_eq!(recv(&c).await.0.len(), 500);

        // open() takes the caller's udp_max_size.
        let mut o = Options::new();
        o.udp_max_size = Some(2000);
        let mut opened = l.open(c.local_addr().unwrap(), Arc::new(o)).await.unwrap();
        opened.send(Frame::binary(vec![1u8; 1500])).await.unwrap();
        assert_eq!(recv(&c).await, (vec![1u8; 1500], server));
        assert!(matches!(
            opened.send(Frame::binary(vec![1u8; 2001])).await,
            Err(Error::UdpTooLarge {
                size: 2001,
                max: 2000
            })
        ));
        assert_eq!(
            Error::UdpTooLarge { size: 1, max: 0 }.code(),
            "udp_too_large"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_thousand_byte_datagrams_when_allowed() {
    for batched in MODES {
        let mut o = Options::new();
        o.udp_max_size = Some(65_000);
        let mut l = bind(&udp(batched), "127.0.0.1:0", o).await;
        let server = l.local_addr();
        let c = client("127.0.0.1:0").await;
        let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        c.send_to(&big, server).await.unwrap();
        let mut link = next_link(&mut l).await;
        assert_eq!(next_data(&mut link).await.to_vec(), big);
        link.send(Frame::binary(big.clone())).await.unwrap();
        assert_eq!(recv(&c).await, (big.clone(), server));
        // The OS limit is reported as UdpTooLarge too (here through send_datagram, which
        // has no size check of its own).
        match l.send_to(c.local_addr().unwrap(), &vec![0u8; 70_000]).await {
            Err(Error::UdpTooLarge { size: 70_000, .. }) => {}
            other => panic!("expected UdpTooLarge from the OS, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback() {
    for batched in MODES {
        let mut l = bind(&udp(batched), "[::1]:0", Options::new()).await;
        let server = l.local_addr();
        assert!(server.is_ipv6());
        let c = client("[::1]:0").await;
        c.send_to(b"v6", server).await.unwrap();
        let mut link = next_link(&mut l).await;
        assert_eq!(link.info().remote, c.local_addr().unwrap());
        assert_eq!(&next_data(&mut link).await[..], b"v6");
        link.send(Frame::binary(&b"v6 reply"[..])).await.unwrap();
        assert_eq!(recv(&c).await, (b"v6 reply".to_vec(), server));

        // IPv6-only: an IPv4 peer cannot be opened on it.
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(l.open(v4, opts()).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_5000_from_one_peer_loses_nothing() {
    const N: u32 = 5000;
    for batched in MODES {
        // The socket side must keep up by itself (buffer sizing, batching): every datagram
        // is read from the socket (`received`). The link queue is sized for the whole burst
        // so that the count does not depend on how the OS schedules the consuming task on
        // a busy machine (the default queue drops and counts beyond 1024 unread).
        let t = udp(batched).with_link_queue(N as usize);
        let mut l = bind(&t, "127.0.0.1:0", Options::new()).await;
        let server = l.local_addr();
        let c = client("127.0.0.1:0").await;
        c.send_to(b"start", server).await.unwrap();
        let mut link = next_link(&mut l).await;
        assert_eq!(&next_data(&mut link).await[..], b"start");

        let reader = tokio::spawn(async move {
            let mut seen = HashSet::new();
            while seen.len() < N as usize {
                let d = next_data(&mut link).await;
                let n = u32::from_be_bytes(d[..4].try_into().unwrap());
                assert_eq!(d.len(), 200);
                assert!(seen.insert(n), "datagram {n} twice");
            }
            seen
        });
        let mut payload = vec![0xabu8; 200];
        for i in 0..N {
            payload[..4].copy_from_slice(&i.to_be_bytes());
            c.send_to(&payload, server).await.unwrap();
        }
        let seen = reader.await.unwrap();
        assert_eq!(seen.len(), N as usize);
        let s = l.stats();
        assert_eq!(s.received, u64::from(N) + 1);
        assert_eq!(s.dropped_queue_full, 0);
    }
}

/// Answers `ping` with `pong`, swallows `eat`, passes the rest.
struct TestInterceptor(AtomicUsize);

impl DatagramInterceptor for TestInterceptor {
    fn intercept(&self, data: &[u8], _from: SocketAddr, _local: SocketAddr) -> Intercept {
        self.0.fetch_add(1, Ordering::Relaxed);
        match data {
            b"ping" => Intercept::Reply(Bytes::from_static(b"pong")),
            b"eat" => Intercept::Consumed,
            _ => Intercept::Pass,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interceptor_replies_consumes_and_passes_every_datagram() {
    for batched in MODES {
        for no_conn in [false, true] {
            let seen = Arc::new(TestInterceptor(AtomicUsize::new(0)));
            let hook = seen.clone();
            let t = udp(batched).with_interceptor(Arc::new(move |o: &Options| {
                (o.udp_stun_reply == Some(true))
                    .then(|| hook.clone() as Arc<dyn DatagramInterceptor>)
            }));
            let mut o = Options::new();
            o.udp_stun_reply = Some(true);
            o.udp_no_connections = Some(no_conn);
            let mut l = bind(&t, "127.0.0.1:0", o).await;
            let server = l.local_addr();
            let c = client("127.0.0.1:0").await;

            c.send_to(b"eat", server).await.unwrap();
            c.send_to(b"ping", server).await.unwrap();
            assert_eq!(recv(&c).await, (b"pong".to_vec(), server));
            // A burst: every datagram is checked, not only the first of a wake-up.
            for _ in 0..100 {
                c.send_to(b"ping", server).await.unwrap();
            }
            for _ in 0..100 {
                assert_eq!(recv(&c).await, (b"pong".to_vec(), server));
            }
            c.send_to(b"hello", server).await.unwrap();
            match next_item(&mut l).await {
                Accepted::Link(mut link) if !no_conn => {
                    assert_eq!(&next_data(&mut link).await[..], b"hello");
                }
                Accepted::Datagram { data, .. } if no_conn => assert_eq!(&data[..], b"hello"),
                other => panic!("unexpected {other:?}"),
            }
            // "eat" and "hello" got no reply.
            assert_quiet(&c).await;
            assert_eq!(seen.0.load(Ordering::Relaxed), 103);
            assert_eq!(l.stats().intercepted, 102);
        }
    }

    // No interceptor for a listener whose options do not ask for one.
    let t = udp(true).with_interceptor(Arc::new(|o: &Options| {
        (o.udp_stun_reply == Some(true))
            .then(|| Arc::new(TestInterceptor(AtomicUsize::new(0))) as Arc<dyn DatagramInterceptor>)
    }));
    let mut l = bind(&t, "127.0.0.1:0", Options::new()).await;
    let c = client("127.0.0.1:0").await;
    c.send_to(b"ping", l.local_addr()).await.unwrap();
    let mut link = next_link(&mut l).await;
    assert_eq!(&next_data(&mut link).await[..], b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_empty_datagrams_are_delivered_and_harmless() {
    for batched in MODES {
        let mut o = Options::new();
        o.udp_max_size = Some(65_507);
        let mut l = bind(&udp(batched), "127.0.0.1:0", o).await;
        let server = l.local_addr();
        let c = client("127.0.0.1:0").await;
        c.send_to(b"", server).await.unwrap();
        let mut link = next_link(&mut l).await;
        assert!(next_data(&mut link).await.is_empty());

        let mut state = 0x1234_5678u32;
        let mut sent = Vec::new();
        for len in [1usize, 2, 17, 1300, 4096, 9000, 65_507, 0, 3] {
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            c.send_to(&d, server).await.unwrap();
            sent.push(d);
        }
        for d in &sent {
            assert_eq!(&next_data(&mut link).await[..], &d[..]);
        }
        // An empty reply is a datagram too.
        link.send(Frame::binary(Bytes::new())).await.unwrap();
        assert_eq!(recv(&c).await, (Vec::new(), server));

        // Still serving new peers.
        let c2 = client("127.0.0.1:0").await;
        c2.send_to(b"\xff\x00\xfe", server).await.unwrap();
        let mut link2 = next_link(&mut l).await;
        assert_eq!(&next_data(&mut link2).await[..], b"\xff\x00\xfe");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_link_removes_its_entry() {
    for batched in MODES {
        let mut l = bind(&udp(batched), "127.0.0.1:0", Options::new()).await;
        let server = l.local_addr();
        let c = client("127.0.0.1:0").await;
        c.send_to(b"one", server).await.unwrap();
        let mut link = next_link(&mut l).await;
        assert_eq!(&next_data(&mut link).await[..], b"one");
        assert_eq!(l.links(), 1);
        drop(link);
        assert_eq!(l.links(), 0);

        c.send_to(b"two", server).await.unwrap();
        let mut link = next_link(&mut l).await;
        assert_eq!(&next_data(&mut link).await[..], b"two");
        assert_eq!(l.links(), 1);
        assert_eq!(l.stats().links_created, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reaches_a_peer_and_gets_its_replies() {
    for batched in MODES {
        let mut l = bind(&udp(batched), "127.0.0.1:0", Options::new()).await;
        let server = l.local_addr();
        let peer = client("127.0.0.1:0").await;
        let peer_addr = peer.local_addr().unwrap();

        let mut link = l.open(peer_addr, opts()).await.unwrap();
        assert_eq!(link.info().local, server);
        assert_eq!(link.info().remote, peer_addr);
        link.send(Frame::binary(&b"hello peer"[..])).await.unwrap();
        let (data, from) = recv(&peer).await;
        assert_eq!((data, from), (b"hello peer".to_vec(), server));

        peer.send_to(b"reply", server).await.unwrap();
        assert_eq!(&next_data(&mut link).await[..], b"reply");
        // The reply went to the opened link, not to a new accepted one.
        assert!(
            timeout(Duration::from_millis(200), l.next()).await.is_err(),
            "no new link expected"
        );

        // A second open for the same remote replaces the first in the table.
        let mut second = l.open(peer_addr, opts()).await.unwrap();
        assert_eq!(l.links(), 1);
        peer.send_to(b"to second", server).await.unwrap();
        assert_eq!(&next_data(&mut second).await[..], b"to second");
        // The replaced link receives nothing more: its stream ends.
        assert!(timeout(T, link.next()).await.unwrap().is_none());
        // It can still send.
        link.send(Frame::binary(&b"old"[..])).await.unwrap();
        assert_eq!(recv(&peer).await, (b"old".to_vec(), server));
        // Dropping the replaced link does not remove the new entry.
        drop(link);
        assert_eq!(l.links(), 1);
        drop(second);
        assert_eq!(l.links(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_datagram_leaves_from_the_listener_socket() {
    for batched in MODES {
        let l: Box<dyn Listener> = udp(batched)
            .listen(ListenRequest {
                transport: TransportKind::Udp,
                addr: "127.0.0.1:0".parse().unwrap(),
                options: opts(),
            })
            .await
            .unwrap();
        let server = l.local_addr();
        let peer = client("127.0.0.1:0").await;
        l.send_datagram(peer.local_addr().unwrap(), Bytes::from_static(b"test4"))
            .await
            .unwrap();
        assert_eq!(recv(&peer).await, (b"test4".to_vec(), server));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fed_frames_go_out_together_as_separate_datagrams() {
    for batched in MODES {
        let l = bind(&udp(batched), "127.0.0.1:0", Options::new()).await;
        let server = l.local_addr();
        let peer = client("127.0.0.1:0").await;
        let mut link = l.open(peer.local_addr().unwrap(), opts()).await.unwrap();
        // Ten equal datagrams and a shorter last one: one GSO run when supported.
        let mut sent = Vec::new();
        for i in 0..11u8 {
            let d = vec![i; if i == 10 { 300 } else { 1000 }];
            link.feed(Frame::binary(d.clone())).await.unwrap();
            sent.push(d);
        }
        // Mixed sizes that cannot share a run.
        for len in [50usize, 1200, 0, 50] {
            let d = vec![0xee; len];
            link.feed(Frame::binary(d.clone())).await.unwrap();
            sent.push(d);
        }
        link.flush().await.unwrap();
        for d in &sent {
            assert_eq!(recv(&peer).await, (d.clone(), server));
        }
        if batched && cfg!(target_os = "linux") {
            // Loopback takes GSO sends: nothing made us turn it off.
            assert!(l.gso_enabled());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_listener_ends_its_links_and_frees_the_port() {
    for batched in MODES {
        let t = udp(batched);
        let mut l = bind(&t, "127.0.0.1:0", Options::new()).await;
        let server = l.local_addr();
        let c = client("127.0.0.1:0").await;
        c.send_to(b"x", server).await.unwrap();
        let mut link = next_link(&mut l).await;
        assert_eq!(&next_data(&mut link).await[..], b"x");
        drop(l);
        assert!(timeout(T, link.next()).await.unwrap().is_none());
        assert!(matches!(
            link.send(Frame::binary(&b"late"[..])).await,
            Err(Error::Closed(_))
        ));
        // The port is free again once the receive task is gone.
        let mut rebound = None;
        for _ in 0..50 {
            match t.bind(server, opts()).await {
                Ok(l) => {
                    rebound = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        assert_eq!(rebound.expect("port not freed").local_addr(), server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_connect_only_when_asked() {
    let t = udp(true);
    let peer = client("127.0.0.1:0").await;
    let peer_addr = peer.local_addr().unwrap();
    let req = |o: Options| ConnectRequest {
        transport: TransportKind::Udp,
        remote: peer_addr,
        options: Arc::new(o),
    };
    match t.connect(req(Options::new())).await {
        Err(Error::NoListeningTransport { family: "IPv4", .. }) => {}
        other => panic!(
            "expected NoListeningTransport, got {:?}",
            other.map(|l| l.info().clone())
        ),
    }
    let mut o = Options::new();
    o.udp_ephemeral = Some(true);
    let mut link = t.connect(req(o)).await.unwrap();
    let local = link.info().local;
    assert_eq!(link.info().remote, peer_addr);
    assert_ne!(local.port(), 0);
    link.send(Frame::binary(&b"eph"[..])).await.unwrap();
    let (data, from) = recv(&peer).await;
    assert_eq!((data, from.port()), (b"eph".to_vec(), local.port()));
    peer.send_to(b"eph reply", from).await.unwrap();
    assert_eq!(&next_data(&mut link).await[..], b"eph reply");
    assert!(matches!(
        link.send(Frame::binary(vec![0u8; 1301])).await,
        Err(Error::UdpTooLarge { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_transport_and_busy_port_are_errors() {
    let t = udp(true);
    let bad = t
        .listen(ListenRequest {
            transport: TransportKind::Tcp,
            addr: "127.0.0.1:0".parse().unwrap(),
            options: opts(),
        })
        .await;
    assert!(matches!(bad, Err(Error::InvalidTransport(_))));
    let l = bind(&t, "127.0.0.1:0", Options::new()).await;
    match t.bind(l.local_addr(), opts()).await {
        Err(e) => assert_eq!(e.code(), "eaddrinuse"),
        Ok(_) => panic!("second bind on the same port must fail (no address reuse)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_drops_and_counts_without_blocking_others() {
    for batched in MODES {
        let t = udp(batched).with_link_queue(4);
        let mut l = bind(&t, "127.0.0.1:0", Options::new()).await;
        let server = l.local_addr();
        let slow = client("127.0.0.1:0").await;
        slow.send_to(b"0", server).await.unwrap();
        let mut slow_link = next_link(&mut l).await; // never read until the end
        for i in 1..10u8 {
            slow.send_to(&[i], server).await.unwrap();
        }
        // Another peer is served meanwhile.
        let fast = client("127.0.0.1:0").await;
        fast.send_to(b"fast", server).await.unwrap();
        let mut fast_link = next_link(&mut l).await;
        assert_eq!(&next_data(&mut fast_link).await[..], b"fast");

        timeout(T, async {
            while l.stats().received < 11 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(l.stats().dropped_queue_full, 6);
        // The four queued ones are the first four.
        assert_eq!(&next_data(&mut slow_link).await[..], b"0");
        for i in 1..4u8 {
            assert_eq!(&next_data(&mut slow_link).await[..], &[i]);
        }
    }
}
