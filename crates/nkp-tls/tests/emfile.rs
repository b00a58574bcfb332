//! A TLS listener survives running out of file descriptors: the accept error is reported, the
//! listener pauses instead of spinning, and accepts (and handshakes) again once descriptors
//! are free.
//!
//! Alone in its own test binary (own process), because it lowers the process's descriptor
//! limit with `prlimit` (util-linux).

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nkp_core::{Accepted, Error, Options};
use nkp_tls::TlsTransport;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_survives_descriptor_exhaustion_without_spinning() {
    let dir = std::env::temp_dir().join(format!("nkp-tls-emfile-{}", std::process::id()));
    let (cert, key) = nkp_tls::write_self_signed(&dir, &[]).unwrap();
    let mut opts = Options::default();
    opts.set("tls_certfile", cert.to_str().unwrap()).unwrap();
    opts.set("tls_keyfile", key.to_str().unwrap()).unwrap();
    let mut copts = Options::default();
    copts.set("tls_cacertfile", cert.to_str().unwrap()).unwrap();
    copts.set("connect_timeout", "10000").unwrap();
    let client_config = nkp_tls::client_config(&copts).unwrap();

    let pid = std::process::id().to_string();
    let status = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=256:"])
        .status()
        .expect("prlimit (util-linux) is needed for this test");
    assert!(status.success(), "prlimit failed: {status}");

    let mut listener = TlsTransport::new()
        .bind("127.0.0.1:0".parse().unwrap(), Arc::new(opts))
        .unwrap();
    let addr = listener.local_addr();
    // Connected by the kernel, waiting in the backlog.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = nkp_tls::server_name(&copts, addr).unwrap();
    let client = tokio::spawn(nkp_tls::connect_tls(client_config, name, tcp, WAIT));

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
    assert!(
        errors < 100,
        "{errors} accept errors in 500 ms: not backing off"
    );

    drop(hog);
    let link = match tokio::time::timeout(WAIT, listener.next()).await {
        Ok(Some(Ok(Accepted::Pending(handshake)))) => handshake.await.unwrap(),
        other => panic!("expected the waiting client, got {other:?}"),
    };
    let tls = client.await.unwrap().unwrap();
    assert_eq!(link.info().remote, tls.get_ref().0.local_addr().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
