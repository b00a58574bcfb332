//! SCTP over loopback, for real. The host and CI kernels have no SCTP: there these tests
//! skip (loudly), and `cargo xtask sctp-vm` runs them inside a VM with a Debian kernel,
//! where `NKP_REQUIRE_SCTP=1` turns a missing SCTP into a failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use nkp_core::{
    Accepted, BoxLink, Error, Frame, Link, ListenRequest, Listener, Options, Transport,
    TransportKind,
};
use nkp_sctp::{SctpLink, SctpListener, SctpTransport, Streams};

const LIMIT: Duration = Duration::from_secs(10);

/// True when SCTP works here; otherwise says so loudly (or fails under NKP_REQUIRE_SCTP).
fn sctp_or_skip(test: &str) -> bool {
    match nkp_sctp::check_supported() {
        Ok(()) => true,
        Err(e) => {
            if std::env::var_os("NKP_REQUIRE_SCTP").is_some_and(|v| v != "0") {
                panic!("{test}: NKP_REQUIRE_SCTP is set but: {e}");
            }
            eprintln!("SKIPPED {test}: {e}");
            false
        }
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {LIMIT:?}"),
    }
}

async fn bind(addr: &str, options: Options) -> SctpListener {
    SctpTransport::new()
        .bind(addr.parse().expect("address"), Arc::new(options))
        .await
        .expect("bind")
}

async fn accept(l: &mut SctpListener) -> BoxLink {
    match within("accept", l.next()).await {
        Some(Ok(Accepted::Link(link))) => link,
        other => panic!("expected a link, got {other:?}"),
    }
}

async fn recv<L: Link + ?Sized>(link: &mut L) -> Bytes {
    match within("receive", link.next()).await {
        Some(Ok(Frame::Binary(b))) => b,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Echoes every message of every link the listener accepts, each link in its own task.
fn spawn_echo(mut listener: SctpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(Accepted::Link(mut link))) = listener.next().await {
            tokio::spawn(async move {
                while let Some(Ok(frame)) = link.next().await {
                    if link.send(frame).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

async fn echo_roundtrip(listen: &str) {
    let listener = bind(listen, Options::new()).await;
    let server = listener.local_addr();
    assert_ne!(server.port(), 0, "the real port is reported");
    let echo = spawn_echo(listener);
    let mut client = SctpTransport::new()
        .connect_link(server, &Options::new())
        .await
        .expect("connect");
    assert_eq!(client.info().transport, TransportKind::Sctp);
    assert_eq!(client.remote(), server);
    assert_ne!(client.local().port(), server.port());
    for msg in ["hello", "world", "!"] {
        client
            .send(Frame::binary(msg.as_bytes().to_vec()))
            .await
            .expect("send");
        assert_eq!(recv(&mut client).await, msg.as_bytes());
    }
    echo.abort();
}

#[tokio::test]
async fn echo_ipv4() {
    if sctp_or_skip("echo_ipv4") {
        echo_roundtrip("127.0.0.1:0").await;
    }
}

#[tokio::test]
async fn echo_ipv6() {
    if sctp_or_skip("echo_ipv6") {
        echo_roundtrip("[::1]:0").await;
    }
}

#[tokio::test]
async fn server_link_addresses_through_the_transport_trait() {
    if !sctp_or_skip("server_link_addresses_through_the_transport_trait") {
        return;
    }
    let t = SctpTransport::new();
    assert_eq!(t.kinds(), &[TransportKind::Sctp]);
    let mut listener = t
        .listen(ListenRequest {
            transport: TransportKind::Sctp,
            addr: "[::1]:0".parse().expect("address"),
            options: Arc::new(Options::new()),
        })
        .await
        .expect("listen");
    let server = listener.local_addr();
    let mut client = t
        .connect(nkp_core::ConnectRequest {
            transport: TransportKind::Sctp,
            remote: server,
            options: Arc::new(Options::new()),
        })
        .await
        .expect("connect");
    client.send(Frame::text("hi")).await.expect("send");
    let Some(Ok(Accepted::Link(mut link))) = within("accept", listener.next()).await else {
        panic!("no link");
    };
    assert_eq!(link.info().local, server);
    assert_eq!(link.info().remote.port(), client.info().local.port());
    assert_eq!(link.info().remote.ip(), server.ip());
    assert_eq!(recv(link.as_mut()).await, "hi".as_bytes());
    // A wrong transport kind is refused.
    let wrong = t
        .listen(ListenRequest {
            transport: TransportKind::Udp,
            addr: "127.0.0.1:0".parse().expect("address"),
            options: Arc::new(Options::new()),
        })
        .await;
    assert!(matches!(wrong, Err(Error::InvalidTransport(_))));
}

#[tokio::test]
async fn several_associations_get_their_own_replies() {
    if !sctp_or_skip("several_associations_get_their_own_replies") {
        return;
    }
    let listener = bind("127.0.0.1:0", Options::new()).await;
    let server = listener.local_addr();
    let echo = spawn_echo(listener);
    let mut clients = Vec::new();
    for c in 0..8 {
        clients.push(tokio::spawn(async move {
            let mut link = SctpTransport::new()
                .connect_link(server, &Options::new())
                .await
                .expect("connect");
            for m in 0..25 {
                link.feed(Frame::binary(
                    format!("client {c} message {m}").into_bytes(),
                ))
                .await
                .expect("feed");
            }
            link.flush().await.expect("flush");
            for m in 0..25 {
                let got = recv(&mut link).await;
                assert_eq!(got, format!("client {c} message {m}").as_bytes());
            }
            link.local().port()
        }));
    }
    let mut ports = Vec::new();
    for c in clients {
        ports.push(c.await.expect("client task"));
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 8, "eight associations from eight sockets");
    echo.abort();
}

fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn message_boundaries_are_kept() {
    if !sctp_or_skip("message_boundaries_are_kept") {
        return;
    }
    let mut listener = bind("127.0.0.1:0", Options::new()).await;
    let server = listener.local_addr();
    let mut client = SctpTransport::new()
        .connect_link(server, &Options::new())
        .await
        .expect("connect");
    let sizes = [
        1usize, 2, 3, 100, 1000, 1452, 1500, 4096, 9000, 16_384, 32_768, 65_535, 65_536, 1, 7,
    ];
    // Back to back: everything is queued before anything is read.
    for (i, size) in sizes.iter().enumerate() {
        client
            .feed(Frame::binary(pattern(*size, i as u8)))
            .await
            .expect("feed");
    }
    client.flush().await.expect("flush");
    let mut link = accept(&mut listener).await;
    for (i, size) in sizes.iter().enumerate() {
        let got = recv(link.as_mut()).await;
        assert_eq!(got.len(), *size, "message {i}");
        assert_eq!(got, pattern(*size, i as u8), "message {i}");
    }
    // And back, with the sizes reversed.
    for (i, size) in sizes.iter().rev().enumerate() {
        link.feed(Frame::binary(pattern(*size, 100 + i as u8)))
            .await
            .expect("feed");
    }
    link.flush().await.expect("flush");
    for (i, size) in sizes.iter().rev().enumerate() {
        assert_eq!(recv(&mut client).await, pattern(*size, 100 + i as u8));
    }
}

#[tokio::test]
async fn open_from_a_listener_uses_its_port() {
    if !sctp_or_skip("open_from_a_listener_uses_its_port") {
        return;
    }
    let a = bind("127.0.0.1:0", Options::new()).await;
    let mut b = bind("127.0.0.1:0", Options::new()).await;
    let (pa, pb) = (a.local_addr(), b.local_addr());

    let mut out: SctpLink = within("open", a.open_link(pb, &Options::new()))
        .await
        .expect("open");
    // The link describes the association, not the listener (the original's bug).
    assert_eq!(out.local(), pa);
    assert_eq!(out.remote(), pb);
    out.send(Frame::binary(&b"from a"[..])).await.expect("send");
    let mut inbound = accept(&mut b).await;
    assert_eq!(
        inbound.info().remote,
        pa,
        "the peer sees the listener's port"
    );
    assert_eq!(inbound.info().local, pb);
    assert_eq!(recv(inbound.as_mut()).await, &b"from a"[..]);
    inbound
        .send(Frame::binary(&b"from b"[..]))
        .await
        .expect("reply");
    assert_eq!(recv(&mut out).await, &b"from b"[..]);

    // One association per pair of endpoints: a second one between a and b is refused.
    let again = within("open", Listener::open(&b, pa, Arc::new(Options::new()))).await;
    assert!(again.is_err(), "a and b already have an association");

    // Through the boxed trait method, from b to a third listener.
    let mut c = bind("127.0.0.1:0", Options::new()).await;
    let pc = c.local_addr();
    let mut to_c = within("open", Listener::open(&b, pc, Arc::new(Options::new())))
        .await
        .expect("open from b");
    assert_eq!((to_c.info().local, to_c.info().remote), (pb, pc));
    to_c.send(Frame::binary(&b"b opens"[..]))
        .await
        .expect("send");
    let mut at_c = accept(&mut c).await;
    assert_eq!(at_c.info().remote, pb);
    assert_eq!(recv(at_c.as_mut()).await, &b"b opens"[..]);
    assert_eq!(b.associations(), 2);
    drop(a);
}

#[tokio::test]
async fn open_to_a_closed_port_fails_fast() {
    if !sctp_or_skip("open_to_a_closed_port_fails_fast") {
        return;
    }
    // Bind and drop a listener to get a port nobody listens on.
    let port = bind("127.0.0.1:0", Options::new())
        .await
        .local_addr()
        .port();
    let remote: SocketAddr = ([127, 0, 0, 1], port).into();
    let res = within(
        "connect",
        SctpTransport::new().connect_link(remote, &Options::new()),
    )
    .await;
    let err = res.expect_err("nobody listens there");
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
}

#[tokio::test]
async fn association_shutdown_ends_the_link() {
    if !sctp_or_skip("association_shutdown_ends_the_link") {
        return;
    }
    let mut listener = bind("127.0.0.1:0", Options::new()).await;
    let server = listener.local_addr();
    let t = SctpTransport::new();

    // The client drops its link: the server's link ends.
    let mut client = t
        .connect_link(server, &Options::new())
        .await
        .expect("connect");
    client
        .send(Frame::binary(&b"last words"[..]))
        .await
        .expect("send");
    drop(client);
    let mut link = accept(&mut listener).await;
    assert_eq!(recv(link.as_mut()).await, &b"last words"[..]);
    assert!(
        within("end of stream", link.next()).await.is_none(),
        "the stream ends after the peer's shutdown"
    );
    drop(link);

    // The server closes its link: the client's link ends.
    let mut client = t
        .connect_link(server, &Options::new())
        .await
        .expect("connect");
    client
        .send(Frame::binary(&b"hello"[..]))
        .await
        .expect("send");
    let mut link = accept(&mut listener).await;
    assert_eq!(recv(link.as_mut()).await, &b"hello"[..]);
    link.send(Frame::binary(&b"bye"[..])).await.expect("send");
    link.close().await.expect("close");
    assert_eq!(
        recv(&mut client).await,
        &b"bye"[..],
        "data sent before the close arrives"
    );
    assert!(within("end of stream", client.next()).await.is_none());
    // Sending on an ended association fails cleanly.
    let err = client
        .send(Frame::binary(&b"anyone?"[..]))
        .await
        .expect_err("association is gone");
    assert_eq!(err.code(), "closed", "{err}");

    // Dropping the listener ends its links.
    let mut client = t
        .connect_link(server, &Options::new())
        .await
        .expect("connect");
    client.send(Frame::binary(&b"x"[..])).await.expect("send");
    let mut link = accept(&mut listener).await;
    assert_eq!(recv(link.as_mut()).await, &b"x"[..]);
    drop(listener);
    assert!(within("end of stream", link.next()).await.is_none());
    assert!(within("end of stream", client.next()).await.is_none());
}

#[tokio::test]
async fn stream_counts_are_negotiated_from_the_options() {
    if !sctp_or_skip("stream_counts_are_negotiated_from_the_options") {
        return;
    }
    let mut opts = Options::new();
    opts.set("sctp_out_streams", "5").expect("option");
    opts.set("sctp_in_streams", "3").expect("option");
    let mut listener = bind("127.0.0.1:0", opts).await;
    // Client defaults: 10 out, 10 in.
    let mut client = SctpTransport::new()
        .connect_link(listener.local_addr(), &Options::new())
        .await
        .expect("connect");
    assert_eq!(
        client.streams(),
        Streams {
            outbound: 3,
            inbound: 5
        }
    );
    client.send(Frame::binary(&b"s"[..])).await.expect("send");
    let Some(Ok(Accepted::Link(_link))) = within("accept", listener.next()).await else {
        panic!("no link");
    };
    let mut one = Options::new();
    one.set("sctp_out_streams", "1").expect("option");
    one.set("sctp_in_streams", "1").expect("option");
    let c = SctpTransport::new()
        .connect_link(listener.local_addr(), &one)
        .await
        .expect("connect");
    assert_eq!(
        c.streams(),
        Streams {
            outbound: 1,
            inbound: 1
        }
    );
}

#[tokio::test]
async fn unsupported_kernel_gives_a_clear_error() {
    if nkp_sctp::is_supported() {
        eprintln!("unsupported_kernel_gives_a_clear_error: this kernel has SCTP; nothing to check");
        return;
    }
    let t = SctpTransport::new();
    let err = t
        .bind(
            "127.0.0.1:0".parse().expect("address"),
            Arc::new(Options::new()),
        )
        .await
        .expect_err("no SCTP here");
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("SCTP is not supported by this kernel"),
        "{err}"
    );
    assert_eq!(err.code(), "unsupported");
    let err = t
        .connect_link("[::1]:7".parse().expect("address"), &Options::new())
        .await
        .expect_err("no SCTP here");
    assert!(err.to_string().starts_with(nkp_sctp::UNSUPPORTED), "{err}");
}

#[tokio::test]
async fn large_and_too_large_messages() {
    if !sctp_or_skip("large_and_too_large_messages") {
        return;
    }
    // Larger than the buffer of one read (64 KiB): reassembled from its pieces.
    let mut listener = bind("127.0.0.1:0", Options::new()).await;
    let mut client = SctpTransport::new()
        .connect_link(listener.local_addr(), &Options::new())
        .await
        .expect("connect");
    let big = pattern(200_000, 9);
    client.send(Frame::binary(big.clone())).await.expect("send");
    client
        .send(Frame::binary(&b"after"[..]))
        .await
        .expect("send");
    let mut link = accept(&mut listener).await;
    assert_eq!(recv(link.as_mut()).await, big);
    assert_eq!(recv(link.as_mut()).await, &b"after"[..]);

    // Over max_message_size: the link reports it and the association is aborted.
    let mut opts = Options::new();
    opts.set("max_message_size", "1000").expect("option");
    let mut small = bind("127.0.0.1:0", opts).await;
    let mut client = SctpTransport::new()
        .connect_link(small.local_addr(), &Options::new())
        .await
        .expect("connect");
    client
        .send(Frame::binary(pattern(1000, 1)))
        .await
        .expect("send");
    client
        .send(Frame::binary(pattern(5000, 2)))
        .await
        .expect("send");
    let mut link = accept(&mut small).await;
    assert_eq!(recv(link.as_mut()).await, pattern(1000, 1));
    match within("error", link.next()).await {
        Some(Err(Error::MessageTooLarge {
            size: 5000,
            max: 1000,
        })) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(within("end of stream", link.next()).await.is_none());
    assert!(within("client end", client.next()).await.is_none());
}
