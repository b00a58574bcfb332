//! Location against real zones served by hickory-server on loopback (spec §7.6, §13 items
//! 94–96), IPv6 records, the cache, and a server that never answers.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{ZoneServer, fixture_server};
use nkp_core::{Error, TransportKind};
use nkp_dns::{Destination, DnsConfig, DnsResolver, LocateRequest, SimpleRules};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(v: &[Destination]) -> HashSet<(Option<TransportKind>, IpAddr, u16)> {
    v.iter().map(|d| (d.transport, d.ip, d.port)).collect()
}

fn dset(items: &[(&str, &str, u16)]) -> HashSet<(Option<TransportKind>, IpAddr, u16)> {
    items
        .iter()
        .map(|(t, i, p)| (Some(t.parse().unwrap()), ip(i), *p))
        .collect()
}

#[tokio::test]
async fn naptr_srv_a_chain_test_local() {
    let srv = fixture_server().await;
    let sip = SimpleRules::sip();
    // Several seeds: the order constraints must hold for every weighted draw.
    let mut seen_201_first = HashSet::new();
    for seed in 0..20 {
        let dns = srv.resolver().with_rng_seed(seed);
        let got = dns
            .locate(&LocateRequest::new("sip", "test.local"), &sip)
            .await
            .unwrap();
        assert_eq!(got.len(), 7, "{got:?}");
        assert_eq!(set(&got).len(), 7, "no duplicates: {got:?}");
        assert_eq!(
            set(&got[0..2]),
            dset(&[("tls", "1.1.100.1", 100), ("tls", "1.1.100.2", 100)])
        );
        assert_eq!(set(&got[2..3]), dset(&[("tcp", "1.1.200.1", 200)]));
        assert_eq!(
            set(&got[3..5]),
            dset(&[("tcp", "1.1.201.1", 201), ("tcp", "1.1.202.1", 202)])
        );
        assert_eq!(set(&got[5..6]), dset(&[("tcp", "1.1.30.1", 300)]));
        assert_eq!(set(&got[6..7]), dset(&[("udp", "1.1.50.1", 500)]));
        seen_201_first.insert(got[3].port);
    }
    assert_eq!(
        seen_201_first.len(),
        2,
        "both weighted orders of 201/202 occur"
    );

    let dns = srv.resolver();
    let got = dns
        .locate(&LocateRequest::new("sips", "test.local"), &sip)
        .await
        .unwrap();
    assert_eq!(
        set(&got),
        dset(&[("tls", "1.1.100.1", 100), ("tls", "1.1.100.2", 100)])
    );
    assert_eq!(got.len(), 2);

    // The NAPTR records come back sorted by order then preference.
    let n = dns.naptr("test.local", false).await.unwrap();
    let keys: Vec<(u16, u16)> = n.iter().map(|r| (r.order, r.preference)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(n.len(), 7);

    // A protocol without NAPTR goes straight to SRV _sip._udp (none here) then A records:
    // test.local has no address, so nothing.
    let no_naptr = SimpleRules::new()
        .with_transports("sip", &[TransportKind::Udp])
        .with_default_port(TransportKind::Udp, 5060);
    let got = dns
        .locate(&LocateRequest::new("sip", "test.local"), &no_naptr)
        .await
        .unwrap();
    assert!(got.is_empty(), "{got:?}");
    srv.stop().await;
}

#[tokio::test]
async fn sip2sip_style_naptr() {
    let srv = fixture_server().await;
    let dns = srv.resolver();
    let sip = SimpleRules::sip();
    let got = dns
        .locate(&LocateRequest::new("sip", "sip2sip.info"), &sip)
        .await
        .unwrap();
    assert_eq!(got.len(), 9, "{got:?}");
    let ips = ["81.23.228.129", "85.17.186.7", "81.23.228.150"];
    for (i, (t, port)) in [("tls", 443), ("tcp", 5060), ("udp", 5060)]
        .iter()
        .enumerate()
    {
        let want: Vec<(&str, &str, u16)> = ips.iter().map(|a| (*t, *a, *port)).collect();
        assert_eq!(set(&got[i * 3..i * 3 + 3]), dset(&want), "group {t}");
    }
    // Listen mode: no NAPTR/SRV, the host's own A record, port 0, first transport of sip.
    let got = dns
        .locate(
            &LocateRequest::new("sip", "sip2sip.info").listen(true),
            &sip,
        )
        .await
        .unwrap();
    assert_eq!(
        got,
        [Destination {
            transport: Some(TransportKind::Udp),
            ip: ip("85.17.186.7"),
            port: 0
        }]
    );
    srv.stop().await;
}

#[tokio::test]
async fn srv_then_a_fallback_and_explicit_port() {
    let srv = fixture_server().await;
    let dns = srv.resolver();
    let sip = SimpleRules::sip();
    // D: transport given, SRV found.
    let got = dns
        .locate(
            &LocateRequest::new("sip", "srvonly.local").transport("udp"),
            &sip,
        )
        .await
        .unwrap();
    assert_eq!(set(&got), dset(&[("udp", "10.0.0.5", 5070)]));
    // D: transport given, no SRV → A with the default port.
    let got = dns
        .locate(
            &LocateRequest::new("sip", "srvonly.local").transport("tcp"),
            &sip,
        )
        .await
        .unwrap();
    assert_eq!(set(&got), dset(&[("tcp", "10.0.0.6", 5060)]));
    // C without NAPTR: first transport (udp) → SRV _sip._udp.
    let got = dns
        .locate(&LocateRequest::new("sip", "srvonly.local"), &sip)
        .await
        .unwrap();
    assert_eq!(set(&got), dset(&[("udp", "10.0.0.5", 5070)]));
    // E: explicit port, A records only.
    let got = dns
        .locate(&LocateRequest::new("sip", "srvonly.local").port(7000), &sip)
        .await
        .unwrap();
    assert_eq!(set(&got), dset(&[("udp", "10.0.0.6", 7000)]));
    // A name without records contributes nothing.
    let got = dns
        .locate(&LocateRequest::new("sip", "nothing.local").port(7000), &sip)
        .await
        .unwrap();
    assert!(got.is_empty());
    assert!(dns.ips("nothing.local", false).await.unwrap().is_empty());
    assert!(
        dns.srvs("_x._udp.nothing.local", false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(dns.naptr("nothing.local", false).await.unwrap().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn ipv6_records() {
    let srv = fixture_server().await;
    let dns = srv.resolver();
    assert_eq!(
        dns.ips("dual.local", false).await.unwrap(),
        [ip("10.0.0.1"), ip("2001:db8::1")]
    );
    assert_eq!(
        dns.ips("v6only.local", false).await.unwrap(),
        [ip("2001:db8::2")]
    );
    let v6 = srv.resolver_with(|c| c.prefer_ipv6 = true);
    assert_eq!(
        v6.ips("dual.local", false).await.unwrap(),
        [ip("2001:db8::1"), ip("10.0.0.1")]
    );
    let got = dns
        .locate(
            &LocateRequest::new("sip", "v6only.local")
                .port(5062)
                .transport("tcp"),
            &SimpleRules::sip(),
        )
        .await
        .unwrap();
    assert_eq!(set(&got), dset(&[("tcp", "2001:db8::2", 5062)]));
    srv.stop().await;
}

#[tokio::test]
async fn addresses_are_shuffled_per_lookup() {
    let srv = fixture_server().await;
    let dns = srv.resolver();
    let mut firsts = HashSet::new();
    for _ in 0..40 {
        let ips = dns.ips("proxy.sipthor.net", false).await.unwrap();
        assert_eq!(ips.len(), 3);
        firsts.insert(ips[0]);
    }
    assert_eq!(firsts.len(), 3, "every address comes first sometimes");
    srv.stop().await;
}

#[tokio::test]
async fn cache_hits_no_cache_and_clear() {
    let srv = fixture_server().await;
    let dns = srv.resolver();
    assert_eq!(
        dns.ips("plain.local", false).await.unwrap(),
        [ip("10.0.0.5")]
    );
    let after_first = srv.queries();
    assert!(after_first > 0);
    // Cached: no query, and a zone change is not seen.
    srv.add_ip("plain.local.", ip("10.0.0.55"), 60).await;
    assert_eq!(
        dns.ips("plain.local", false).await.unwrap(),
        [ip("10.0.0.5")]
    );
    assert_eq!(srv.queries(), after_first);
    // no_cache: fresh query, and the answer is stored.
    let fresh: HashSet<IpAddr> = dns
        .ips("plain.local", true)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(fresh, HashSet::from([ip("10.0.0.5"), ip("10.0.0.55")]));
    let after_fresh = srv.queries();
    assert!(after_fresh > after_first);
    assert_eq!(dns.ips("plain.local", false).await.unwrap().len(), 2);
    assert_eq!(srv.queries(), after_fresh);
    // Clones share the cache.
    assert_eq!(
        dns.clone().ips("plain.local", false).await.unwrap().len(),
        2
    );
    assert_eq!(srv.queries(), after_fresh);
    // SRV and NAPTR are cached too.
    dns.srvs("_sip._udp.srvonly.local", false).await.unwrap();
    dns.naptr("test.local", false).await.unwrap();
    let q = srv.queries();
    dns.srvs("_sip._udp.srvonly.local", false).await.unwrap();
    dns.naptr("test.local", false).await.unwrap();
    assert_eq!(srv.queries(), q);
    // Negative answers are cached.
    assert!(dns.ips("missing.local", false).await.unwrap().is_empty());
    let q = srv.queries();
    assert!(dns.ips("missing.local", false).await.unwrap().is_empty());
    assert_eq!(srv.queries(), q);
    // clear(name) forgets that name only.
    dns.clear("plain.local");
    dns.ips("plain.local", false).await.unwrap();
    assert!(srv.queries() > q);
    let q = srv.queries();
    dns.naptr("test.local", false).await.unwrap();
    assert_eq!(srv.queries(), q);
    // clear_all forgets everything.
    dns.clear_all();
    dns.naptr("test.local", false).await.unwrap();
    assert!(srv.queries() > q);
    srv.stop().await;
}

#[tokio::test]
async fn cache_honours_ttl_and_cap() {
    let srv = fixture_server().await;
    // `short.local` has TTL 1 s; everything else 60 s, capped here at 1 s for `capped`.
    let dns = srv.resolver();
    dns.ips("short.local", false).await.unwrap();
    dns.ips("plain.local", false).await.unwrap();
    let q = srv.queries();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    dns.ips("plain.local", false).await.unwrap();
    assert_eq!(srv.queries(), q, "60 s TTL capped at 30 s: still cached");
    dns.ips("short.local", false).await.unwrap();
    assert!(srv.queries() > q, "1 s TTL expired");

    let capped = srv.resolver_with(|c| c.cache_max_ttl = Duration::from_secs(1));
    capped.ips("plain.local", false).await.unwrap();
    let q = srv.queries();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    capped.ips("plain.local", false).await.unwrap();
    assert!(srv.queries() > q, "cap of 1 s applied to a 60 s record");

    let floor = srv.resolver_with(|c| c.cache_min_ttl = Duration::from_secs(20));
    floor.ips("short.local", false).await.unwrap();
    let q = srv.queries();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    floor.ips("short.local", false).await.unwrap();
    assert_eq!(srv.queries(), q, "minimum of 20 s applied to a 1 s record");

    let off = srv.resolver_with(|c| c.cache_max_ttl = Duration::ZERO);
    off.ips("plain.local", false).await.unwrap();
    let q = srv.queries();
    off.ips("plain.local", false).await.unwrap();
    assert!(srv.queries() > q, "a zero cap disables the cache");
    srv.stop().await;
}

#[tokio::test]
async fn test_hooks_seed_the_cache() {
    let srv = ZoneServer::start(&[]).await;
    let dns = srv.resolver();
    let ttl = Duration::from_secs(10);
    dns.insert_naptr(
        "seeded.test",
        vec![nkp_dns::NaptrRecord::new(
            1,
            1,
            "s",
            "SIPS+D2T",
            "",
            "_sips._tcp.seeded.test",
        )],
        ttl,
    );
    dns.insert_srv(
        "_sips._tcp.seeded.test",
        vec![nkp_dns::SrvRecord::new(1, 1, 5061, "a.seeded.test")],
        ttl,
    );
    dns.insert_ips(
        "a.seeded.test",
        vec![ip("192.0.2.1"), ip("2001:db8::9")],
        ttl,
    );
    let got = dns
        .locate(
            &LocateRequest::new("sip", "seeded.test"),
            &SimpleRules::sip(),
        )
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        ["tls 192.0.2.1 5061", "tls 2001:db8::9 5061"]
    );
    assert_eq!(srv.queries(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn silent_server_times_out_with_the_query_named() {
    // A bound UDP socket that never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = silent.local_addr().unwrap();
    let mut cfg = DnsConfig::with_nameservers(vec![addr]);
    cfg.timeout = Duration::from_millis(300);
    cfg.attempts = 2;
    let dns = DnsResolver::new(cfg).unwrap();
    let start = Instant::now();
    let err = dns.ips("silent.test", false).await.unwrap_err();
    let took = start.elapsed();
    match &err {
        Error::Dns(msg) => {
            assert!(msg.contains("silent.test"), "{msg}");
            assert!(msg.contains("timed out"), "{msg}");
        }
        other => panic!("expected a DNS error, got {other:?}"),
    }
    // timeout × attempts, plus slack for a loaded machine (an upper bound, not a benchmark).
    assert!(
        took < Duration::from_millis(300 * 2 + 3000),
        "took {took:?}"
    );
    let err = dns.naptr("silent.test", false).await.unwrap_err();
    assert!(
        err.to_string().contains("NAPTR query for silent.test"),
        "{err}"
    );
    // locate propagates it.
    let err = dns
        .locate(
            &LocateRequest::new("sip", "silent.test"),
            &SimpleRules::sip(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "dns_error");
    drop(silent);
}
