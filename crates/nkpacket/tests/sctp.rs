//! §13 sctp_test through the facade: an echo over SCTP associations, outbound associations
//! from the base listener's socket, reuse. Runs for real only where the kernel has SCTP
//! (`cargo xtask sctp-vm` boots one); elsewhere it says SKIPPED, and fails when
//! `NKP_REQUIRE_SCTP=1`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use nkpacket::echo::{Echo, EchoClient};
use nkpacket::{Nkpacket, Options, TransportKind};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sctp_echo_through_the_facade() {
    if !sctp_or_skip("sctp_echo_through_the_facade") {
        return;
    }
    for host in ["127.0.0.1", "[::1]"] {
        let server = Nkpacket::builder().protocol("echo", Echo).build();
        let l = server
            .start_listener(
                format!("echo://{host}:0;transport=sctp"),
                Options::default(),
            )
            .await
            .unwrap();
        assert_eq!(l.info().transport(), TransportKind::Sctp);
        // the client sends from its own SCTP listener (the base), as the spec requires
        let (client_proto, mut replies) = EchoClient::new();
        let client = Nkpacket::builder().protocol("echo", client_proto).build();
        let base = client
            .start_listener(
                format!("echo://{host}:0;transport=sctp"),
                Options::default(),
            )
            .await
            .unwrap();
        let uri = format!("echo://{};transport=sctp", l.info().local());
        let c = client
            .send(uri.as_str(), Bytes::from_static(b"one"), Options::default())
            .await
            .unwrap();
        assert_eq!(c.info().local().port(), base.info().port());
        assert_eq!(c.info().remote(), l.info().local());
        let got = tokio::time::timeout(Duration::from_secs(5), replies.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.payload(), b"one");
        // message boundaries are kept, and the association is reused
        for m in [&b"a"[..], &[7u8; 5000][..], b"zz"] {
            let c2 = client
                .send(uri.as_str(), Bytes::copy_from_slice(m), Options::default())
                .await
                .unwrap();
            assert_eq!(c2, c);
            let got = tokio::time::timeout(Duration::from_secs(5), replies.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.payload(), m);
        }
        // the server sees the client listener's port
        let peers: Vec<_> = server
            .connections()
            .iter()
            .map(|c| c.info().remote())
            .collect();
        assert_eq!(peers, vec![base.info().local()]);
        client.shutdown().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn sctp_without_a_listener_or_kernel_support_is_a_clear_error() {
    let nk = Nkpacket::builder().protocol("echo", Echo).build();
    let e = nk
        .send(
            "echo://127.0.0.1:9;transport=sctp",
            Bytes::new(),
            Options::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "no_listening_transport", "{e}");
    if nkp_sctp::check_supported().is_err() {
        let e = nk
            .start_listener("echo://127.0.0.1:0;transport=sctp", Options::default())
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("SCTP is not supported by this kernel"),
            "{e}"
        );
    }
}
