//! The connection table: every live connection, keyed for reuse by
//! (domain, protocol, transport, remote address), plus the global connection count.
//!
//! Sharded read-write locks: lookups (on `send` to a URI) take a shard's read lock only,
//! registration and removal happen once per connection. Sending on a known connection does
//! not touch the table at all.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nkp_core::{Error, TransportKind};
use parking_lot::RwLock;

use super::Connection;

const SHARDS: usize = 16;

/// The reuse key of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    pub(crate) domain: String,
    pub(crate) protocol: Arc<str>,
    pub(crate) transport: TransportKind,
    pub(crate) remote: SocketAddr,
}

pub(crate) struct ConnectionTable {
    shards: Vec<RwLock<HashMap<ConnKey, Vec<Connection>>>>,
    total: AtomicUsize,
    max: AtomicUsize,
}

impl ConnectionTable {
    pub(crate) fn new(max: usize) -> Self {
        ConnectionTable {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            total: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        }
    }

    fn shard(&self, key: &ConnKey) -> &RwLock<HashMap<ConnKey, Vec<Connection>>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    pub(crate) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub(crate) fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Number of live connections.
    pub(crate) fn count(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Reserves a slot under the global cap (exact: at most `max` connections).
    pub(crate) fn reserve(self: &Arc<Self>) -> Result<Slot, Error> {
        let max = self.max();
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Error::MaxConnections { limit: max })?;
        Ok(Slot {
            table: self.clone(),
            key: None,
            conn: None,
        })
    }

    /// Live connections under a key, oldest first.
    pub(crate) fn lookup(&self, key: &ConnKey) -> Vec<Connection> {
        self.shard(key)
            .read()
            .get(key)
            .map(|v| v.iter().filter(|c| c.is_alive()).cloned().collect())
            .unwrap_or_default()
    }

    /// Every live connection.
    pub(crate) fn all(&self) -> Vec<Connection> {
        let mut out: Vec<Connection> = self
            .shards
            .iter()
            .flat_map(|s| s.read().values().flatten().cloned().collect::<Vec<_>>())
            .filter(|c| c.is_alive())
            .collect();
        out.sort_by_key(|c| c.info().serial());
        out
    }

    fn insert(&self, key: &ConnKey, conn: &Connection) {
        self.shard(key)
            .write()
            .entry(key.clone())
            .or_default()
            .push(conn.clone());
    }

    fn remove(&self, key: &ConnKey, conn: &Connection) {
        let mut shard = self.shard(key).write();
        if let Some(v) = shard.get_mut(key) {
            v.retain(|c| c != conn);
            if v.is_empty() {
                shard.remove(key);
            }
        }
    }
}

/// A reserved place in the table; registers the connection once it exists and releases
/// everything when dropped (the connection task holds it for its whole life).
pub(crate) struct Slot {
    table: Arc<ConnectionTable>,
    key: Option<ConnKey>,
    conn: Option<Connection>,
}

impl Slot {
    pub(crate) fn register(&mut self, key: ConnKey, conn: &Connection) {
        self.table.insert(&key, conn);
        self.key = Some(key);
        self.conn = Some(conn.clone());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let (Some(key), Some(conn)) = (&self.key, &self.conn) {
            self.table.remove(key, conn);
        }
        self.table.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Live connections per source IP address of one listener (`max_connections_per_ip`).
#[derive(Default)]
pub(crate) struct IpCounter {
    counts: parking_lot::Mutex<HashMap<std::net::IpAddr, usize>>,
}

impl IpCounter {
    /// Takes a place for `ip` if it has fewer than `limit`; the place is given back when
    /// the guard is dropped.
    pub(crate) fn acquire(self: &Arc<Self>, ip: std::net::IpAddr, limit: usize) -> Option<IpSlot> {
        let mut counts = self.counts.lock();
        let n = counts.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            counter: self.clone(),
            ip,
        })
    }
}

/// One connection's place in an [`IpCounter`].
pub(crate) struct IpSlot {
    counter: Arc<IpCounter>,
    ip: std::net::IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counter.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}
