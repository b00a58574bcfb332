//! The STUN server and client over real loopback sockets (IPv4 and IPv6), with tokio's paused
//! clock for the retransmission schedule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use nkp_core::Error;
use nkp_stun::{Class, Message, Method, Transactions, query, query_with, serve};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

const T1: Duration = Duration::from_millis(500);

async fn stun_server(bind: &str) -> SocketAddr {
    let socket = UdpSocket::bind(bind).await.expect("bind");
    let addr = socket.local_addr().expect("local address");
    tokio::spawn(serve(socket));
    addr
}

/// A bound socket that never answers; its datagrams stay queued in the kernel for counting.
fn silent_server() -> (std::net::UdpSocket, SocketAddr) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_nonblocking(true).expect("non-blocking");
    let addr = socket.local_addr().expect("local address");
    (socket, addr)
}

/// Every datagram queued on a silent server.
fn drain(socket: &std::net::UdpSocket) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

#[tokio::test]
async fn query_against_serve_ipv4_and_ipv6() {
    for host in ["127.0.0.1", "[::1]"] {
        let server = stun_server(&format!("{host}:0")).await;
        let client = UdpSocket::bind(format!("{host}:0")).await.unwrap();
        let mapped = query(&client, server, T1).await.unwrap();
        assert_eq!(mapped, client.local_addr().unwrap());
    }
}

#[tokio::test]
async fn serve_answers_with_all_four_attributes_and_skips_junk() {
    let server = stun_server("127.0.0.1:0").await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(b"not stun", server).await.unwrap();
    client.send_to(&[0u8; 20], server).await.unwrap();
    let (tid, request) = nkp_stun::binding_request();
    client.send_to(&request, server).await.unwrap();

    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    assert_eq!(from, server);
    let msg = Message::decode(&buf[..n]).unwrap();
    assert_eq!(
        (msg.class, msg.method, msg.transaction_id),
        (Class::SuccessResponse, Method::BINDING, tid)
    );
    let types: Vec<u16> = msg.attributes.iter().map(|a| a.typ()).collect();
    assert_eq!(types, [0x0020, 0x0001, 0x8022, 0x8028]);
    assert_eq!(msg.mapped_address(), Some(client.local_addr().unwrap()));
}

/// A server that never answers: 5 requests, at 0, T1, 3·T1, 7·T1 and 15·T1, then failure at
/// 31·T1 — counted on a real loopback socket.
#[tokio::test(start_paused = true)]
async fn never_answering_server() {
    let (silent, silent_addr) = silent_server();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = Instant::now();
    let err = query(&client, silent_addr, T1).await.unwrap_err();
    assert_eq!(start.elapsed(), T1 * 31);
    assert!(
        matches!(err, Error::Timeout { op: "stun binding", after } if after == T1 * 31),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "stun binding timed out after 15500 ms");

    let requests = drain(&silent);
    assert_eq!(requests.len(), 5);
    let first = Message::decode(&requests[0]).unwrap();
    assert_eq!(
        (first.class, first.method),
        (Class::Request, Method::BINDING)
    );
    assert!(
        requests.iter().all(|r| *r == requests[0]),
        "retransmissions are identical"
    );

    // The same through query_with on a real socket, timing each send.
    let sends = std::sync::Mutex::new(Vec::new());
    let table = Transactions::new();
    let start = Instant::now();
    let send = |request: Bytes| {
        sends.lock().unwrap().push(start.elapsed());
        let client = &client;
        async move {
            client
                .send_to(&request, silent_addr)
                .await
                .map_err(|e| Error::io("send", None, e))?;
            Ok(())
        }
    };
    assert!(query_with(send, &table, T1).await.is_err());
    assert_eq!(
        *sends.lock().unwrap(),
        [Duration::ZERO, T1, T1 * 3, T1 * 7, T1 * 15]
    );
    assert_eq!(drain(&silent).len(), 5);
}

/// A server that drops the first three requests and answers from the third retransmission on.
#[tokio::test(start_paused = true)]
async fn server_answering_the_third_retransmission() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = socket.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            if counter.fetch_add(1, Ordering::SeqCst) >= 3 {
                let answer = nkp_stun::respond(&buf[..n], from).unwrap();
                socket.send_to(&answer, from).await.unwrap();
            }
        }
    });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = Instant::now();
    let mapped = query(&client, server, T1).await.unwrap();
    assert_eq!(mapped, client.local_addr().unwrap());
    // It cannot succeed before the 4th transmission; the paused clock may have jumped to the
    // next timer (15·T1) before the runtime read the answer off the socket.
    let elapsed = start.elapsed();
    assert!(elapsed == T1 * 7 || elapsed == T1 * 15, "{elapsed:?}");
    assert!(seen.load(Ordering::SeqCst) >= 4);
}

/// A shared listener socket: STUN answers go to the waiting query, protocol data goes on to
/// the protocol, and the mapped address is the listener's own (spec §13 items 22–24).
#[tokio::test]
async fn query_on_a_shared_listener_socket() {
    let server = stun_server("127.0.0.1:0").await;
    let listener = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let table = Transactions::new();
    let (data_tx, mut data_rx) = mpsc::unbounded_channel();
    let receiver = {
        let (listener, table) = (listener.clone(), table.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (n, from) = listener.recv_from(&mut buf).await.unwrap();
                if !table.on_datagram(&buf[..n], from) {
                    let _ = data_tx.send((buf[..n].to_vec(), from));
                }
            }
        })
    };
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.send_to(b"protocol data", listener.local_addr().unwrap())
        .await
        .unwrap();

    let send = |request: Bytes| {
        let listener = listener.clone();
        async move {
            listener
                .send_to(&request, server)
                .await
                .map_err(|e| Error::io("send", Some(server), e))?;
            Ok(())
        }
    };
    let mapped = query_with(send, &table, T1).await.unwrap();
    assert_eq!(mapped, listener.local_addr().unwrap());
    assert_eq!(table.pending(), 0);

    // A Binding request arriving on the listener is not a response: it is protocol data
    // (a listener without udp_stun_reply passes it on, spec §13 item 23).
    let (_, request) = nkp_stun::binding_request();
    peer.send_to(&request, listener.local_addr().unwrap())
        .await
        .unwrap();
    let (data, from) = wait(&mut data_rx).await;
    assert_eq!(
        (data.as_slice(), from),
        (&b"protocol data"[..], peer.local_addr().unwrap())
    );
    let (data, _) = wait(&mut data_rx).await;
    assert_eq!(&data[..2], &[0x00, 0x01]);
    receiver.abort();
}

async fn wait(rx: &mut mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>) -> (Vec<u8>, SocketAddr) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("data within 5 s")
        .expect("receiver running")
}

#[tokio::test(start_paused = true)]
async fn discover_external_tries_servers_in_order() {
    let (silent, silent_addr) = silent_server();
    let good = stun_server("127.0.0.1:0").await;
    let start = Instant::now();
    let mapped = nkp_stun::discover_external(&[silent_addr, good], T1)
        .await
        .unwrap();
    assert_eq!(
        mapped.ip(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    assert!(
        start.elapsed() >= T1 * 31,
        "the silent server was tried first"
    );
    assert_eq!(drain(&silent).len(), 5);

    let err = nkp_stun::discover_external(&[silent_addr], T1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout");
    let err = nkp_stun::discover_external(&[], T1).await.unwrap_err();
    assert!(matches!(err, Error::NoTransports));
}
