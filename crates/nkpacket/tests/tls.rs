//! §13 tcp_test tls items (31–35) through the facade, and TLS verification defaults.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use nkpacket::{Destination, Options, StopReason, TransportKind};
use support::*;

fn certs(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("nkp-tls-{tag}-{}", std::process::id()));
    nkpacket::tls::write_self_signed(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap()
}

fn server_opts(r: &Reports, tag: &'static str, domain: &str, cert: &(PathBuf, PathBuf)) -> Options {
    let mut o = r.opts(tag, domain);
    o.tls_certfile = Some(cert.0.display().to_string());
    o.tls_keyfile = Some(cert.1.display().to_string());
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_send_reuse_and_stop() {
    let nk = node();
    let mut r = Reports::new();
    let cert = certs("basic");
    // 31
    let l = nk
        .start_listener(
            Destination::new("test", TransportKind::Tls, "0.0.0.0:0".parse().unwrap()),
            server_opts(&r, "l", "dom1", &cert),
        )
        .await
        .unwrap();
    r.expect("l", "listen_init", is_listen_init).await;
    let p = l.info().port();
    // 32: no verification asked
    let mut co = r.opts("c", "dom2");
    co.idle_timeout = Some(Duration::from_millis(1000));
    co.tls_verify = Some(false);
    let c = nk
        .send(
            format!("<test://localhost:{p};transport=tls>"),
            Bytes::from_static(b"msg1"),
            co.clone(),
        )
        .await
        .unwrap();
    let mut got = r.collect(4, 2.0).await;
    got.sort_by_key(|(t, _)| *t);
    assert!(matches!(&got[0], ("c", Ev::ConnInit(_))), "{got:?}");
    assert!(matches!(&got[1], ("c", Ev::Encode(b)) if &b[..] == b"msg1"));
    let server = match (&got[2], &got[3]) {
        (("l", Ev::ConnInit(i)), ("l", Ev::Parse(f))) if f.payload() == b"msg1" => i.clone(),
        other => panic!("{other:?}"),
    };
    // 33
    assert_eq!(l.info().transport(), TransportKind::Tls);
    assert_eq!(l.info().local(), format!("0.0.0.0:{p}").parse().unwrap());
    assert_eq!(server.remote(), c.info().local());
    assert_eq!(server.listen(), Some(l.info().local()));
    assert_eq!(c.info().remote(), format!("127.0.0.1:{p}").parse().unwrap());
    assert_eq!(c.info().listen(), None);
    assert_eq!(c.info().transport(), TransportKind::Tls);
    // the server saw our SNI (the host of the URI)
    assert_eq!(server.meta().host.as_deref(), Some("localhost"));
    // 34: reuse
    let c2 = nk
        .send(
            format!("<test://localhost:{p};transport=tls>"),
            Bytes::from_static(b"msg2"),
            co.clone(),
        )
        .await
        .unwrap();
    assert_eq!(c2, c);
    r.expect("c", "encode msg2", is_encode(b"msg2")).await;
    r.expect("l", "parse msg2", is_parse(b"msg2")).await;
    assert_eq!(nk.connections_in("dom1").len(), 1);
    // 35: the client idles out after 1 s; then stopping the listener stops the server side
    let got = r.collect(3, 2.5).await;
    assert!(
        got.iter()
            .any(|(t, e)| *t == "c" && matches!(e, Ev::ConnStop(StopReason::IdleTimeout, _))),
        "{got:?}"
    );
    assert_eq!(nk.listeners().len(), 1);
    l.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(nk.connections().is_empty());
    nk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_verify_by_default() {
    let nk = node();
    let cert = certs("verify");
    let mut lo = Options::default();
    lo.tls_certfile = Some(cert.0.display().to_string());
    lo.tls_keyfile = Some(cert.1.display().to_string());
    let l = nk
        .start_listener("test://127.0.0.1:0;transport=tls", lo)
        .await
        .unwrap();
    let uri = format!("test://localhost:{};transport=tls", l.info().port());
    // a self-signed server is refused by default
    let e = nk
        .connect(uri.as_str(), Options::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "tls_error", "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // trusted through tls_cacertfile (host checked against the certificate)
    let trusted = format!("{uri};tls_cacertfile={}", cert.0.display());
    nk.connect(trusted.as_str(), Options::default())
        .await
        .unwrap();
    // a name the certificate does not carry is refused
    let wrong = format!(
        "test://127.0.0.1:{};transport=tls;host=other.test;tls_cacertfile={}",
        l.info().port(),
        cert.0.display()
    );
    let e = nk
        .connect(wrong.as_str(), Options::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "tls_error", "{e}");
    // explicit opt-out
    nk.connect(
        format!("{uri};tls_verify=false").as_str(),
        Options::default(),
    )
    .await
    .unwrap();
    // a TLS listener without certificate files is a clear error
    let e = nk
        .start_listener("test://127.0.0.1:0;transport=tls", Options::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("tls_certfile"), "{e}");
    nk.shutdown().await;
}

/// Certificate reload: new files are used by new handshakes (noticed by themselves, or on
/// `reload_tls`), established connections go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_dropping_connections() {
    let nk = node();
    let dir = std::env::temp_dir().join(format!("nkp-tls-reload-{}", std::process::id()));
    let hosts = ["localhost".to_string()];
    let (cert, key) = nkpacket::tls::write_self_signed(&dir.join("a"), &hosts).unwrap();
    // the listener reads its files from these paths
    let live_cert = dir.join("cert.pem");
    let live_key = dir.join("key.pem");
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let mut lo = Options::default();
    lo.tls_certfile = Some(live_cert.display().to_string());
    lo.tls_keyfile = Some(live_key.display().to_string());
    let l = nk
        .start_listener("test://127.0.0.1:0;transport=tls", lo)
        .await
        .unwrap();
    let uri = |ca: &std::path::Path| {
        format!(
            "test://localhost:{};transport=tls;tls_cacertfile={}",
            l.info().port(),
            ca.display()
        )
    };
    let first = nk
        .connect(uri(&cert).as_str(), Options::default())
        .await
        .unwrap();
    // new certificate files (a different self-signed certificate)
    let (cert_b, key_b) = nkpacket::tls::write_self_signed(&dir.join("b"), &hosts).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::copy(&cert_b, &live_cert).unwrap();
    std::fs::copy(&key_b, &live_key).unwrap();
    let second = nk
        .connect(uri(&cert_b).as_str(), Options::default())
        .await
        .unwrap();
    let e = nk
        .connect(uri(&cert).as_str(), Options::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "tls_error", "{e}");
    // an explicit reload keeps working (same files)
    nk.reload_tls();
    nk.connect(uri(&cert_b).as_str(), Options::default())
        .await
        .unwrap();
    // the connection made with the old certificate is still up and usable
    assert!(first.is_alive() && second.is_alive());
    first.send(Bytes::from_static(b"still here")).await.unwrap();
    nk.shutdown().await;
}
