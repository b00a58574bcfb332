//! The shout protocol end to end on loopback, and its reuse of one connection.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nkpacket::{Nkpacket, Options};
use nkpacket_examples::{Shout, replies};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shout_round_trip_over_one_connection() {
    let nk = Nkpacket::builder().protocol("shout", Shout).build();
    let l = nk
        .start_listener("shout://127.0.0.1:0;transport=tcp", Options::default())
        .await
        .unwrap();
    let uri = format!("shout://127.0.0.1:{};transport=tcp", l.info().port());
    let (state, mut rx) = replies();
    let opts = Options::default().with_user_state(state);
    let mut conns = Vec::new();
    for w in ["hello", "wörld", ""] {
        conns.push(
            nk.send(uri.as_str(), w.to_string(), opts.clone())
                .await
                .unwrap(),
        );
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, w.to_uppercase());
    }
    assert!(
        conns.windows(2).all(|w| w[0] == w[1]),
        "one connection reused"
    );
    // framing comes from the protocol: the server's side of the wire is 2-byte framed
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(l.info().local())
        .await
        .unwrap();
    s.write_all(b"\x00\x02ab").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"\x00\x02AB");
    nk.shutdown().await;
}
