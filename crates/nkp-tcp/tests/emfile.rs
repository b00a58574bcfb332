//! The listener survives running out of file descriptors: the accept error is reported, the
//! listener pauses instead of spinning, and accepts again once descriptors are free.
//!
//! Alone in its own test binary (own process), because it lowers the process's descriptor
//! limit with `prlimit` (util-linux).

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nkp_core::{Accepted, Error, Options};
use nkp_tcp::TcpTransport;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_survives_descriptor_exhaustion_without_spinning() {
    let pid = std::process::id().to_string();
    let status = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=256:"])
        .status()
        .expect("prlimit (util-linux) is needed for this test");
    assert!(status.success(), "prlimit failed: {status}");

    let mut listener = TcpTransport::default()
        .bind_listener("127.0.0.1:0".parse().unwrap(), Arc::new(Options::default()))
        .await
        .unwrap();
    let addr = listener.local_addr();
    // Connected by the kernel, waiting in the backlog.
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();

    // Use up every descriptor.
    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
        assert!(hog.len() < 10_000, "the descriptor limit was not lowered");
    }

    // The accept fails with EMFILE, as an item: the listener does not end.
    let mut errors = 0usize;
    let window = Instant::now();
    while window.elapsed() < Duration::from_millis(500) {
        match tokio::time::timeout(WAIT, listener.next()).await {
            Ok(Some(Err(Error::Io { op, source, .. }))) => {
                assert_eq!(op, "accept");
                assert_eq!(source.raw_os_error(), Some(libc::EMFILE));
                errors += 1;
            }
            other => panic!("expected an EMFILE accept error, got {other:?}"),
        }
    }
    assert!(errors >= 1);
    // Paused between attempts: a spinning listener would report thousands here.
    assert!(
        errors < 100,
        "{errors} accept errors in 500 ms: not backing off"
    );

    drop(hog);
    match tokio::time::timeout(WAIT, listener.next()).await {
        Ok(Some(Ok(Accepted::Link(link)))) => {
            assert_eq!(link.info().remote, client.local_addr().unwrap());
        }
        other => panic!("expected the waiting client, got {other:?}"),
    }
}
