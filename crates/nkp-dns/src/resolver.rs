//! [`DnsResolver`]: hickory queries, our cache, our ordering.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use nkp_core::Error;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::cache::{Cache, Kind, Value};
use crate::order::{self, NaptrRecord, SrvRecord, normalize_name};

/// How a [`DnsResolver`] queries and caches.
///
/// The default uses the system configuration (`/etc/resolv.conf` and the hosts file); give
/// `nameservers` to use exactly those servers (over UDP, with TCP for truncated answers) and
/// nothing from the system.
///
/// ```
/// use std::time::Duration;
/// use nkp_dns::DnsConfig;
///
/// let cfg = DnsConfig::with_nameservers(vec!["127.0.0.1:5353".parse().unwrap()]);
/// assert_eq!(cfg.cache_max_ttl, Duration::from_secs(30));
/// assert!(!cfg.prefer_ipv6);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Servers to query, `ip:port`. Empty: the system configuration.
    pub nameservers: Vec<SocketAddr>,
    /// Time to wait for one answer from a server.
    pub timeout: Duration,
    /// How many times a query is tried before failing.
    pub attempts: usize,
    /// Longest time an answer is cached, whatever its TTL (the original's fixed 30 s).
    /// Zero disables the cache.
    pub cache_max_ttl: Duration,
    /// Shortest time a positive answer is cached, whatever its TTL.
    pub cache_min_ttl: Duration,
    /// How long a negative answer (no such name, no records) is cached (capped by
    /// `cache_max_ttl` and by the zone's negative TTL when the server gives one).
    pub negative_ttl: Duration,
    /// Put IPv6 addresses before IPv4 ones (default: IPv4 first).
    pub prefer_ipv6: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            cache_max_ttl: Duration::from_secs(30),
            cache_min_ttl: Duration::ZERO,
            negative_ttl: Duration::from_secs(5),
            prefer_ipv6: false,
        }
    }
}

impl DnsConfig {
    /// The default configuration, querying only `nameservers`.
    pub fn with_nameservers(nameservers: Vec<SocketAddr>) -> Self {
        DnsConfig {
            nameservers,
            ..DnsConfig::default()
        }
    }
}

/// A DNS resolver for RFC 3263-style location, with its own cache.
///
/// Cheap to clone: clones share the connection pool, the cache and the random generator.
/// Every lookup method takes `no_cache`: when true, the cache is not read (a fresh query is
/// made) but the answer is still stored.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), nkp_core::Error> {
/// use std::time::Duration;
/// use nkp_dns::{DnsConfig, DnsResolver};
///
/// // A resolver pointed at a (here unused) local server: IP literals and `localhost`
/// // never reach the network, and the test hooks fill the cache.
/// let dns = DnsResolver::new(DnsConfig::with_nameservers(vec!["127.0.0.1:5353".parse().unwrap()]))?
///     .with_rng_seed(1);
/// assert_eq!(dns.ips("localhost", false).await?, ["127.0.0.1".parse::<std::net::IpAddr>().unwrap(), "::1".parse().unwrap()]);
/// dns.insert_ips("web.example", vec!["192.0.2.1".parse().unwrap()], Duration::from_secs(10));
/// assert_eq!(dns.ips("web.example", false).await?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DnsResolver {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    cfg: DnsConfig,
    cache: Mutex<Cache>,
    rng: Mutex<StdRng>,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// A query's outcome before caching: records with their smallest TTL, or nothing (with the
/// negative TTL the server gave, if any).
enum Answer<T> {
    Records(Vec<T>, u32),
    Empty(Option<u32>),
}

impl DnsResolver {
    /// A resolver with this configuration (the system one when `cfg.nameservers` is empty;
    /// if that cannot be read, a warning is logged and only IP literals, `localhost` and
    /// cached names resolve).
    pub fn new(cfg: DnsConfig) -> Result<Self, Error> {
        let (rcfg, mut opts) = if cfg.nameservers.is_empty() {
            match hickory_resolver::system_conf::read_system_conf() {
                Ok((c, o)) => (c, o),
                Err(e) => {
                    tracing::warn!("cannot read the system DNS configuration: {e}");
                    (ResolverConfig::from_name_servers(Vec::new()), {
                        let mut o = ResolverOpts::default();
                        o.use_hosts_file = ResolveHosts::Always;
                        o
                    })
                }
            }
        } else {
            let servers = cfg
                .nameservers
                .iter()
                .map(|sa| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = sa.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = sa.port();
                    NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut o = ResolverOpts::default();
            o.use_hosts_file = ResolveHosts::Never;
            (ResolverConfig::from_name_servers(servers), o)
        };
        opts.timeout = cfg.timeout;
        opts.attempts = cfg.attempts.max(1);
        opts.cache_size = 0; // our cache, not hickory's
        let resolver = Resolver::builder_with_config(rcfg, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| Error::Dns(format!("cannot build the resolver: {e}")))?;
        Ok(DnsResolver {
            inner: Arc::new(Inner {
                resolver,
                cfg,
                cache: Mutex::new(Cache::new()),
                rng: Mutex::new(StdRng::from_os_rng()),
            }),
        })
    }

    /// Reseeds the random generator used for SRV weights and address shuffles, so that tests
    /// get reproducible orders. Affects every clone.
    pub fn with_rng_seed(self, seed: u64) -> Self {
        *self.inner.rng.lock() = StdRng::seed_from_u64(seed);
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &DnsConfig {
        &self.inner.cfg
    }

    /// The addresses of `host`: A and AAAA records (IPv4 first unless `prefer_ipv6`), each
    /// family shuffled per call (2–3 addresses: a random rotation; more: a random permutation).
    ///
    /// IP literals (IPv6 with or without brackets), `localhost` (127.0.0.1 then ::1), `all`
    /// (0.0.0.0) and `all6` (::) are answered without any query. A name with no address gives
    /// an empty list, not an error; a failed query (timeout, server failure) is an
    /// [`Error::Dns`] naming it.
    pub async fn ips(&self, host: &str, no_cache: bool) -> Result<Vec<IpAddr>, Error> {
        let stored = self.stored_ips(host, no_cache).await?;
        Ok(self.arrange_ips(&stored))
    }

    /// The addresses of `host` in family order, before the per-call shuffle.
    async fn stored_ips(&self, host: &str, no_cache: bool) -> Result<Vec<IpAddr>, Error> {
        if let Some(ips) = self.special_host(host) {
            return Ok(ips);
        }
        let name = normalize_name(host);
        match self.cached(Kind::Ips, &name, no_cache) {
            Some(Value::Ips(v)) => Ok(v),
            _ => self.query_ips(&name).await,
        }
    }

    /// The SRV records of `name` (e.g. `_sip._udp.example.com`) ordered as RFC 2782 says
    /// (priority groups in order, weighted random order inside each), each target expanded to
    /// its addresses (shuffled); targets without addresses (or whose lookup fails) contribute
    /// nothing. Distinct targets are looked up concurrently, each once.
    pub async fn srvs(&self, name: &str, no_cache: bool) -> Result<Vec<(IpAddr, u16)>, Error> {
        let records = self.srv_records(name, no_cache).await?;
        let ordered = {
            let mut rng = self.inner.rng.lock();
            order::rfc2782_order(&records, &mut *rng)
        };
        let mut targets: Vec<&str> = ordered.iter().map(|r| r.target.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        let lookups = targets.iter().map(|t| self.stored_ips(t, no_cache));
        let results = futures_util::future::join_all(lookups).await;
        let mut addrs = std::collections::HashMap::new();
        for (target, result) in targets.iter().zip(results) {
            match result {
                Ok(ips) => {
                    addrs.insert(*target, ips);
                }
                Err(e) => tracing::debug!("SRV {name}: skipping target {target}: {e}"),
            }
        }
        let mut out = Vec::new();
        for rec in &ordered {
            if let Some(stored) = addrs.get(rec.target.as_str()) {
                let ips = self.arrange_ips(stored);
                out.extend(ips.into_iter().map(|ip| (ip, rec.port)));
            }
        }
        Ok(out)
    }

    /// The raw SRV records of `name`, in the order received (or stored).
    pub async fn srv_records(&self, name: &str, no_cache: bool) -> Result<Vec<SrvRecord>, Error> {
        let name = normalize_name(name);
        if let Some(Value::Srv(v)) = self.cached(Kind::Srv, &name, no_cache) {
            return Ok(v);
        }
        let answer = self
            .query(&name, RecordType::SRV, |d| match d {
                RData::SRV(s) => Some(SrvRecord::new(
                    s.priority,
                    s.weight,
                    s.port,
                    &s.target.to_utf8(),
                )),
                _ => None,
            })
            .await?;
        let recs = self.store(Kind::Srv, &name, answer, Value::Srv);
        Ok(recs)
    }

    /// The NAPTR records of `domain`, ordered by order then preference (RFC 3403).
    pub async fn naptr(&self, domain: &str, no_cache: bool) -> Result<Vec<NaptrRecord>, Error> {
        let name = normalize_name(domain);
        if let Some(Value::Naptr(v)) = self.cached(Kind::Naptr, &name, no_cache) {
            return Ok(v);
        }
        let answer = self
            .query(&name, RecordType::NAPTR, |d| match d {
                RData::NAPTR(n) => Some(NaptrRecord::new(
                    n.order,
                    n.preference,
                    &String::from_utf8_lossy(&n.flags),
                    &String::from_utf8_lossy(&n.services),
                    &String::from_utf8_lossy(&n.regexp),
                    &n.replacement.to_utf8(),
                )),
                _ => None,
            })
            .await?;
        let answer = match answer {
            Answer::Records(v, ttl) => Answer::Records(order::naptr_order(&v), ttl),
            e => e,
        };
        Ok(self.store(Kind::Naptr, &name, answer, Value::Naptr))
    }

    /// Forgets the cached addresses, SRV and NAPTR records of exactly this name.
    pub fn clear(&self, domain: &str) {
        self.inner.cache.lock().clear(&normalize_name(domain));
    }

    /// Empties the cache.
    pub fn clear_all(&self) {
        self.inner.cache.lock().clear_all();
    }

    /// Test hook: caches `ips` as the addresses of `host` for `ttl` (not capped).
    pub fn insert_ips(&self, host: &str, ips: Vec<IpAddr>, ttl: Duration) {
        let ips = self.family_order(ips);
        self.inner
            .cache
            .lock()
            .put(Kind::Ips, &normalize_name(host), Value::Ips(ips), ttl);
    }

    /// Test hook: caches `records` as the SRV records of `name` for `ttl` (not capped).
    pub fn insert_srv(&self, name: &str, records: Vec<SrvRecord>, ttl: Duration) {
        self.inner
            .cache
            .lock()
            .put(Kind::Srv, &normalize_name(name), Value::Srv(records), ttl);
    }

    /// Test hook: caches `records` as the NAPTR records of `domain` for `ttl` (not capped);
    /// they are sorted as a query's answer would be.
    pub fn insert_naptr(&self, domain: &str, records: Vec<NaptrRecord>, ttl: Duration) {
        let records = order::naptr_order(&records);
        self.inner.cache.lock().put(
            Kind::Naptr,
            &normalize_name(domain),
            Value::Naptr(records),
            ttl,
        );
    }

    /// Addresses that never need a query: IP literals and the special hosts.
    pub(crate) fn special_host(&self, host: &str) -> Option<Vec<IpAddr>> {
        let h = host.trim();
        let bare = h
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(h);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(vec![ip]);
        }
        match normalize_name(h).as_str() {
            "all" => Some(vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]),
            "all6" => Some(vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]),
            "localhost" => Some(self.family_order(vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ])),
            _ => None,
        }
    }

    fn cached(&self, kind: Kind, name: &str, no_cache: bool) -> Option<Value> {
        if no_cache {
            return None;
        }
        self.inner.cache.lock().get(kind, name)
    }

    /// Caches an answer with its TTL (clamped), returns its records.
    fn store<T: Clone>(
        &self,
        kind: Kind,
        name: &str,
        answer: Answer<T>,
        wrap: fn(Vec<T>) -> Value,
    ) -> Vec<T> {
        let (records, ttl) = match answer {
            Answer::Records(v, ttl) => {
                let ttl = self.positive_ttl(ttl);
                (v, ttl)
            }
            Answer::Empty(neg) => (Vec::new(), self.negative_ttl(neg)),
        };
        self.inner
            .cache
            .lock()
            .put(kind, name, wrap(records.clone()), ttl);
        records
    }

    fn positive_ttl(&self, ttl: u32) -> Duration {
        let cfg = &self.inner.cfg;
        Duration::from_secs(u64::from(ttl))
            .max(cfg.cache_min_ttl)
            .min(cfg.cache_max_ttl)
    }

    fn negative_ttl(&self, server: Option<u32>) -> Duration {
        let cfg = &self.inner.cfg;
        let mut t = cfg.negative_ttl.min(cfg.cache_max_ttl);
        if let Some(s) = server {
            t = t.min(Duration::from_secs(u64::from(s)));
        }
        t
    }

    async fn query_ips(&self, name: &str) -> Result<Vec<IpAddr>, Error> {
        let a = self.query(name, RecordType::A, |d| match d {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        });
        let aaaa = self.query(name, RecordType::AAAA, |d| match d {
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        });
        let (a, aaaa) = tokio::join!(a, aaaa);
        let mut ips = Vec::new();
        let mut ttls = Vec::new();
        let mut negs = Vec::new();
        let mut errors = Vec::new();
        for r in [a, aaaa] {
            match r {
                Ok(Answer::Records(v, ttl)) => {
                    for ip in v {
                        if !ips.contains(&ip) {
                            ips.push(ip);
                        }
                    }
                    ttls.push(ttl);
                }
                Ok(Answer::Empty(n)) => negs.push(n),
                Err(e) => errors.push(e),
            }
        }
        let failed = !errors.is_empty();
        if ips.is_empty()
            && let Some(e) = errors.into_iter().next()
        {
            return Err(e);
        }
        let ttl = match ttls.iter().min() {
            Some(&t) if !failed => self.positive_ttl(t),
            Some(&t) => self.positive_ttl(t).min(self.negative_ttl(None)),
            None => self.negative_ttl(negs.into_iter().flatten().min()),
        };
        let ips = self.family_order(ips);
        self.inner
            .cache
            .lock()
            .put(Kind::Ips, name, Value::Ips(ips.clone()), ttl);
        Ok(ips)
    }

    /// Sorts by family (IPv4 first unless `prefer_ipv6`), keeping the order inside a family.
    fn family_order(&self, mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
        let v6_first = self.inner.cfg.prefer_ipv6;
        ips.sort_by_key(|ip| ip.is_ipv4() == v6_first); // stable
        ips
    }

    /// Family order, then the per-call shuffle inside each family.
    fn arrange_ips(&self, stored: &[IpAddr]) -> Vec<IpAddr> {
        let ordered = self.family_order(stored.to_vec());
        let split = ordered
            .iter()
            .position(|ip| ip.is_ipv4() != ordered[0].is_ipv4())
            .unwrap_or(ordered.len());
        let mut rng = self.inner.rng.lock();
        let mut out = order::shuffle_addrs(&ordered[..split], &mut *rng);
        out.extend(order::shuffle_addrs(&ordered[split..], &mut *rng));
        out
    }

    /// One query; "no such name" and "no records" are an empty answer, anything else an error
    /// naming the query.
    async fn query<T>(
        &self,
        name: &str,
        rtype: RecordType,
        extract: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>, Error> {
        // Names with a dot are fully qualified: no search domains.
        let qname = if name.contains('.') {
            format!("{name}.")
        } else {
            name.to_string()
        };
        let cfg = &self.inner.cfg;
        let limit = cfg.timeout * u32::try_from(cfg.attempts.max(1) + 1).unwrap_or(u32::MAX);
        let lookup =
            tokio::time::timeout(limit, self.inner.resolver.lookup(qname.as_str(), rtype)).await;
        let lookup = match lookup {
            Err(_) => {
                return Err(Error::Dns(format!(
                    "{rtype} query for {name} timed out after {} ms",
                    limit.as_millis()
                )));
            }
            Ok(r) => r,
        };
        match lookup {
            Ok(l) => {
                let mut ttl = u32::MAX;
                let mut out = Vec::new();
                for r in l.answers() {
                    if let Some(x) = extract(&r.data) {
                        ttl = ttl.min(r.ttl);
                        out.push(x);
                    }
                }
                if out.is_empty() {
                    Ok(Answer::Empty(None))
                } else {
                    Ok(Answer::Records(out, ttl))
                }
            }
            Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => Ok(Answer::Empty(nr.negative_ttl)),
            Err(NetError::Timeout) => Err(Error::Dns(format!(
                "{rtype} query for {name} timed out ({} attempts of {} ms)",
                cfg.attempts.max(1),
                cfg.timeout.as_millis()
            ))),
            Err(e) => Err(Error::Dns(format!("{rtype} query for {name} failed: {e}"))),
        }
    }
}
