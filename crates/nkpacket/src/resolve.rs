//! Resolution: specs (URI text, parsed URIs, destinations, handles) into destinations
//! (§2.3–§2.7): protocol selection, option precedence, transport and port rules, addresses.

use std::net::SocketAddr;

use nkp_core::options::ResolveType;
use nkp_core::{Error, Options, TransportKind};
use nkp_dns::{DnsResolver, LocateRequest, LocateRules, select_transport};
use nkp_uri::Uri;
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::conn::Connection;
use crate::dynproto::{ProtoRef, guarded};

/// A resolved (or directly given) destination: protocol, transport, ip:port and options.
/// The original's *NkConn*.
///
/// ```
/// use nkpacket::{Destination, Options, TransportKind};
/// let d = Destination::new("echo", TransportKind::Tcp, "127.0.0.1:7000".parse().unwrap())
///     .with_options(Options::default().with_domain("dom1"));
/// assert_eq!(d.addr.port(), 7000);
/// ```
#[derive(Clone, Debug)]
pub struct Destination {
    /// Scheme the protocol is registered under (`""`: no protocol).
    pub scheme: String,
    /// Transport.
    pub transport: TransportKind,
    /// Address (port 0: the protocol's default port, or an ephemeral one for listeners).
    pub addr: SocketAddr,
    /// Options.
    pub options: Options,
    pub(crate) proto: Option<ProtoRef>,
}

impl Destination {
    /// A destination for the protocol registered under `scheme`.
    pub fn new(scheme: impl Into<String>, transport: TransportKind, addr: SocketAddr) -> Self {
        Destination {
            scheme: scheme.into(),
            transport,
            addr,
            options: Options::default(),
            proto: None,
        }
    }

    /// Sets the options.
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }
}

/// Anything `send`, `connect` and `start_listener` accept as a target.
#[derive(Clone, Debug)]
pub enum Spec {
    /// URI text: one URI or a comma-separated list.
    Text(String),
    /// A parsed URI.
    Uri(Uri),
    /// A destination.
    Dest(Destination),
    /// Only an existing connection to this destination (send only; for UDP a new per-peer
    /// connection is fine).
    Current(Destination),
    /// Always a new connection to this destination (send only).
    Connect(Destination),
    /// This connection (send only).
    Conn(Connection),
    /// Several specs, tried in order.
    List(Vec<Spec>),
}

impl From<&str> for Spec {
    fn from(s: &str) -> Self {
        Spec::Text(s.to_string())
    }
}
impl From<String> for Spec {
    fn from(s: String) -> Self {
        Spec::Text(s)
    }
}
impl From<&String> for Spec {
    fn from(s: &String) -> Self {
        Spec::Text(s.clone())
    }
}
impl From<Uri> for Spec {
    fn from(u: Uri) -> Self {
        Spec::Uri(u)
    }
}
impl From<Destination> for Spec {
    fn from(d: Destination) -> Self {
        Spec::Dest(d)
    }
}
impl From<Connection> for Spec {
    fn from(c: Connection) -> Self {
        Spec::Conn(c)
    }
}
impl From<&Connection> for Spec {
    fn from(c: &Connection) -> Self {
        Spec::Conn(c.clone())
    }
}
impl<T: Into<Spec>> From<Vec<T>> for Spec {
    fn from(v: Vec<T>) -> Self {
        Spec::List(v.into_iter().map(Into::into).collect())
    }
}

/// One entry of the resolved list.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Dest(Destination),
    Current(Destination),
    Connect(Destination),
    Conn(Connection),
}

/// A random 6-character id, as the original.
pub(crate) fn random_id() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(6)
        .map(char::from)
        .collect()
}

/// Hosts that mean "any address" and never become a `host` option (§2.3; `[::]` included,
/// fixing the original).
fn is_wildcard(host: &str) -> bool {
    matches!(
        host.to_ascii_lowercase().as_str(),
        "0.0.0.0" | "0:0:0:0:0:0:0:0" | "::0" | "::" | "[::]" | "[::0]" | "all" | "all6" | "node"
    )
}

/// What resolution needs from the node.
pub(crate) trait ResolveCtx: Sync {
    fn protocol(&self, domain: Option<&str>, scheme: &str) -> Option<ProtoRef>;
    fn protocol_by_name(&self, name: &str) -> Option<ProtoRef>;
    fn node_host(&self) -> String;
    fn dns(&self) -> Result<&DnsResolver, Error>;
}

/// A protocol's resolution callbacks, as the DNS engine asks for them.
struct ProtoRules<'a>(&'a ProtoRef);

impl LocateRules for ProtoRules<'_> {
    fn transport(
        &self,
        scheme: &str,
        requested: Option<&str>,
    ) -> Result<Option<TransportKind>, Error> {
        let list = guarded("transports", || self.0.proto.transports(scheme))
            .map_err(|_| Error::InvalidScheme(scheme.to_string()))?;
        select_transport(requested, list.as_deref())
    }
    fn default_port(&self, transport: TransportKind) -> Option<u16> {
        guarded("default_port", || self.0.proto.default_port(transport))
            .ok()
            .flatten()
    }
    fn naptr_transport(&self, scheme: &str, service: &str) -> Option<TransportKind> {
        guarded("naptr", || self.0.proto.naptr(scheme, service))
            .ok()
            .flatten()
    }
    fn uses_naptr(&self) -> bool {
        self.0.proto.uses_naptr()
    }
}

/// Picks the protocol of a scheme (§2.4).
fn select_protocol(
    ctx: &dyn ResolveCtx,
    scheme: &str,
    caller: &Options,
) -> Result<ProtoRef, Error> {
    if let Some(name) = &caller.protocol {
        return ctx.protocol_by_name(name).ok_or_else(|| Error::Syntax {
            key: "protocol".into(),
            value: name.clone(),
            expected: "the scheme of a registered protocol",
        });
    }
    Ok(ctx
        .protocol(caller.domain.as_deref(), scheme)
        .unwrap_or_else(ProtoRef::none))
}

/// Turns URI parameters and parts into options (§2.3 step 3).
fn uri_options(uri: &Uri, proto: &ProtoRef, listen: bool) -> Result<Options, Error> {
    let mut o = Options::default();
    // For a listener, an IP literal is the bind address only, never a Host filter (a name
    // is one, §2.3); for a client it is the Host header and the TLS name to check.
    let ip_literal_listener = listen && uri.host_ip().is_some();
    if !uri.host.is_empty() && !is_wildcard(&uri.host) && uri.host != "*" && !ip_literal_listener {
        o.host = Some(uri.host_unbracketed().to_string());
    }
    if let Some(u) = uri.user.as_deref().filter(|u| !u.is_empty()) {
        o.user = Some(u.to_string());
        if let Some(p) = &uri.password {
            o.password = Some(p.clone());
        }
    }
    if let Some(p) = uri.path.as_deref().filter(|p| !p.is_empty()) {
        o.path = Some(p.to_string());
    }
    let extra = proto.proto.extra_options();
    for (k, v) in &uri.ext_params {
        match v {
            Some(v) => {
                o.set_from_uri(k, v, extra)?;
            }
            // A flag: `;stun` means `udp_stun_reply=true`; unknown flags (`;lr`) are left
            // to the protocol, as in the original.
            None => {
                let known = nkp_core::options::OPTION_NAMES
                    .iter()
                    .any(|(n, uri_ok)| *uri_ok && n.eq_ignore_ascii_case(k));
                if known {
                    o.set_from_uri(k, "true", extra)?;
                } else if extra.iter().any(|e| e.eq_ignore_ascii_case(k)) {
                    o.set_extra(k.to_ascii_lowercase(), "");
                }
            }
        }
    }
    if !uri.ext_headers.is_empty() {
        let mut hs = o.headers.take().unwrap_or_default();
        for (k, v) in &uri.ext_headers {
            hs.push((k.clone(), v.clone().unwrap_or_default()));
        }
        o.headers = Some(hs);
    }
    Ok(o)
}

/// Resolves one URI into destinations.
pub(crate) async fn resolve_uri(
    ctx: &dyn ResolveCtx,
    uri: &Uri,
    caller: &Options,
    mode: ResolveType,
) -> Result<Vec<Destination>, Error> {
    let proto = select_protocol(ctx, &uri.scheme, caller)?;
    let listen = caller.resolve_type.unwrap_or(mode) == ResolveType::Listen;
    let mut opts = uri_options(uri, &proto, listen)?;
    opts.merge_from(&proto.proto.resolve_options());
    opts.merge_from(caller);
    let listen = opts.resolve_type.unwrap_or(mode) == ResolveType::Listen;
    if opts.id.is_none() {
        opts.id = Some(random_id());
    }
    opts.resolve_type = None;
    opts.protocol = None;

    let node_host;
    let host = if uri.host.eq_ignore_ascii_case("node") {
        node_host = ctx.node_host();
        node_host.as_str()
    } else {
        uri.host.as_str()
    };
    let mut req = LocateRequest::new(&uri.scheme, host)
        .port(uri.port)
        .listen(listen)
        .no_cache(opts.no_dns_cache == Some(true));
    if let Some(t) = uri.any_param("transport").flatten() {
        req = req.transport(t);
    }
    if let Some(m) = uri.param("maddr").flatten() {
        req = req.maddr(m);
    }
    let found = ctx.dns()?.locate(&req, &ProtoRules(&proto)).await?;
    found
        .into_iter()
        .map(|d| {
            let transport = d.transport.ok_or_else(|| {
                Error::InvalidTransport(format!(
                    "no transport given for scheme {:?} and its protocol names none",
                    uri.scheme
                ))
            })?;
            Ok(Destination {
                scheme: proto.name.to_string(),
                transport,
                addr: SocketAddr::new(d.ip, d.port),
                options: opts.clone(),
                proto: Some(proto.clone()),
            })
        })
        .collect()
}

/// Completes a destination given directly (no DNS, §2.3 "NkConn input"): its protocol and
/// options (the destination's own options win over the protocol's defaults, fixing the
/// original's inverted precedence; the caller's win over both).
pub(crate) fn complete_dest(
    ctx: &dyn ResolveCtx,
    mut d: Destination,
    caller: &Options,
) -> Result<Destination, Error> {
    let mut merged = d.options.clone();
    merged.merge_from(caller);
    let proto = match (&d.proto, &caller.protocol) {
        (Some(p), None) => p.clone(),
        _ => {
            let scheme = d.scheme.clone();
            select_protocol(ctx, &scheme, &merged)?
        }
    };
    let mut opts = proto.proto.resolve_options();
    opts.merge_from(&d.options);
    opts.merge_from(caller);
    if opts.id.is_none() {
        opts.id = Some(random_id());
    }
    opts.protocol = None;
    opts.resolve_type = None;
    d.scheme = proto.name.to_string();
    d.options = opts;
    d.proto = Some(proto);
    Ok(d)
}

/// Resolves any spec into the ordered target list.
pub(crate) async fn resolve_spec(
    ctx: &dyn ResolveCtx,
    spec: Spec,
    caller: &Options,
    mode: ResolveType,
) -> Result<Vec<Target>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![spec];
    // Depth-first, keeping order: process the list front to back.
    while let Some(s) = stack.pop() {
        match s {
            Spec::List(v) => stack.extend(v.into_iter().rev()),
            Spec::Text(t) => {
                let uris = nkp_uri::parse_list(&t).map_err(|e| Error::InvalidUri {
                    uri: t.clone(),
                    reason: e.to_string(),
                })?;
                for u in &uris {
                    out.extend(
                        resolve_uri(ctx, u, caller, mode)
                            .await?
                            .into_iter()
                            .map(Target::Dest),
                    );
                }
            }
            Spec::Uri(u) => out.extend(
                resolve_uri(ctx, &u, caller, mode)
                    .await?
                    .into_iter()
                    .map(Target::Dest),
            ),
            Spec::Dest(d) => out.push(Target::Dest(complete_dest(ctx, d, caller)?)),
            Spec::Current(_) | Spec::Connect(_) | Spec::Conn(_) if mode != ResolveType::Send => {
                return Err(Error::InvalidUri {
                    uri: "(current/connect/connection spec)".into(),
                    reason: "only send accepts existing connections and current/connect forms"
                        .into(),
                });
            }
            Spec::Current(d) => out.push(Target::Current(complete_dest(ctx, d, caller)?)),
            Spec::Connect(d) => out.push(Target::Connect(complete_dest(ctx, d, caller)?)),
            Spec::Conn(c) => out.push(Target::Conn(c)),
        }
    }
    Ok(out)
}
