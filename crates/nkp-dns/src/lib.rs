//! RFC 3263 location for nkpacket: NAPTR → SRV (RFC 2782 priority and weight) → A/AAAA, with
//! a TTL cache.
//!
//! * [`DnsResolver`] queries through hickory-resolver (from an explicit [`DnsConfig`], or the
//!   system configuration when no nameserver is given) and keeps its own cache, honouring record
//!   TTLs between a minimum and a cap, with brief negative caching.
//! * [`DnsResolver::locate`] turns the DNS-relevant parts of a URI ([`LocateRequest`]) into an
//!   ordered list of [`Destination`]s, asking the protocol's [`LocateRules`] for transports,
//!   default ports and NAPTR services (spec §2.5–§2.7, §7).
//! * [`order`] holds the pure orderings: RFC 2782 weighted SRV order, RFC 3403 NAPTR order and
//!   the per-lookup address shuffle.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), nkp_core::Error> {
//! use std::time::Duration;
//! use nkp_core::TransportKind;
//! use nkp_dns::{DnsConfig, DnsResolver, LocateRequest, SimpleRules, SrvRecord};
//!
//! let dns = DnsResolver::new(DnsConfig::with_nameservers(vec!["127.0.0.1:5353".parse().unwrap()]))?;
//! // Seed the cache instead of serving a zone (a query would go to 127.0.0.1:5353).
//! let ttl = Duration::from_secs(10);
//! dns.insert_naptr("example.test", vec![], ttl);
//! dns.insert_srv("_sip._udp.example.test", vec![SrvRecord::new(1, 1, 5070, "pbx.example.test")], ttl);
//! dns.insert_ips("pbx.example.test", vec!["192.0.2.7".parse().unwrap()], ttl);
//!
//! let found = dns.locate(&LocateRequest::new("sip", "example.test"), &SimpleRules::sip()).await?;
//! assert_eq!(found[0].to_string(), "udp 192.0.2.7 5070");
//! assert_eq!(found[0].transport, Some(TransportKind::Udp));
//! # Ok(()) }
//! ```

mod cache;
mod locate;
pub mod order;
mod resolver;

pub use locate::{
    Destination, LocateRequest, LocateRules, SimpleRules, TransportRule, select_transport,
};
pub use order::{NaptrRecord, SrvRecord};
pub use resolver::{DnsConfig, DnsResolver};
