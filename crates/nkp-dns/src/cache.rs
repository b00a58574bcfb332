//! The answer cache of a [`DnsResolver`](crate::DnsResolver): one table keyed by
//! (record kind, normalised name), entries expiring after their TTL.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::order::{NaptrRecord, SrvRecord};

/// What kind of answer a cache entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Ips,
    Srv,
    Naptr,
}

/// A cached answer (possibly empty: a negative answer).
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Ips(Vec<IpAddr>),
    Srv(Vec<SrvRecord>),
    Naptr(Vec<NaptrRecord>),
}

/// How often expired entries are swept.
const PURGE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Cache {
    map: HashMap<(Kind, String), (Value, Instant)>,
    last_purge: Instant,
}

impl Cache {
    pub(crate) fn new() -> Self {
        Cache {
            map: HashMap::new(),
            last_purge: Instant::now(),
        }
    }

    /// The live entry, if any; an expired one is removed.
    pub(crate) fn get(&mut self, kind: Kind, name: &str) -> Option<Value> {
        let key = (kind, name.to_string());
        let now = Instant::now();
        match self.map.get(&key) {
            Some((v, exp)) if *exp > now => Some(v.clone()),
            Some(_) => {
                self.map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Stores an entry for `ttl`; a zero TTL stores nothing.
    pub(crate) fn put(&mut self, kind: Kind, name: &str, value: Value, ttl: Duration) {
        let now = Instant::now();
        if now.duration_since(self.last_purge) >= PURGE_EVERY {
            self.map.retain(|_, (_, exp)| *exp > now);
            self.last_purge = now;
        }
        if ttl.is_zero() {
            return;
        }
        self.map
            .insert((kind, name.to_string()), (value, now + ttl));
    }

    pub(crate) fn clear(&mut self, name: &str) {
        for kind in [Kind::Ips, Kind::Srv, Kind::Naptr] {
            self.map.remove(&(kind, name.to_string()));
        }
    }

    pub(crate) fn clear_all(&mut self) {
        self.map.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_expire_clear() {
        let mut c = Cache::new();
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        c.put(
            Kind::Ips,
            "a.test",
            Value::Ips(vec![ip]),
            Duration::from_secs(10),
        );
        c.put(
            Kind::Srv,
            "a.test",
            Value::Srv(vec![]),
            Duration::from_secs(10),
        );
        c.put(Kind::Ips, "zero.test", Value::Ips(vec![ip]), Duration::ZERO);
        assert!(matches!(c.get(Kind::Ips, "a.test"), Some(Value::Ips(v)) if v == [ip]));
        assert!(c.get(Kind::Naptr, "a.test").is_none());
        assert!(c.get(Kind::Ips, "zero.test").is_none());
        c.put(
            Kind::Ips,
            "short.test",
            Value::Ips(vec![]),
            Duration::from_millis(1),
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.get(Kind::Ips, "short.test").is_none());
        assert_eq!(c.len(), 2);
        c.clear("a.test");
        assert_eq!(c.len(), 0);
        c.put(
            Kind::Ips,
            "b.test",
            Value::Ips(vec![]),
            Duration::from_secs(10),
        );
        c.clear_all();
        assert!(c.get(Kind::Ips, "b.test").is_none());
    }
}
