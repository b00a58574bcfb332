//! A real DNS server for the tests: hickory-server serving zone texts on 127.0.0.1 (UDP and TCP
//! on the same ephemeral port), counting the queries it receives.

#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use nkp_dns::{DnsConfig, DnsResolver};

/// Counts queries, then lets the catalog answer.
struct Counting {
    inner: Catalog,
    queries: Arc<AtomicUsize>,
}

// The expansion of `#[async_trait]` for `RequestHandler::handle_request`, written out so the
// tests need no extra dependency.
impl RequestHandler for Counting {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.inner.handle_request::<R, T>(request, response_handle)
    }
}

type Handler = InMemoryZoneHandler<TokioRuntimeProvider>;

/// A running server.
pub struct ZoneServer {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    zones: Vec<(Name, Arc<Handler>)>,
    server: Server<Counting>,
}

impl ZoneServer {
    /// Serves each `(origin, zone text)`.
    pub async fn start(zones: &[(&str, &str)]) -> ZoneServer {
        let mut catalog = Catalog::new();
        let mut handlers = Vec::new();
        for (origin, text) in zones {
            let origin = Name::from_ascii(origin).unwrap();
            let (origin, records) = Parser::new(*text, None, Some(origin)).parse().unwrap();
            let h = Arc::new(
                Handler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny).unwrap(),
            );
            catalog.upsert(LowerName::from(&origin), vec![h.clone()]);
            handlers.push((origin, h));
        }
        let queries = Arc::new(AtomicUsize::new(0));
        let mut server = Server::new(Counting {
            inner: catalog,
            queries: queries.clone(),
        });
        // UDP and TCP on the same port: retry if the TCP side of a free UDP port is taken.
        let mut bound = None;
        for _ in 0..20 {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                bound = Some((udp, tcp, addr));
                break;
            }
        }
        let (udp, tcp, addr) = bound.expect("a free UDP+TCP port");
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 16);
        ZoneServer {
            addr,
            queries,
            zones: handlers,
            server,
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Adds an A or AAAA record at run time.
    pub async fn add_ip(&self, name: &str, ip: std::net::IpAddr, ttl: u32) {
        let name = Name::from_ascii(name).unwrap();
        let (_, h) = self
            .zones
            .iter()
            .find(|(o, _)| o.zone_of(&name))
            .expect("a zone for the name");
        let data = match ip {
            std::net::IpAddr::V4(v4) => RData::A(A(v4)),
            std::net::IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        assert!(h.upsert(Record::from_rdata(name, ttl, data), 2).await);
    }

    /// A resolver querying only this server.
    pub fn resolver(&self) -> DnsResolver {
        self.resolver_with(|_| {})
    }

    /// A resolver querying only this server, with configuration changes.
    pub fn resolver_with(&self, f: impl FnOnce(&mut DnsConfig)) -> DnsResolver {
        let mut cfg = DnsConfig::with_nameservers(vec![self.addr]);
        cfg.timeout = Duration::from_secs(2);
        f(&mut cfg);
        DnsResolver::new(cfg).unwrap().with_rng_seed(42)
    }

    pub async fn stop(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}

/// The §7.6 fixtures: `test.local` (NAPTR → SRV → A), `sip2sip.info` with `proxy.sipthor.net`,
/// plus dual-stack and IPv6-only hosts.
pub const LOCAL_ZONE: &str = r#"
$ORIGIN local.
$TTL 60
@        IN SOA ns.local. admin.local. 1 3600 600 86400 5
; NAPTR, deliberately out of order; one upper-case flag; three records that must be skipped
test     IN NAPTR 2 2 "S" "SIP+D2U" "" _sip._udp.test4.local.
test     IN NAPTR 2 1 "s" "sip+d2t" "" _sip._tcp.test3.local.
test     IN NAPTR 1 2 "s" "sip+d2t" "" _sip._tcp.test2.local.
test     IN NAPTR 1 1 "s" "sips+d2t" "" _sips._tcp.test1.local.
test     IN NAPTR 1 0 "u" "sip+d2u" "!^.*$!sip:info@example.com!" .
test     IN NAPTR 1 0 "s" "sip+d2u" "!^.*$!x!" _sip._udp.test4.local.
test     IN NAPTR 1 0 "s" "foo+bar" "" _sip._udp.test4.local.
_sips._tcp.test1 IN SRV 1 1 100 test100.local.
_sip._tcp.test2  IN SRV 3 1 300 test300.local.
_sip._tcp.test2  IN SRV 2 5 202 test202.local.
_sip._tcp.test2  IN SRV 2 1 201 test201.local.
_sip._tcp.test2  IN SRV 1 1 200 test200.local.
_sip._tcp.test3  IN SRV 1 1 400 test400.local.
_sip._udp.test4  IN SRV 1 1 500 test500.local.
test100  IN A 1.1.100.1
test100  IN A 1.1.100.2
test200  IN A 1.1.200.1
test201  IN A 1.1.201.1
test202  IN A 1.1.202.1
test300  IN A 1.1.30.1
test500  IN A 1.1.50.1
dual     IN A 10.0.0.1
dual     IN AAAA 2001:db8::1
v6only   IN AAAA 2001:db8::2
plain    IN A 10.0.0.5
_sip._udp.srvonly IN SRV 0 0 5070 plain.local.
srvonly  IN A 10.0.0.6
short 1  IN A 10.0.0.7
"#;

pub const SIP2SIP_ZONE: &str = r#"
$ORIGIN sip2sip.info.
$TTL 60
@        IN SOA ns.sip2sip.info. admin.sip2sip.info. 1 3600 600 86400 5
@        IN NAPTR 30 100 "s" "SIP+D2U" "" _sip._udp.sip2sip.info.
@        IN NAPTR 10 100 "s" "SIP+D2T" "" _sip._tcp.sip2sip.info.
@        IN NAPTR 5 100 "s" "SIPS+D2T" "" _sips._tcp.sip2sip.info.
_sips._tcp IN SRV 0 0 443 proxy.sipthor.net.
_sip._tcp  IN SRV 0 0 5060 proxy.sipthor.net.
_sip._udp  IN SRV 0 0 5060 proxy.sipthor.net.
@        IN A 85.17.186.7
"#;

pub const SIPTHOR_ZONE: &str = r#"
$ORIGIN sipthor.net.
$TTL 60
@        IN SOA ns.sipthor.net. admin.sipthor.net. 1 3600 600 86400 5
proxy    IN A 81.23.228.129
proxy    IN A 85.17.186.7
proxy    IN A 81.23.228.150
"#;

/// A server with the three fixture zones.
pub async fn fixture_server() -> ZoneServer {
    ZoneServer::start(&[
        ("local.", LOCAL_ZONE),
        ("sip2sip.info.", SIP2SIP_ZONE),
        ("sipthor.net.", SIPTHOR_ZONE),
    ])
    .await
}
