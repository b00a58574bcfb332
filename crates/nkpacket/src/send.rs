//! `send` and `connect` (§5): walking the destination list, reusing connections, opening new
//! ones, and the UDP → TCP fallback.

use std::collections::VecDeque;
use std::sync::Arc;

use nkp_core::options::ResolveType;
use nkp_core::{ConnectRequest, Error, Options, TransportKind};
use tokio::sync::oneshot;

use crate::conn::table::ConnKey;
use crate::conn::{ConnInfo, ConnSetup, Connection, Direction, LinkSource};
use crate::dynproto::ProtoRef;
use crate::listener::ListenerHandle;
use crate::node::Nkpacket;
use crate::resolve::{self, Destination, Spec, Target};

/// A message that can be sent more than once (one try per destination).
trait Resendable: Send + Sync {
    fn send_on<'a>(
        &'a self,
        conn: &'a Connection,
    ) -> futures_core::future::BoxFuture<'a, Result<(), Error>>;
}

struct Plain<M>(M);
impl<M: Clone + Send + Sync + 'static> Resendable for Plain<M> {
    fn send_on<'a>(
        &'a self,
        conn: &'a Connection,
    ) -> futures_core::future::BoxFuture<'a, Result<(), Error>> {
        Box::pin(conn.send(self.0.clone()))
    }
}

struct WithFn<F>(F);
impl<M, F> Resendable for WithFn<F>
where
    M: Send + 'static,
    F: Fn(&ConnInfo) -> M + Clone + Send + Sync + 'static,
{
    fn send_on<'a>(
        &'a self,
        conn: &'a Connection,
    ) -> futures_core::future::BoxFuture<'a, Result<(), Error>> {
        Box::pin(conn.send_with(self.0.clone()))
    }
}

/// The ws/wss reuse filter (§5.4): host, path and sub-protocol must not conflict.
fn meta_compatible(conn: &Connection, d: &Destination) -> bool {
    if !matches!(d.transport, TransportKind::Ws | TransportKind::Wss) {
        return true;
    }
    let m = conn.info().meta();
    let ok = |want: &Option<String>, have: &Option<String>| match (want, have) {
        (Some(w), Some(h)) => w == h,
        _ => true,
    };
    let path = d.options.path.clone().or_else(|| Some("/".to_string()));
    ok(&d.options.host, &m.host) && ok(&path, &m.path) && ok(&d.options.ws_proto, &m.ws_proto)
}

fn key_of(d: &Destination) -> ConnKey {
    ConnKey {
        domain: d.options.domain_or_default().to_string(),
        protocol: Arc::from(d.scheme.as_str()),
        transport: d.transport,
        remote: d.addr,
    }
}

impl Nkpacket {
    /// Sends a message (§5): resolves the spec, then for each destination in order reuses a
    /// live connection of the same domain, protocol, transport and address, or opens a new
    /// one, until one accepts the message. Returns the connection used.
    ///
    /// `msg` is the protocol's `Message` type, or raw data (a [`crate::Frame`], `Bytes`,
    /// `Vec<u8>`, `String`). A UDP message larger than `udp_max_size` goes over TCP to the
    /// same address when `udp_to_tcp` is set. Where one name resolved to both IPv6 and IPv4
    /// addresses and no connection to any of them is live, the new connections are raced as
    /// in [`Nkpacket::connect`] (Happy Eyeballs, RFC 8305). When every destination failed,
    /// the error of the first (preferred) one is returned; an empty list gives
    /// [`Error::NoTransports`].
    pub async fn send<M>(
        &self,
        spec: impl Into<Spec>,
        msg: M,
        opts: Options,
    ) -> Result<Connection, Error>
    where
        M: Clone + Send + Sync + 'static,
    {
        self.send_dyn(spec.into(), &Plain(msg), opts).await
    }

    /// Like [`Nkpacket::send`], with the message computed from the connection that carries
    /// it (so it can contain the real local address and port).
    pub async fn send_with<M, F>(
        &self,
        spec: impl Into<Spec>,
        make: F,
        opts: Options,
    ) -> Result<Connection, Error>
    where
        M: Send + 'static,
        F: Fn(&ConnInfo) -> M + Clone + Send + Sync + 'static,
    {
        self.send_dyn(spec.into(), &WithFn(make), opts).await
    }

    async fn send_dyn(
        &self,
        spec: Spec,
        msg: &dyn Resendable,
        opts: Options,
    ) -> Result<Connection, Error> {
        let targets = resolve::resolve_spec(&*self.inner, spec, &opts, ResolveType::Send).await?;
        // Each entry: a target, and for connects whether a connection made meanwhile by a
        // concurrent send may be reused (not for explicit `Connect` / `force_new`).
        let mut queue: VecDeque<(Step, bool)> = send_steps(targets)
            .into_iter()
            .map(|t| (t, false))
            .collect();
        let mut first_err: Option<Error> = None;
        while let Some((step, recheck)) = queue.pop_front() {
            let t = match step {
                Step::Target(t) => t,
                Step::Race(group) => {
                    match self.send_raced(group, msg).await {
                        Ok(c) => return Ok(c),
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                    continue;
                }
            };
            match t {
                Target::Conn(c) => match msg.send_on(&c).await {
                    Ok(()) => return Ok(c),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                },
                Target::Dest(d) | Target::Current(d) if d.options.force_new == Some(true) => {
                    queue.push_front((Step::Target(Target::Connect(d)), false));
                }
                t @ (Target::Dest(_) | Target::Current(_)) => {
                    let (mut d, current_only) = match t {
                        Target::Current(d) => (d, true),
                        Target::Dest(d) => (d, false),
                        _ => continue,
                    };
                    if let Err(e) = self.fill_port(&mut d) {
                        first_err.get_or_insert(e);
                        continue;
                    }
                    let mut too_large = false;
                    for c in self.reusable(&d) {
                        match msg.send_on(&c).await {
                            Ok(()) => return Ok(c),
                            Err(e @ Error::UdpTooLarge { .. }) => {
                                first_err.get_or_insert(e);
                                too_large = true;
                                break;
                            }
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    if too_large {
                        if let Some(tcp) = udp_to_tcp(&d) {
                            queue.push_front((Step::Target(Target::Dest(tcp)), false));
                        }
                        continue;
                    }
                    // `Current` never opens a stream connection; a UDP per-peer one is cheap.
                    if !current_only || d.transport == TransportKind::Udp {
                        queue.push_front((Step::Target(Target::Connect(d)), true));
                    }
                }
                Target::Connect(mut d) => {
                    if let Err(e) = self.fill_port(&mut d) {
                        first_err.get_or_insert(e);
                        continue;
                    }
                    match self.connect_dest(&d, recheck).await {
                        Ok(c) => match msg.send_on(&c).await {
                            Ok(()) => return Ok(c),
                            Err(e @ Error::UdpTooLarge { .. }) => {
                                first_err.get_or_insert(e);
                                if let Some(tcp) = udp_to_tcp(&d) {
                                    queue.push_front((Step::Target(Target::Dest(tcp)), false));
                                }
                            }
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        },
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        Err(first_err.unwrap_or(Error::NoTransports))
    }

    /// Sends only on an existing connection to the destination (the original's
    /// `{current, NkConn}`): never opens a stream connection (UDP per-peer connections are
    /// cheap and may be created).
    pub async fn send_current<M>(
        &self,
        dest: Destination,
        msg: M,
        opts: Options,
    ) -> Result<Connection, Error>
    where
        M: Clone + Send + Sync + 'static,
    {
        self.send_dyn(Spec::Current(dest), &Plain(msg), opts).await
    }

    /// Opens a new connection (never reuses), trying the resolved destinations in order;
    /// `conn_init` has run when this returns. Where one name resolved to both IPv6 and IPv4
    /// addresses, they are raced as Happy Eyeballs v2 says (RFC 8305): families alternate,
    /// a new attempt starts every 250 ms while the earlier ones are still pending, and the
    /// first connection up wins.
    pub async fn connect(&self, spec: impl Into<Spec>, opts: Options) -> Result<Connection, Error> {
        let targets =
            resolve::resolve_spec(&*self.inner, spec.into(), &opts, ResolveType::Connect).await?;
        let mut dests = Vec::new();
        for t in targets {
            match t {
                Target::Dest(d) | Target::Connect(d) | Target::Current(d) => dests.push(d),
                Target::Conn(c) => return Ok(c),
            }
        }
        let mut first_err = None;
        for mut group in happy_eyeballs_groups(dests) {
            let mut ready = Vec::new();
            for mut d in group.drain(..) {
                match self.fill_port(&mut d) {
                    Ok(()) => ready.push(d),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            let r = if ready.len() == 1 {
                self.connect_dest(&ready[0], false).await
            } else if ready.is_empty() {
                continue;
            } else {
                self.race(ready, false).await
            };
            match r {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(error = %e, "connect failed; trying next");
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(Error::NoTransports))
    }

    /// Races connection attempts (RFC 8305 §5): one starts every [`ATTEMPT_DELAY`] (or at
    /// once when the previous one failed), the first success wins and the others are dropped
    /// (a connection they still finish stops by itself). Returns the first attempt's error
    /// when all fail.
    /// `recheck_reuse` as for [`Nkpacket::connect_dest`].
    async fn race(
        &self,
        dests: Vec<Destination>,
        recheck_reuse: bool,
    ) -> Result<Connection, Error> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let mut pending = FuturesUnordered::new();
        let mut errors: Vec<(usize, Error)> = Vec::new();
        let mut next = 0;
        loop {
            if next < dests.len() {
                let i = next;
                let d = &dests[i];
                pending.push(async move { (i, self.connect_dest(d, recheck_reuse).await) });
                next += 1;
            }
            let delay = tokio::time::sleep(ATTEMPT_DELAY);
            tokio::select! {
                done = pending.next(), if !pending.is_empty() => match done {
                    Some((_, Ok(c))) => return Ok(c),
                    // failed: the next attempt starts now
                    Some((i, Err(e))) => errors.push((i, e)),
                    None => {}
                },
                _ = delay, if next < dests.len() => {}
                else => {
                    errors.sort_by_key(|(i, _)| *i);
                    return Err(errors
                        .into_iter()
                        .next()
                        .map(|(_, e)| e)
                        .unwrap_or(Error::NoTransports));
                }
            }
        }
    }

    /// `send` over one Happy Eyeballs group (destinations of one name, both address
    /// families): a live connection to any of them is reused first (§5.4); otherwise they
    /// are raced as [`Nkpacket::connect`] does, and the message goes over the first
    /// connection up.
    async fn send_raced(
        &self,
        group: Vec<Destination>,
        msg: &dyn Resendable,
    ) -> Result<Connection, Error> {
        let mut first_err = None;
        let mut ready = Vec::with_capacity(group.len());
        for mut d in group {
            match self.fill_port(&mut d) {
                Ok(()) => ready.push(d),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for d in &ready {
            for c in self.reusable(d) {
                match msg.send_on(&c).await {
                    Ok(()) => return Ok(c),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        let connected = match ready.len() {
            0 => Err(first_err.take().unwrap_or(Error::NoTransports)),
            1 => self.connect_dest(&ready[0], true).await,
            _ => self.race(ready, true).await,
        };
        let e = match connected {
            Ok(c) => match msg.send_on(&c).await {
                Ok(()) => return Ok(c),
                Err(e) => e,
            },
            Err(e) => e,
        };
        Err(first_err.unwrap_or(e))
    }

    fn fill_port(&self, d: &mut Destination) -> Result<(), Error> {
        if d.addr.port() == 0 {
            let proto = d.proto.clone().unwrap_or_else(ProtoRef::none);
            match proto.proto.default_port(d.transport).filter(|p| *p > 0) {
                Some(p) => d.addr.set_port(p),
                None => return Err(Error::InvalidDefaultPort(d.transport)),
            }
        }
        Ok(())
    }

    /// Live connections `send` may reuse for a destination (§5.4): same domain, protocol,
    /// transport and address; never for http/https; ws/wss also need compatible metadata.
    fn reusable(&self, d: &Destination) -> Vec<Connection> {
        if matches!(d.transport, TransportKind::Http | TransportKind::Https) {
            return Vec::new();
        }
        self.inner
            .conns
            .lookup(&key_of(d))
            .into_iter()
            .filter(|c| meta_compatible(c, d))
            .collect()
    }

    /// The base listener for an outbound connection (§5.6 step 4).
    fn base_listener(&self, d: &Destination) -> Option<ListenerHandle> {
        self.listening(
            &d.scheme,
            d.transport,
            d.options.domain_or_default(),
            d.addr.is_ipv6(),
        )
        .into_iter()
        .next()
    }

    /// Establishes a new connection to one destination (§5.6).
    pub(crate) async fn connect_dest(
        &self,
        d: &Destination,
        recheck_reuse: bool,
    ) -> Result<Connection, Error> {
        let proto = d.proto.clone().unwrap_or_else(ProtoRef::none);
        // Concurrent connects to the same place are serialized; the second one then finds
        // the first one's connection.
        let key = key_of(d);
        let lock = self
            .inner
            .connect_locks
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = lock.lock().await;
        if recheck_reuse && let Some(c) = self.reusable(d).into_iter().next() {
            return Ok(c);
        }
        let result = self.connect_locked(d, &proto).await;
        drop(guard);
        {
            let mut locks = self.inner.connect_locks.lock();
            if Arc::strong_count(&lock) <= 2 {
                locks.remove(&key);
            }
        }
        result
    }

    async fn connect_locked(&self, d: &Destination, proto: &ProtoRef) -> Result<Connection, Error> {
        let datagram = d.transport.is_datagram();
        let wants_base = d.options.base_listener == Some(true);
        let ephemeral = d.options.udp_ephemeral == Some(true);
        let base = if wants_base || (datagram && !ephemeral) {
            match self.base_listener(d) {
                Some(b) => Some(b),
                None => {
                    return Err(Error::NoListeningTransport {
                        transport: d.transport,
                        domain: d.options.domain_or_default().to_string(),
                        family: if d.addr.is_ipv6() { "IPv6" } else { "IPv4" },
                    });
                }
            }
        } else {
            None
        };

        // Options: the base listener's (minus its filters), then the destination's.
        let mut options = match &base {
            Some(b) => {
                let mut o = b.info().options().clone();
                o.host = None;
                o.path = None;
                o.id = None;
                o.domain = None;
                o.user_state = None;
                o.monitor = None;
                o
            }
            None => Options::default(),
        };
        options.merge_from(&d.options);
        if options.tcp_packet.is_none()
            && let Some(f) = proto.proto.framing()
        {
            options.tcp_packet = Some(f);
        }
        let options = Arc::new(options);

        let slot = self.inner.conns.reserve()?;
        let link = match (&base, datagram && !ephemeral) {
            (Some(b), true) => b.open(d.addr, options.clone()).await?,
            _ => {
                let transport = self.transport(d.transport)?;
                let req = ConnectRequest {
                    transport: d.transport,
                    remote: d.addr,
                    options: options.clone(),
                };
                let limit = options.effective_connect_timeout();
                // The transport applies the timeout too; this bounds every handshake.
                match tokio::time::timeout(limit + limit / 10, transport.connect(req)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(Error::Timeout {
                            op: "connect",
                            after: limit,
                        });
                    }
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        proto.proto.spawn(ConnSetup {
            link: LinkSource::Ready(link),
            id: options.id.clone().unwrap_or_else(resolve::random_id),
            domain: d.options.domain_or_default().to_string(),
            protocol_name: proto.name.clone(),
            listen: base.as_ref().map(|b| b.info().local()),
            listener_id: base.as_ref().map(|b| b.info().id().to_string()),
            direction: Direction::Outbound,
            options,
            listener_stop: base.as_ref().map(|b| b.cancel.clone()),
            shutdown: self.inner.shutdown.clone(),
            slot,
            ready: Some(tx),
            callback_budget: self.inner.config.read().callback_budget,
            per_ip: None,
        });
        rx.await.map_err(|_| Error::NoProcess)?
    }
}

/// One step of `send`'s walk over the destination list.
// Short-lived (one list per `send`, built from the targets it replaces): boxing the large
// variant would add an allocation per destination for nothing.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// A target tried on its own.
    Target(Target),
    /// Destinations of one name in both address families, raced (RFC 8305).
    Race(Vec<Destination>),
}

/// The steps of `send` for a resolved target list: runs of plain destinations go through
/// [`happy_eyeballs_groups`] (a group of one stays a plain destination); every other target
/// (a given connection, `Current`, an explicit `Connect`, `force_new`) is a step of its own.
fn send_steps(targets: Vec<Target>) -> Vec<Step> {
    fn flush(run: &mut Vec<Destination>, steps: &mut Vec<Step>) {
        for g in happy_eyeballs_groups(std::mem::take(run)) {
            if g.len() > 1 {
                steps.push(Step::Race(g));
            } else {
                steps.extend(g.into_iter().map(|d| Step::Target(Target::Dest(d))));
            }
        }
    }
    let mut steps = Vec::with_capacity(targets.len());
    let mut run = Vec::new();
    for t in targets {
        match t {
            Target::Dest(d) if d.options.force_new != Some(true) => run.push(d),
            other => {
                flush(&mut run, &mut steps);
                steps.push(Step::Target(other));
            }
        }
    }
    flush(&mut run, &mut steps);
    steps
}

/// Delay between two Happy Eyeballs connection attempts (RFC 8305 recommends 250 ms).
const ATTEMPT_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// Splits a destination list into groups tried one after the other: consecutive
/// destinations of one URI (same id) with the same transport and port but different
/// address families are one group, raced with the families interleaved (RFC 8305 §4);
/// every other destination is a group of its own.
fn happy_eyeballs_groups(dests: Vec<Destination>) -> Vec<Vec<Destination>> {
    let mut groups: Vec<Vec<Destination>> = Vec::new();
    for d in dests {
        match groups.last_mut() {
            Some(g)
                if g[0].options.id == d.options.id
                    && g[0].transport == d.transport
                    && g[0].addr.port() == d.addr.port()
                    && !g[0].transport.is_datagram() =>
            {
                g.push(d)
            }
            _ => groups.push(vec![d]),
        }
    }
    groups
        .into_iter()
        .flat_map(|g| {
            let mixed = g.iter().any(|d| d.addr.is_ipv6()) && g.iter().any(|d| d.addr.is_ipv4());
            if !mixed {
                return g.into_iter().map(|d| vec![d]).collect::<Vec<_>>();
            }
            let first_v6 = g[0].addr.is_ipv6();
            let (mut a, mut b): (Vec<_>, Vec<_>) =
                g.into_iter().partition(|d| d.addr.is_ipv6() == first_v6);
            let mut out = Vec::new();
            a.reverse();
            b.reverse();
            while let Some(x) = a.pop() {
                out.push(x);
                if let Some(y) = b.pop() {
                    out.push(y);
                }
            }
            out.extend(b.into_iter().rev());
            vec![out]
        })
        .collect()
}

/// The TCP destination that replaces a UDP one whose message was too large (§5.5).
fn udp_to_tcp(d: &Destination) -> Option<Destination> {
    if d.transport != TransportKind::Udp || d.options.udp_to_tcp != Some(true) {
        return None;
    }
    let mut tcp = d.clone();
    tcp.transport = TransportKind::Tcp;
    Some(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, addr: &str) -> Destination {
        Destination::new("x", TransportKind::Tcp, addr.parse().unwrap())
            .with_options(Options::default().with_id(id))
    }

    #[test]
    fn send_races_only_runs_of_plain_destinations() {
        let mut forced = d("a", "[::4]:5");
        forced.options.force_new = Some(true);
        let steps = send_steps(vec![
            Target::Dest(d("a", "[::1]:5")),
            Target::Dest(d("a", "10.0.0.1:5")),
            Target::Dest(forced),
            Target::Dest(d("a", "10.0.0.2:5")),
            Target::Dest(d("b", "[::9]:5")),
            Target::Current(d("c", "[::7]:5")),
            Target::Dest(d("d", "10.0.0.7:5")),
        ]);
        let shape: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Race(g) => format!(
                    "race {}",
                    g.iter()
                        .map(|d| d.addr.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Step::Target(Target::Dest(d)) => format!("dest {}", d.addr),
                Step::Target(Target::Current(d)) => format!("current {}", d.addr),
                Step::Target(_) => "other".to_string(),
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                "race [::1]:5 10.0.0.1:5",
                // force_new never joins a race and splits the run
                "dest [::4]:5",
                "dest 10.0.0.2:5",
                "dest [::9]:5",
                "current [::7]:5",
                "dest 10.0.0.7:5",
            ]
        );
    }

    #[test]
    fn groups_interleave_families_of_one_name() {
        let groups = happy_eyeballs_groups(vec![
            d("a", "[::1]:5"),
            d("a", "[::2]:5"),
            d("a", "10.0.0.1:5"),
            d("a", "[::3]:5"),
            d("b", "10.0.0.9:5"),
            d("b", "10.0.0.8:5"),
        ]);
        let addrs: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.iter().map(|d| d.addr.to_string()).collect())
            .collect();
        assert_eq!(
            addrs,
            vec![
                vec!["[::1]:5", "10.0.0.1:5", "[::2]:5", "[::3]:5"],
                // one family only: tried one by one, in order
                vec!["10.0.0.9:5"],
                vec!["10.0.0.8:5"],
            ]
        );
    }
}
