//! Location of IP literals and special hosts (spec §7.6 tables, §13 items 92, 93, 97): none of
//! these may reach the network, which the counting server checks.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;

use common::ZoneServer;
use nkp_core::{Error, TransportKind};
use nkp_dns::{Destination, DnsResolver, LocateRequest, LocateRules, SimpleRules};

fn d(t: Option<&str>, ip: &str, port: u16) -> Destination {
    Destination {
        transport: t.map(|t| t.parse().unwrap()),
        ip: ip.parse().unwrap(),
        port,
    }
}

async fn run(
    dns: &DnsResolver,
    rules: &dyn LocateRules,
    req: LocateRequest<'_>,
) -> Result<Vec<Destination>, Error> {
    dns.locate(&req, rules).await
}

fn invalid_transport(r: Result<Vec<Destination>, Error>) -> String {
    match r {
        Err(Error::InvalidTransport(t)) => t,
        other => panic!("expected invalid_transport, got {other:?}"),
    }
}

#[tokio::test]
async fn sip_ip_target_table() {
    let srv = ZoneServer::start(&[]).await;
    let dns = srv.resolver();
    let sip = SimpleRules::sip();
    let r = |scheme: &'static str, host: &'static str, port: u16, t: Option<&'static str>| {
        let mut q = LocateRequest::new(scheme, host).port(port);
        q.transport = t;
        q
    };
    // (scheme, host, port, transport) → expected
    let ok: &[(&str, &str, u16, Option<&str>, Destination)] = &[
        (
            "sip",
            "1.2.3.4",
            0,
            Some("udp"),
            d(Some("udp"), "1.2.3.4", 5060),
        ),
        (
            "sip",
            "1.2.3.4",
            0,
            Some("tcp"),
            d(Some("tcp"), "1.2.3.4", 5060),
        ),
        (
            "sip",
            "1.2.3.4",
            0,
            Some("tls"),
            d(Some("tls"), "1.2.3.4", 5061),
        ),
        (
            "sip",
            "1.2.3.4",
            0,
            Some("sctp"),
            d(Some("sctp"), "1.2.3.4", 5060),
        ),
        (
            "sip",
            "1.2.3.4",
            0,
            Some("ws"),
            d(Some("ws"), "1.2.3.4", 80),
        ),
        (
            "sip",
            "1.2.3.4",
            0,
            Some("wss"),
            d(Some("wss"), "1.2.3.4", 443),
        ),
        (
            "sips",
            "1.2.3.4",
            0,
            Some("tls"),
            d(Some("tls"), "1.2.3.4", 5061),
        ),
        (
            "sips",
            "1.2.3.4",
            0,
            Some("wss"),
            d(Some("wss"), "1.2.3.4", 443),
        ),
        (
            "sip",
            "1.2.3.4",
            4321,
            Some("tcp"),
            d(Some("tcp"), "1.2.3.4", 4321),
        ),
        (
            "sips",
            "127.0.0.1",
            4321,
            Some("tls"),
            d(Some("tls"), "127.0.0.1", 4321),
        ),
        ("sip", "1.2.3.4", 0, None, d(Some("udp"), "1.2.3.4", 5060)),
        (
            "sip",
            "1.2.3.4",
            4321,
            None,
            d(Some("udp"), "1.2.3.4", 4321),
        ),
        ("sips", "1.2.3.4", 0, None, d(Some("tls"), "1.2.3.4", 5061)),
        (
            "sips",
            "1.2.3.4",
            4321,
            None,
            d(Some("tls"), "1.2.3.4", 4321),
        ),
        (
            "sip",
            "127.0.0.1",
            1234,
            None,
            d(Some("udp"), "127.0.0.1", 1234),
        ),
        (
            "sips",
            "127.0.0.1",
            1234,
            None,
            d(Some("tls"), "127.0.0.1", 1234),
        ),
        ("sip", "all", 0, None, d(Some("udp"), "0.0.0.0", 5060)),
        ("sips", "all", 0, None, d(Some("tls"), "0.0.0.0", 5061)),
        // Not in the original table: IPv6 literals, `all6`, case-insensitive transport.
        ("sip", "[::1]", 0, Some("TCP"), d(Some("tcp"), "::1", 5060)),
        ("sip", "::1", 5080, None, d(Some("udp"), "::1", 5080)),
        ("sips", "all6", 0, Some("Wss"), d(Some("wss"), "::", 443)),
    ];
    for (scheme, host, port, t, want) in ok {
        let got = run(&dns, &sip, r(scheme, host, *port, *t)).await.unwrap();
        assert_eq!(got, vec![*want], "{scheme}:{host}:{port} {t:?}");
    }
    let bad: &[(&str, &str)] = &[
        ("sip", "other"),
        ("sips", "udp"),
        ("sips", "tcp"),
        ("sips", "sctp"),
        ("sips", "ws"),
        ("sip", "other"),
    ];
    for (scheme, t) in bad {
        let got = run(&dns, &sip, r(scheme, "1.2.3.4", 0, Some(t))).await;
        assert_eq!(invalid_transport(got), *t, "{scheme} {t}");
    }
    // An unknown scheme for a protocol that declares transports.
    assert!(matches!(
        run(&dns, &sip, LocateRequest::new("foo", "1.2.3.4")).await,
        Err(Error::InvalidScheme(s)) if s == "foo"
    ));
    // maddr replaces the host for address resolution.
    let got = run(
        &dns,
        &sip,
        LocateRequest::new("sip", "name.invalid").maddr("5.6.7.8"),
    )
    .await
    .unwrap();
    assert_eq!(got, [d(Some("udp"), "5.6.7.8", 5060)]);
    assert_eq!(srv.queries(), 0, "IP targets never reach the network");
    srv.stop().await;
}

#[tokio::test]
async fn localhost_never_reaches_the_network() {
    let srv = ZoneServer::start(&[]).await;
    let dns = srv.resolver();
    let sip = SimpleRules::sip();
    let got = run(&dns, &sip, LocateRequest::new("sip", "localhost"))
        .await
        .unwrap();
    assert_eq!(
        got,
        [
            d(Some("udp"), "127.0.0.1", 5060),
            d(Some("udp"), "::1", 5060)
        ]
    );
    let got = run(&dns, &sip, LocateRequest::new("sips", "LOCALHOST"))
        .await
        .unwrap();
    assert_eq!(got[0], d(Some("tls"), "127.0.0.1", 5061));
    let ips = dns.ips("localhost", true).await.unwrap();
    assert_eq!(
        ips,
        [
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );

    let v6 = srv.resolver_with(|c| c.prefer_ipv6 = true);
    let ips = v6.ips("localhost", false).await.unwrap();
    assert_eq!(
        ips,
        [
            "::1".parse::<IpAddr>().unwrap(),
            "127.0.0.1".parse().unwrap()
        ]
    );
    assert_eq!(srv.queries(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn without_protocol_and_with_the_reference_protocol() {
    // §7.6 last bullet / §13 item 97.
    let srv = ZoneServer::start(&[]).await;
    let dns = srv.resolver();
    let none = SimpleRules::new();
    let got = run(&dns, &none, LocateRequest::new("http", "1.2.3.4"))
        .await
        .unwrap();
    assert_eq!(got, [d(Some("http"), "1.2.3.4", 0)]);
    let got = run(
        &dns,
        &none,
        LocateRequest::new("http", "4.3.2.1")
            .port(25)
            .transport("tcp"),
    )
    .await
    .unwrap();
    assert_eq!(got, [d(Some("tcp"), "4.3.2.1", 25)]);
    let got = run(&dns, &none, LocateRequest::new("http", "all").port(1200))
        .await
        .unwrap();
    assert_eq!(got, [d(Some("http"), "0.0.0.0", 1200)]);
    let got = run(
        &dns,
        &none,
        LocateRequest::new("http", "[1::5]").transport("tls"),
    )
    .await
    .unwrap();
    assert_eq!(got, [d(Some("tls"), "1::5", 0)]);
    // A scheme that is no transport, no transport given, no protocol: no transport at all.
    let got = run(&dns, &none, LocateRequest::new("foo", "1.2.3.4"))
        .await
        .unwrap();
    assert_eq!(got, [d(None, "1.2.3.4", 0)]);
    // Rust rejects an unknown transport even without a protocol.
    assert_eq!(
        invalid_transport(
            run(
                &dns,
                &none,
                LocateRequest::new("http", "1.2.3.4").transport("smtp")
            )
            .await
        ),
        "smtp"
    );

    // The reference protocol: all eight transports, http/ws 80, https/wss 443, others invalid.
    use TransportKind::*;
    let reference = SimpleRules::new()
        .with_transports("http", &TransportKind::ALL)
        .with_transports("https", &TransportKind::ALL)
        .with_default_port(Http, 80)
        .with_default_port(Ws, 80)
        .with_default_port(Https, 443)
        .with_default_port(Wss, 443);
    let got = run(&dns, &reference, LocateRequest::new("http", "1.2.3.4"))
        .await
        .unwrap();
    assert_eq!(got, [d(Some("http"), "1.2.3.4", 80)]);
    let got = run(&dns, &reference, LocateRequest::new("https", "1.2.3.4"))
        .await
        .unwrap();
    assert_eq!(got, [d(Some("https"), "1.2.3.4", 443)]);
    let got = run(
        &dns,
        &reference,
        LocateRequest::new("https", "[1::5]").transport("https"),
    )
    .await
    .unwrap();
    assert_eq!(got, [d(Some("https"), "1::5", 443)]);
    // Listen mode keeps port 0 and allows transports without a default port.
    for t in ["tls", "udp"] {
        let got = run(
            &dns,
            &reference,
            LocateRequest::new("http", "localhost")
                .transport(t)
                .listen(true),
        )
        .await
        .unwrap();
        assert_eq!(got[0], d(Some(t), "127.0.0.1", 0));
    }
    // Connect mode: tls has no default port → invalid_transport.
    assert_eq!(
        invalid_transport(
            run(
                &dns,
                &reference,
                LocateRequest::new("http", "localhost").transport("tls")
            )
            .await
        ),
        "tls"
    );
    // Transport conversion: tcp → http.
    let conv = SimpleRules::new()
        .with_transports("web", &[Http])
        .with_conversion("web", Tcp, Http)
        .with_default_port(Http, 8080);
    let got = run(
        &dns,
        &conv,
        LocateRequest::new("web", "1.2.3.4").transport("tcp"),
    )
    .await
    .unwrap();
    assert_eq!(got, [d(Some("http"), "1.2.3.4", 8080)]);
    assert_eq!(srv.queries(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn default_config_uses_the_system_resolver_and_still_answers_literals() {
    // Builds from /etc/resolv.conf (or, if unreadable, with no nameserver); literals and
    // special hosts never need it.
    let dns = DnsResolver::new(nkp_dns::DnsConfig::default()).unwrap();
    assert!(dns.config().nameservers.is_empty());
    assert_eq!(
        dns.ips("[2001:db8::7]", false).await.unwrap(),
        ["2001:db8::7".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        dns.ips("all", false).await.unwrap(),
        ["0.0.0.0".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        dns.ips("all6", false).await.unwrap(),
        ["::".parse::<IpAddr>().unwrap()]
    );
    let got = dns
        .locate(
            &LocateRequest::new("sip", "localhost").listen(true),
            &SimpleRules::sip(),
        )
        .await
        .unwrap();
    assert_eq!(got[0], d(Some("udp"), "127.0.0.1", 0));
}

/// A hand-written rule set with the trait's defaults: a missing default port leaves port 0.
struct Lenient;

impl LocateRules for Lenient {
    fn transport(
        &self,
        _scheme: &str,
        requested: Option<&str>,
    ) -> Result<Option<TransportKind>, Error> {
        nkp_dns::select_transport(
            requested,
            Some(&[
                nkp_dns::TransportRule::Plain(TransportKind::Http),
                nkp_dns::TransportRule::Plain(TransportKind::Tls),
            ]),
        )
    }
    fn default_port(&self, transport: TransportKind) -> Option<u16> {
        (transport == TransportKind::Http).then_some(80)
    }
    fn naptr_transport(&self, _scheme: &str, _service: &str) -> Option<TransportKind> {
        None
    }
    fn uses_naptr(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn missing_default_port_is_zero_unless_required() {
    let dns = DnsResolver::new(nkp_dns::DnsConfig::default()).unwrap();
    let got = run(&dns, &Lenient, LocateRequest::new("web", "1.2.3.4"))
        .await
        .unwrap();
    assert_eq!(got, [d(Some("http"), "1.2.3.4", 80)]);
    let got = run(
        &dns,
        &Lenient,
        LocateRequest::new("web", "1.2.3.4").transport("tls"),
    )
    .await
    .unwrap();
    assert_eq!(got, [d(Some("tls"), "1.2.3.4", 0)]);
    assert_eq!(
        invalid_transport(
            run(
                &dns,
                &Lenient,
                LocateRequest::new("web", "1.2.3.4").transport("udp")
            )
            .await
        ),
        "udp"
    );
}
