//! §13 basic_test (items 1–5) and facade basics.

#![allow(clippy::unwrap_used)]

mod support;

use nkpacket::{Config, Nkpacket, Options, TransportKind, options::defaults};
use support::*;

#[tokio::test]
async fn config_defaults_and_reapply() {
    // 1
    let nk = Nkpacket::default();
    assert_eq!(nk.config().max_connections, 1024);
    assert_eq!(defaults::UDP_TIMEOUT.as_millis(), 30000);
    assert_eq!(
        Options::default().effective_idle_timeout(TransportKind::Udp),
        Some(defaults::UDP_TIMEOUT)
    );
    // 2
    nk.set_config(Config {
        max_connections: 100,
        ..nk.config()
    });
    assert_eq!(nk.config().max_connections, 100);
}

struct OtherProto;
impl nkpacket::Protocol for OtherProto {
    type Message = bytes::Bytes;
    type State = ();
}

#[tokio::test]
async fn protocol_registry_global_and_per_domain() {
    let nk = Nkpacket::default();
    // 3
    assert_eq!(nk.protocol_type(None, "kkk"), None);
    assert_eq!(nk.protocol_type(Some("srv1"), "kkk"), None);
    // 4
    nk.register_protocol("kkk", OtherProto);
    let other = std::any::type_name::<OtherProto>();
    assert_eq!(nk.protocol_type(None, "kkk"), Some(other));
    assert_eq!(nk.protocol_type(Some("srv1"), "kkk"), Some(other));
    // 5
    nk.register_domain_protocol("srv1", "kkk", TestProto);
    assert_eq!(
        nk.protocol_type(Some("srv1"), "kkk"),
        Some(std::any::type_name::<TestProto>())
    );
    assert_eq!(nk.protocol_type(None, "kkk"), Some(other));
    // a later registration replaces
    nk.register_protocol("kkk", TestProto);
    assert_eq!(
        nk.protocol_type(None, "KKK"),
        Some(std::any::type_name::<TestProto>())
    );
}

#[tokio::test]
async fn resolution_rules() {
    let nk = node();
    let o = Options::default();
    // scheme-as-transport, protocol default transport, default port
    let d = nk.resolve("test://127.0.0.1", &o, false).await.unwrap();
    assert_eq!(d[0].transport, TransportKind::Http); // first of transports()
    assert_eq!(d[0].addr.port(), 1240);
    let d = nk
        .resolve("test://127.0.0.1;transport=TCP", &o, false)
        .await
        .unwrap();
    assert_eq!(
        (d[0].transport, d[0].addr.port()),
        (TransportKind::Tcp, 1235)
    );
    // listen mode keeps port 0
    let d = nk
        .resolve("test://127.0.0.1;transport=tcp", &o, true)
        .await
        .unwrap();
    assert_eq!(d[0].addr.port(), 0);
    // only ext params become options; inside <...> they do not
    let d = nk
        .resolve(
            "test://127.0.0.1:1;transport=ws;idle_timeout=500",
            &o,
            false,
        )
        .await
        .unwrap();
    assert_eq!(d[0].options.idle_timeout.map(|d| d.as_millis()), Some(500));
    let d = nk
        .resolve(
            "<test://127.0.0.1:1;transport=ws;idle_timeout=500>",
            &o,
            false,
        )
        .await
        .unwrap();
    assert_eq!(d[0].options.idle_timeout, None);
    let d = nk
        .resolve(
            "<test://127.0.0.1:1;transport=ws>;idle_timeout=500",
            &o,
            false,
        )
        .await
        .unwrap();
    assert_eq!(d[0].options.idle_timeout.map(|d| d.as_millis()), Some(500));
    // caller > URI; host and path from the URI
    let caller = Options::default().with_idle_timeout(std::time::Duration::from_millis(7));
    let d = nk
        .resolve(
            "test://localhost:5/a/b/;transport=ws;idle_timeout=500;path=/x",
            &caller,
            false,
        )
        .await
        .unwrap();
    assert_eq!(d[0].options.idle_timeout.map(|d| d.as_millis()), Some(7));
    assert_eq!(d[0].options.host.as_deref(), Some("localhost"));
    assert_eq!(d[0].options.path.as_deref(), Some("/x"));
    assert_eq!(d[0].addr, "127.0.0.1:5".parse().unwrap());
    // wildcard hosts never become a host option; `all` is 0.0.0.0
    let d = nk
        .resolve("test://all;transport=udp", &o, true)
        .await
        .unwrap();
    assert_eq!(d[0].options.host, None);
    assert_eq!(d[0].addr, "0.0.0.0:0".parse().unwrap());
    let d = nk
        .resolve("test://[::]:9;transport=udp", &o, true)
        .await
        .unwrap();
    assert_eq!(d[0].options.host, None);
    // every URI of a list gets its own id; all results of one URI share one
    let d = nk
        .resolve(
            "test://127.0.0.1:1;transport=tcp, test://127.0.0.1:2;transport=tcp",
            &o,
            false,
        )
        .await
        .unwrap();
    assert_eq!(d.len(), 2);
    assert_ne!(d[0].options.id, d[1].options.id);
    // IPv6 literal
    let d = nk
        .resolve("test://[::1]:5060;transport=tcp", &o, false)
        .await
        .unwrap();
    assert_eq!(d[0].addr, "[::1]:5060".parse().unwrap());
}

#[tokio::test]
async fn resolution_errors_are_typed() {
    let nk = node();
    let o = Options::default();
    let e = nk.resolve("wrong", &o, false).await.unwrap_err();
    assert_eq!(e.code(), "invalid_uri", "{e}");
    let e = nk
        .resolve("test://127.0.0.1;transport=other", &o, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, nkpacket::Error::InvalidTransport(t) if t == "other"),
        "{e}"
    );
    let e = nk
        .resolve(
            "test://127.0.0.1;transport=tcp;idle_timeout=soon",
            &o,
            false,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, nkpacket::Error::Syntax { key, .. } if key == "idle_timeout"),
        "{e}"
    );
    let e = nk
        .resolve("test://127.0.0.1;transport=tcp;bogus_option=1", &o, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, nkpacket::Error::UnknownOption(k) if k == "bogus_option"),
        "{e}"
    );
    // unknown scheme without transport: no protocol to pick one
    let e = nk.resolve("zzz://127.0.0.1", &o, false).await.unwrap_err();
    assert_eq!(e.code(), "invalid_transport");
    // unknown scheme with a transport: fine, no protocol
    let d = nk
        .resolve("zzz://127.0.0.1:9;transport=tcp", &o, false)
        .await
        .unwrap();
    assert_eq!(d[0].scheme, "");
    // `protocol` option naming nothing registered
    let mut bad = Options::default();
    bad.protocol = Some("nope".into());
    let e = nk
        .resolve("test://127.0.0.1:1;transport=tcp", &bad, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "syntax_error");
}
