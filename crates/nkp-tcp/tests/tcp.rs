//! Integration tests of the TCP transport over real loopback sockets (IPv4 and IPv6).

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nkp_core::{
    Accepted, BoxLink, BoxListener, ConnectRequest, Error, Frame, Framing, ListenRequest, Options,
    Transport, TransportKind,
};
use nkp_tcp::{TcpStreamListener, TcpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Generous bound for things that must happen (never a performance assertion).
const WAIT: Duration = Duration::from_secs(20);

fn v4() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn v6() -> SocketAddr {
    "[::1]:0".parse().unwrap()
}

fn opts(framing: Framing) -> Arc<Options> {
    Arc::new(Options::default().with_framing(framing))
}

async fn listen(addr: SocketAddr, options: Arc<Options>) -> BoxListener {
    TcpTransport::default()
        .listen(ListenRequest {
            transport: TransportKind::Tcp,
            addr,
            options,
        })
        .await
        .unwrap()
}

async fn connect(remote: SocketAddr, options: Arc<Options>) -> Result<BoxLink, Error> {
    TcpTransport::default()
        .connect(ConnectRequest {
            transport: TransportKind::Tcp,
            remote,
            options,
        })
        .await
}

async fn next_link(listener: &mut BoxListener) -> BoxLink {
    match tokio::time::timeout(WAIT, listener.next()).await {
        Ok(Some(Ok(Accepted::Link(link)))) => link,
        other => panic!("expected a link, got {other:?}"),
    }
}

async fn next_frame(link: &mut BoxLink) -> Option<Result<Frame, Error>> {
    tokio::time::timeout(WAIT, link.next())
        .await
        .expect("no frame in time")
}

/// Echoes every frame until the peer closes (or the link fails).
async fn echo(mut link: BoxLink) {
    while let Some(Ok(frame)) = link.next().await {
        if link.send(frame).await.is_err() {
            break;
        }
    }
}

/// Accepts forever, echoing on each link in its own task.
fn spawn_echo_server(mut listener: BoxListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(item) = listener.next().await {
            if let Ok(Accepted::Link(link)) = item {
                tokio::spawn(echo(link));
            }
        }
    })
}

fn data(frame: Frame) -> Bytes {
    frame.into_data().expect("a data frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_ipv4_and_ipv6_with_every_framing() {
    for bind in [v4(), v6()] {
        for framing in [
            Framing::Raw,
            Framing::Prefix1,
            Framing::Prefix2,
            Framing::Prefix4,
        ] {
            let options = opts(framing.clone());
            let mut listener = listen(bind, options.clone()).await;
            let addr = listener.local_addr();
            assert_eq!(addr.ip(), bind.ip());
            assert_ne!(addr.port(), 0);

            let mut client = connect(addr, options.clone()).await.unwrap();
            let server = next_link(&mut listener).await;

            // Addresses are the real socket names on both sides.
            assert_eq!(client.info().transport, TransportKind::Tcp);
            assert_eq!(client.info().remote, addr);
            assert_eq!(client.info().local.ip(), bind.ip());
            assert_ne!(client.info().local.port(), 0);
            assert_eq!(server.info().local, addr);
            assert_eq!(server.info().remote, client.info().local);
            let server_task = tokio::spawn(echo(server));

            let messages: Vec<Bytes> = (0..5)
                .map(|i| Bytes::from(format!("{framing:?} message {i} over {bind}")))
                .collect();
            for m in &messages {
                client.send(Frame::binary(m.clone())).await.unwrap();
            }
            if framing == Framing::Raw {
                // Raw: the byte stream comes back, cut wherever the network cut it.
                let want: Vec<u8> = messages.concat();
                let mut got = Vec::new();
                while got.len() < want.len() {
                    let chunk = data(next_frame(&mut client).await.unwrap().unwrap());
                    got.extend_from_slice(&chunk);
                }
                assert_eq!(got, want, "{framing:?} over {bind}");
            } else {
                // Framed: each message comes back whole, in order.
                for m in &messages {
                    let f = next_frame(&mut client).await.unwrap().unwrap();
                    assert_eq!(&data(f), m, "{framing:?} over {bind}");
                }
            }
            drop(client);
            tokio::time::timeout(WAIT, server_task)
                .await
                .expect("server link ends after the client closes")
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frame_with_four_byte_prefix() {
    let options = opts(Framing::Prefix4);
    let listener = listen(v4(), options.clone()).await;
    let addr = listener.local_addr();
    spawn_echo_server(listener);

    let mut client = connect(addr, options).await.unwrap();
    let big: Bytes = (0..5000u32).map(|i| (i % 251) as u8).collect();
    client.send(Frame::binary(big.clone())).await.unwrap();
    client.send(Frame::binary(&b"after"[..])).await.unwrap();
    assert_eq!(data(next_frame(&mut client).await.unwrap().unwrap()), big);
    assert_eq!(
        data(next_frame(&mut client).await.unwrap().unwrap()),
        Bytes::from_static(b"after")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_too_big_for_one_byte_prefix_is_an_error_on_send() {
    let options = opts(Framing::Prefix1);
    let listener = listen(v4(), options.clone()).await;
    let addr = listener.local_addr();
    spawn_echo_server(listener);

    let mut client = connect(addr, options).await.unwrap();
    let err = client
        .send(Frame::binary(vec![0u8; 256]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                size: 256,
                max: 255
            }
        ),
        "{err:?}"
    );
    // Nothing was written: the link still works, with the largest frame that fits.
    let max = Bytes::from(vec![9u8; 255]);
    client.send(Frame::binary(max.clone())).await.unwrap();
    assert_eq!(data(next_frame(&mut client).await.unwrap().unwrap()), max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_frame_over_max_message_size_is_an_error() {
    let mut o = Options::default().with_framing(Framing::Prefix4);
    o.max_message_size = Some(1024);
    let mut listener = listen(v4(), Arc::new(o)).await;
    let addr = listener.local_addr();

    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut server = next_link(&mut listener).await;
    // A frame of exactly the limit is fine...
    raw.write_all(&1024u32.to_be_bytes()).await.unwrap();
    raw.write_all(&[7u8; 1024]).await.unwrap();
    assert_eq!(
        data(next_frame(&mut server).await.unwrap().unwrap()).len(),
        1024
    );
    // ...one declaring more is refused before its body arrives.
    raw.write_all(&[0, 0, 0x10, 0]).await.unwrap();
    match next_frame(&mut server).await {
        Some(Err(Error::MessageTooLarge { size, max })) => {
            assert_eq!((size, max), (4096, 1024));
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_close_ends_the_stream() {
    for framing in [Framing::Raw, Framing::Prefix2] {
        let options = opts(framing);
        let mut listener = listen(v6(), options.clone()).await;
        let addr = listener.local_addr();
        let mut client = connect(addr, options).await.unwrap();
        let mut server = next_link(&mut listener).await;
        client.send(Frame::binary(&b"bye"[..])).await.unwrap();
        client.close().await.unwrap();
        drop(client);
        assert_eq!(
            data(next_frame(&mut server).await.unwrap().unwrap()),
            Bytes::from_static(b"bye")
        );
        assert!(next_frame(&mut server).await.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_closed_port_is_refused() {
    for bind in [v4(), v6()] {
        let closed = {
            let l = std::net::TcpListener::bind(bind).unwrap();
            l.local_addr().unwrap()
        };
        let err = match connect(closed, opts(Framing::Raw)).await {
            Err(e) => e,
            Ok(_) => panic!("connected to a closed port"),
        };
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(err.code(), "econnrefused", "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_port_in_use_fails() {
    for bind in [v4(), v6()] {
        let first = listen(bind, opts(Framing::Raw)).await;
        let taken = first.local_addr();
        let err = TcpTransport::new()
            .with_bind_retry(0, Duration::ZERO)
            .listen(ListenRequest {
                transport: TransportKind::Tcp,
                addr: taken,
                options: opts(Framing::Raw),
            })
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(err.code(), "eaddrinuse", "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_retries_until_the_port_is_free() {
    let first = listen(v4(), opts(Framing::Raw)).await;
    let taken = first.local_addr();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(first);
    });
    // 200 retries 50 ms apart: far more than the release needs.
    let second = TcpTransport::new()
        .with_bind_retry(200, Duration::from_millis(50))
        .bind_listener(taken, opts(Framing::Raw))
        .await
        .unwrap();
    assert_eq!(second.local_addr(), taken);
    release.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_other_transports_are_refused() {
    let tcp = TcpTransport::default();
    assert_eq!(tcp.kinds(), &[TransportKind::Tcp]);
    let err = tcp
        .listen(ListenRequest {
            transport: TransportKind::Udp,
            addr: v4(),
            options: opts(Framing::Raw),
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), "invalid_transport");
    let err = tcp
        .connect(ConnectRequest {
            transport: TransportKind::Tls,
            remote: "127.0.0.1:9".parse().unwrap(),
            options: opts(Framing::Raw),
        })
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), "invalid_transport");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_defers_accept_until_a_link_is_dropped() {
    let mut o = Options::default().with_framing(Framing::Prefix2);
    o.tcp_max_connections = Some(2);
    let options = Arc::new(o);
    let listener = TcpTransport::default()
        .bind_listener(v4(), options.clone())
        .await
        .unwrap();
    assert_eq!(listener.max_connections(), 2);
    let addr = listener.local_addr();

    // Accept in a task; hand every link over a channel, with the live count seen right after.
    let (tx, mut rx) = mpsc::unbounded_channel::<BoxLink>();
    let acceptor = tokio::spawn(accept_into(listener, tx));

    let mut clients = Vec::new();
    for _ in 0..3 {
        // The third connect completes too: the kernel backlog holds it.
        clients.push(connect(addr, options.clone()).await.unwrap());
    }
    let first = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();

    // The third client may already talk: its data waits in the kernel.
    clients[2]
        .send(Frame::binary(&b"queued"[..]))
        .await
        .unwrap();
    // While two links are alive, the third is not accepted.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "a third connection was accepted over the cap"
    );

    let first_remote = first.info().remote;
    drop(first);
    let mut third = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the third connection is accepted once a slot frees")
        .unwrap();

    let mut remotes = vec![first_remote, second.info().remote, third.info().remote];
    remotes.sort();
    let mut locals: Vec<SocketAddr> = clients.iter().map(|c| c.info().local).collect();
    locals.sort();
    assert_eq!(remotes, locals);
    assert_eq!(third.info().remote, clients[2].info().local);
    assert_eq!(
        data(next_frame(&mut third).await.unwrap().unwrap()),
        Bytes::from_static(b"queued")
    );
    acceptor.abort();
}

async fn accept_into(mut listener: TcpStreamListener, tx: mpsc::UnboundedSender<BoxLink>) {
    while let Some(item) = listener.next().await {
        if let Ok(Accepted::Link(link)) = item {
            assert!(listener.active_connections() <= listener.max_connections());
            if tx.send(link).is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_connections_follow_link_lifetimes() {
    let mut listener = TcpTransport::default()
        .bind_listener(v4(), opts(Framing::Raw))
        .await
        .unwrap();
    let addr = listener.local_addr();
    let _c1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _c2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut links = Vec::new();
    for _ in 0..2 {
        match tokio::time::timeout(WAIT, listener.next()).await {
            Ok(Some(Ok(Accepted::Link(l)))) => links.push(l),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(listener.active_connections(), 2);
    links.pop();
    assert_eq!(listener.active_connections(), 1);
    links.pop();
    assert_eq!(listener.active_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_each_get_their_own_echo() {
    for bind in [v4(), v6()] {
        let options = opts(Framing::Prefix2);
        let listener = listen(bind, options.clone()).await;
        let addr = listener.local_addr();
        let server = spawn_echo_server(listener);

        let mut clients = JoinSet::new();
        for i in 0..200u32 {
            let options = options.clone();
            clients.spawn(async move {
                let mut link = connect(addr, options).await.unwrap();
                for j in 0..3u32 {
                    let m = Bytes::from(format!("client {i} message {j}"));
                    link.send(Frame::binary(m.clone())).await.unwrap();
                    let got = data(next_frame(&mut link).await.unwrap().unwrap());
                    assert_eq!(got, m);
                }
                i
            });
        }
        let mut done = Vec::new();
        while let Some(r) = tokio::time::timeout(WAIT, clients.join_next())
            .await
            .expect("clients finish")
        {
            done.push(r.unwrap());
        }
        done.sort_unstable();
        assert_eq!(done, (0..200).collect::<Vec<_>>());
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_client_still_receives_replies() {
    let options = opts(Framing::Prefix4);
    let mut listener = listen(v4(), options.clone()).await;
    let addr = listener.local_addr();
    let mut client = connect(addr, options).await.unwrap();
    let mut server = next_link(&mut listener).await;

    // The server answers only once the client has finished sending (end of its stream).
    let server_task = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(f) = next_frame(&mut server).await {
            got.push(data(f.unwrap()));
        }
        got.reverse();
        for m in got {
            server.send(Frame::binary(m)).await.unwrap();
        }
        server.close().await.unwrap();
    });

    for m in ["one", "two", "three"] {
        client
            .send(Frame::binary(m.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    // Shut down the write side only (TCP FIN), then read the replies.
    client.close().await.unwrap();
    let mut replies = Vec::new();
    while let Some(f) = next_frame(&mut client).await {
        replies.push(data(f.unwrap()));
    }
    assert_eq!(
        replies,
        ["three", "two", "one"].map(|s| Bytes::from_static(s.as_bytes()))
    );
    server_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_peer_sees_length_prefixed_frames() {
    let options = opts(Framing::Prefix2);
    let server = std::net::TcpListener::bind(v4()).unwrap();
    server.set_nonblocking(true).unwrap();
    let server = tokio::net::TcpListener::from_std(server).unwrap();
    let addr = server.local_addr().unwrap();
    let mut client = connect(addr, options).await.unwrap();
    let (mut raw, _) = server.accept().await.unwrap();
    client.send(Frame::binary(&b"abc"[..])).await.unwrap();
    client.send(Frame::text("d")).await.unwrap();
    let mut wire = [0u8; 8];
    raw.read_exact(&mut wire).await.unwrap();
    assert_eq!(&wire, b"\x00\x03abc\x00\x01d");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_peer_makes_send_time_out() {
    let listener = TcpTransport::default()
        .bind_listener(v4(), opts(Framing::Raw))
        .await
        .unwrap();
    let addr = listener.local_addr();
    // Accepts but never reads.
    let (tx, mut rx) = mpsc::unbounded_channel::<BoxLink>();
    let acceptor = tokio::spawn(accept_into(listener, tx));

    let mut o = Options::default();
    o.send_timeout = Some(Duration::from_millis(200));
    o.send_timeout_close = Some(true);
    let mut client = connect(addr, Arc::new(o)).await.unwrap();
    let _server = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();

    let chunk = Bytes::from(vec![0u8; 256 * 1024]);
    let mut sent = 0usize;
    let err = tokio::time::timeout(WAIT, async {
        // Kernel buffers on loopback hold a few MiB at most; 1 GiB is never reached.
        while sent < (1 << 30) {
            match client.send(Frame::binary(chunk.clone())).await {
                Ok(()) => sent += chunk.len(),
                Err(e) => return e,
            }
        }
        panic!("{sent} bytes sent to a peer that never reads");
    })
    .await
    .expect("send times out");
    assert_eq!(err.code(), "timeout", "{err}");
    // send_timeout_close: the link is finished.
    assert!(client.send(Frame::binary(&b"x"[..])).await.is_err());
    acceptor.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_at_close_is_an_error_not_a_clean_end() {
    let mut listener = listen(v4(), opts(Framing::Prefix2)).await;
    let addr = listener.local_addr();
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut server = next_link(&mut listener).await;
    // Declares 10 bytes, sends 3, closes.
    raw.write_all(b"\x00\x0aabc").await.unwrap();
    raw.shutdown().await.unwrap();
    match next_frame(&mut server).await {
        Some(Err(e)) => assert!(matches!(e, Error::Io { .. }), "{e:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_stream_respects_the_cap() {
    let mut o = Options::default();
    o.tcp_max_connections = Some(1);
    let mut listener = TcpTransport::default()
        .bind_listener(v6(), Arc::new(o))
        .await
        .unwrap();
    let addr = listener.local_addr();
    let c1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let c2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let first = tokio::time::timeout(WAIT, listener.accept_stream())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.remote, c1.local_addr().unwrap());
    assert_eq!(first.local, addr);
    assert!(first.stream.nodelay().unwrap());
    // The slot is taken: the second client waits (the pending accept is cancel-safe).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept_stream())
            .await
            .is_err()
    );
    drop(first);
    let second = tokio::time::timeout(WAIT, listener.accept_stream())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.remote, c2.local_addr().unwrap());
    assert_eq!(listener.active_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_full_backlog_times_out() {
    // A listener that never accepts, with the smallest backlog: once its queue is full the
    // kernel drops further SYNs, so a connect hangs until connect_timeout.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&v4().into()).unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();

    let mut o = Options::default();
    o.connect_timeout = Some(Duration::from_millis(300));
    let o = Arc::new(o);
    let mut held = Vec::new();
    let mut timed_out = None;
    for _ in 0..8 {
        match connect(addr, o.clone()).await {
            Ok(link) => held.push(link),
            Err(e) => {
                timed_out = Some(e);
                break;
            }
        }
    }
    let err = timed_out.expect("a connect to a full backlog times out");
    assert!(
        matches!(err, Error::Timeout { op: "connect", .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "timeout");
}
