//! RFC 3263-style location of one URI (spec §7.1): what the protocol decides
//! ([`LocateRules`]), the request ([`LocateRequest`]) and the result ([`Destination`]).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use nkp_core::{Error, TransportKind};

use crate::DnsResolver;
use crate::order::normalize_name;

/// What to locate: the parts of a URI that matter for DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocateRequest<'a> {
    /// The URI scheme (`sip`, `echo`, `http` ...).
    pub scheme: &'a str,
    /// The URI host: a name, an IP literal (IPv6 with or without brackets), `localhost`,
    /// `all` (0.0.0.0) or `all6` (::).
    pub host: &'a str,
    /// The `maddr` parameter: replaces the host for address resolution.
    pub maddr: Option<&'a str>,
    /// The URI port; 0 when absent.
    pub port: u16,
    /// The `transport` parameter as written in the URI (any case; unknown names are errors
    /// unless the rules accept them).
    pub transport: Option<&'a str>,
    /// Resolve for a listener: no NAPTR/SRV, and port 0 stays 0.
    pub listen: bool,
    /// Skip cache reads (answers are still stored).
    pub no_cache: bool,
}

impl<'a> LocateRequest<'a> {
    /// A connect-mode request for `scheme:host` with no port, transport or maddr.
    pub fn new(scheme: &'a str, host: &'a str) -> Self {
        LocateRequest {
            scheme,
            host,
            maddr: None,
            port: 0,
            transport: None,
            listen: false,
            no_cache: false,
        }
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the requested transport (as written in the URI).
    pub fn transport(mut self, transport: &'a str) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Sets `maddr`.
    pub fn maddr(mut self, maddr: &'a str) -> Self {
        self.maddr = Some(maddr);
        self
    }

    /// Listen mode.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Bypass cache reads.
    pub fn no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }
}

/// One resolved destination: transport (none when neither the URI nor the protocol gives
/// one), address and port (0: not known yet, see spec §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The transport to use.
    pub transport: Option<TransportKind>,
    /// The address.
    pub ip: IpAddr,
    /// The port; 0 in listen mode or when the protocol has no default ports.
    pub port: u16,
}

impl fmt::Display for Destination {
    /// `udp 1.2.3.4 5060`, `tls ::1 5061` (the format of `nkp resolve`); no transport: `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Some(t) => write!(f, "{t} {} {}", self.ip, self.port),
            None => write!(f, "- {} {}", self.ip, self.port),
        }
    }
}

/// What the protocol decides during location (spec §2.5, §2.6, §4.1). The facade implements it
/// from the user's protocol; [`SimpleRules`] implements it from tables.
pub trait LocateRules {
    /// The transport for `scheme` given the requested one (§2.5): `requested` is the URI's
    /// `transport` parameter, or the scheme itself when it names a transport. Errors:
    /// [`Error::InvalidTransport`], [`Error::InvalidScheme`].
    fn transport(
        &self,
        scheme: &str,
        requested: Option<&str>,
    ) -> Result<Option<TransportKind>, Error>;

    /// The default port of a transport; `None`: the protocol has none for it (see
    /// [`requires_default_port`]).
    ///
    /// [`requires_default_port`]: LocateRules::requires_default_port
    fn default_port(&self, transport: TransportKind) -> Option<u16>;

    /// What a missing default port means when one is needed (port 0, connect mode): `true` →
    /// [`Error::InvalidTransport`] (the original, for a protocol that declares default ports);
    /// `false` (the default) → port 0 stays 0.
    fn requires_default_port(&self) -> bool {
        false
    }

    /// The transport for a NAPTR service field (`"SIP+D2U"` → udp), if the protocol uses it.
    fn naptr_transport(&self, scheme: &str, service: &str) -> Option<TransportKind>;

    /// Whether NAPTR is queried at all.
    fn uses_naptr(&self) -> bool;
}

/// One entry of a protocol's transport list (§2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportRule {
    /// The transport is accepted as is.
    Plain(TransportKind),
    /// A requested `from` is turned into `to` (e.g. tcp → http).
    Convert {
        /// What the URI asks for.
        from: TransportKind,
        /// What is used.
        to: TransportKind,
    },
}

/// The transport rules of §2.5 over an optional transport list (`None`: the protocol declares
/// none, the requested transport is used as is, and must be one of the eight).
///
/// ```
/// use nkp_core::TransportKind::*;
/// use nkp_dns::{select_transport, TransportRule::*};
///
/// let list = [Plain(Udp), Plain(Tcp), Convert { from: Tls, to: Tcp }];
/// assert_eq!(select_transport(None, Some(&list)).unwrap(), Some(Udp));
/// assert_eq!(select_transport(Some("TCP"), Some(&list)).unwrap(), Some(Tcp));
/// assert_eq!(select_transport(Some("tls"), Some(&list)).unwrap(), Some(Tcp));
/// assert!(select_transport(Some("ws"), Some(&list)).is_err());
/// assert_eq!(select_transport(Some("ws"), None).unwrap(), Some(Ws));
/// assert!(select_transport(Some("other"), None).is_err());
/// ```
pub fn select_transport(
    requested: Option<&str>,
    list: Option<&[TransportRule]>,
) -> Result<Option<TransportKind>, Error> {
    let requested = match requested {
        None => None,
        Some(text) => Some(
            text.parse::<TransportKind>()
                .map_err(|_| Error::InvalidTransport(text.to_string()))?,
        ),
    };
    let Some(list) = list else {
        return Ok(requested);
    };
    let Some(req) = requested else {
        return Ok(list.first().map(|r| match *r {
            TransportRule::Plain(t) => t,
            TransportRule::Convert { to, .. } => to,
        }));
    };
    if list.contains(&TransportRule::Plain(req)) {
        return Ok(Some(req));
    }
    list.iter()
        .find_map(|r| match *r {
            TransportRule::Convert { from, to } if from == req => Some(to),
            _ => None,
        })
        .map(Some)
        .ok_or_else(|| Error::InvalidTransport(req.to_string()))
}

/// [`LocateRules`] from tables: transport lists per scheme, default ports, NAPTR services.
///
/// With nothing declared it behaves as "no protocol" (requested transport as is, ports stay 0,
/// no NAPTR). Once a default port is declared, a transport without one is an invalid transport
/// when a port is needed. Once a transport list is declared for some scheme, other schemes are
/// [`Error::InvalidScheme`].
///
/// ```
/// use nkp_core::TransportKind::*;
/// use nkp_dns::{LocateRules, SimpleRules};
///
/// let sip = SimpleRules::sip();
/// assert_eq!(sip.transport("sip", None).unwrap(), Some(Udp));
/// assert!(sip.transport("sips", Some("udp")).is_err());
/// assert_eq!(sip.default_port(Tls), Some(5061));
/// assert_eq!(sip.naptr_transport("sip", "SIP+D2T"), Some(Tcp));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SimpleRules {
    transports: Option<HashMap<String, Vec<TransportRule>>>,
    ports: Option<HashMap<TransportKind, u16>>,
    naptr: HashMap<String, Vec<(String, TransportKind)>>,
}

impl SimpleRules {
    /// No rules: "no protocol".
    pub fn new() -> Self {
        SimpleRules::default()
    }

    /// Declares the transports of `scheme`, the first being the default.
    pub fn with_transports(mut self, scheme: &str, list: &[TransportKind]) -> Self {
        self.transports
            .get_or_insert_with(HashMap::new)
            .entry(scheme.to_ascii_lowercase())
            .or_default()
            .extend(list.iter().map(|&t| TransportRule::Plain(t)));
        self
    }

    /// Declares a transport conversion for `scheme` (a requested `from` becomes `to`).
    pub fn with_conversion(mut self, scheme: &str, from: TransportKind, to: TransportKind) -> Self {
        self.transports
            .get_or_insert_with(HashMap::new)
            .entry(scheme.to_ascii_lowercase())
            .or_default()
            .push(TransportRule::Convert { from, to });
        self
    }

    /// Declares the default port of a transport.
    pub fn with_default_port(mut self, transport: TransportKind, port: u16) -> Self {
        self.ports
            .get_or_insert_with(HashMap::new)
            .insert(transport, port);
        self
    }

    /// Maps a NAPTR service of `scheme` (matched case-insensitively) to a transport.
    pub fn with_naptr(mut self, scheme: &str, service: &str, transport: TransportKind) -> Self {
        self.naptr
            .entry(scheme.to_ascii_lowercase())
            .or_default()
            .push((service.to_ascii_lowercase(), transport));
        self
    }

    /// The SIP rules of the spec's DNS tests (§7.6): `sip` → udp, tcp, tls, sctp, ws, wss;
    /// `sips` → tls, wss; ports udp/tcp/sctp 5060, tls 5061, ws 80, wss 443; NAPTR services
    /// `sip+d2u/t/s/w`, `sips+d2t/w`.
    pub fn sip() -> Self {
        use TransportKind::*;
        let mut r = SimpleRules::new()
            .with_transports("sip", &[Udp, Tcp, Tls, Sctp, Ws, Wss])
            .with_transports("sips", &[Tls, Wss]);
        for (t, p) in [
            (Udp, 5060),
            (Tcp, 5060),
            (Sctp, 5060),
            (Tls, 5061),
            (Ws, 80),
            (Wss, 443),
        ] {
            r = r.with_default_port(t, p);
        }
        for (s, t) in [
            ("sips+d2t", Tls),
            ("sip+d2u", Udp),
            ("sip+d2t", Tcp),
            ("sip+d2s", Sctp),
            ("sips+d2w", Wss),
            ("sip+d2w", Ws),
        ] {
            r = r.with_naptr("sip", s, t);
        }
        r.with_naptr("sips", "sips+d2t", Tls)
            .with_naptr("sips", "sips+d2w", Wss)
    }

    /// The rules of the built-in `echo` protocol: all eight transports (tcp when none is
    /// given), ports udp/tcp/tls/sctp 7, ws/http 80, wss/https 443, NAPTR services `ECHO+D2U`,
    /// `ECHO+D2T`, `ECHOS+D2T`, `ECHO+D2S`, `ECHO+D2W`, `ECHOS+D2W`.
    pub fn echo() -> Self {
        use TransportKind::*;
        let mut r = SimpleRules::new()
            .with_transports("echo", &[Tcp, Udp, Tls, Sctp, Ws, Wss, Http, Https]);
        for (t, p) in [
            (Udp, 7),
            (Tcp, 7),
            (Tls, 7),
            (Sctp, 7),
            (Ws, 80),
            (Http, 80),
            (Wss, 443),
            (Https, 443),
        ] {
            r = r.with_default_port(t, p);
        }
        for (s, t) in [
            ("echo+d2u", Udp),
            ("echo+d2t", Tcp),
            ("echos+d2t", Tls),
            ("echo+d2s", Sctp),
            ("echo+d2w", Ws),
            ("echos+d2w", Wss),
        ] {
            r = r.with_naptr("echo", s, t);
        }
        r
    }
}

impl LocateRules for SimpleRules {
    fn transport(
        &self,
        scheme: &str,
        requested: Option<&str>,
    ) -> Result<Option<TransportKind>, Error> {
        match &self.transports {
            None => select_transport(requested, None),
            Some(map) => match map.get(&scheme.to_ascii_lowercase()) {
                Some(list) => select_transport(requested, Some(list)),
                None => Err(Error::InvalidScheme(scheme.to_string())),
            },
        }
    }

    fn default_port(&self, transport: TransportKind) -> Option<u16> {
        self.ports.as_ref()?.get(&transport).copied()
    }

    fn requires_default_port(&self) -> bool {
        self.ports.is_some()
    }

    fn naptr_transport(&self, scheme: &str, service: &str) -> Option<TransportKind> {
        self.naptr
            .get(&scheme.to_ascii_lowercase())?
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(service))
            .map(|(_, t)| *t)
    }

    fn uses_naptr(&self) -> bool {
        !self.naptr.is_empty()
    }
}

/// Port 0 resolved through the protocol (§2.6).
fn default_port(rules: &dyn LocateRules, t: Option<TransportKind>) -> Result<u16, Error> {
    let Some(t) = t else { return Ok(0) };
    match rules.default_port(t) {
        Some(p) => Ok(p),
        None if rules.requires_default_port() => Err(Error::InvalidTransport(t.to_string())),
        None => Ok(0),
    }
}

fn dests(t: Option<TransportKind>, ips: Vec<IpAddr>, port: u16) -> Vec<Destination> {
    ips.into_iter()
        .map(|ip| Destination {
            transport: t,
            ip,
            port,
        })
        .collect()
}

impl DnsResolver {
    /// Locates one URI (spec §7.1), returning the ordered destinations:
    ///
    /// * A — listen mode, port 0: the addresses, port 0, no NAPTR/SRV;
    /// * B — IP target (and `localhost`, `all`, `all6`): port, or the transport's default;
    /// * C — name, no port, no transport: NAPTR (flag `s`, empty regexp, service mapped by the
    ///   rules) → SRV → addresses; if that gives nothing, the rules' default transport and D;
    /// * D — name, no port, transport: SRV `_<scheme>._<transport>.<name>` → addresses; if
    ///   none, the addresses with the default port;
    /// * E — name and port: the addresses.
    ///
    /// A name without addresses contributes nothing (an empty list, not an error).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), nkp_core::Error> {
    /// use nkp_core::TransportKind;
    /// use nkp_dns::{DnsConfig, DnsResolver, LocateRequest, SimpleRules};
    ///
    /// let dns = DnsResolver::new(DnsConfig::with_nameservers(vec!["127.0.0.1:5353".parse().unwrap()]))?;
    /// let rules = SimpleRules::sip();
    /// let d = dns.locate(&LocateRequest::new("sips", "1.2.3.4"), &rules).await?;
    /// assert_eq!(d[0].to_string(), "tls 1.2.3.4 5061");
    /// let d = dns.locate(&LocateRequest::new("sip", "[::1]").port(4321).transport("TCP"), &rules).await?;
    /// assert_eq!((d[0].transport, d[0].port), (Some(TransportKind::Tcp), 4321));
    /// assert!(dns.locate(&LocateRequest::new("sips", "1.2.3.4").transport("udp"), &rules).await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn locate(
        &self,
        req: &LocateRequest<'_>,
        rules: &dyn LocateRules,
    ) -> Result<Vec<Destination>, Error> {
        let target = req.maddr.unwrap_or(req.host);
        let requested = req
            .transport
            .or_else(|| req.scheme.parse::<TransportKind>().ok().map(|_| req.scheme));
        let special = self.special_host(target);
        let nc = req.no_cache;

        // A: listen mode with port 0.
        if req.listen && req.port == 0 {
            let t = rules.transport(req.scheme, requested)?;
            let ips = match special {
                Some(ips) => ips,
                None => self.ips(target, nc).await?,
            };
            return Ok(dests(t, ips, 0));
        }
        // B: IP target.
        if let Some(ips) = special {
            let t = rules.transport(req.scheme, requested)?;
            let port = match req.port {
                0 => default_port(rules, t)?,
                p => p,
            };
            return Ok(dests(t, ips, port));
        }
        let name = normalize_name(target);
        // E: name and port.
        if req.port != 0 {
            let t = rules.transport(req.scheme, requested)?;
            return Ok(dests(t, self.ips(&name, nc).await?, req.port));
        }
        // C: no transport: NAPTR first.
        let t = match requested {
            Some(_) => rules.transport(req.scheme, requested)?,
            None => {
                let found = self
                    .naptr_destinations(req.scheme, &name, rules, nc)
                    .await?;
                if !found.is_empty() {
                    return Ok(found);
                }
                match rules.transport(req.scheme, None)? {
                    None => return Ok(dests(None, self.ips(&name, nc).await?, 0)),
                    t => t,
                }
            }
        };
        // D: SRV, then addresses with the default port.
        let Some(tk) = t else {
            return Ok(dests(None, self.ips(&name, nc).await?, 0));
        };
        let srv_name = format!("_{}._{}.{}", req.scheme.to_ascii_lowercase(), tk, name);
        let srvs = self.srvs(&srv_name, nc).await?;
        if !srvs.is_empty() {
            return Ok(srvs
                .into_iter()
                .map(|(ip, port)| Destination {
                    transport: t,
                    ip,
                    port,
                })
                .collect());
        }
        let port = default_port(rules, t)?;
        Ok(dests(t, self.ips(&name, nc).await?, port))
    }

    async fn naptr_destinations(
        &self,
        scheme: &str,
        name: &str,
        rules: &dyn LocateRules,
        no_cache: bool,
    ) -> Result<Vec<Destination>, Error> {
        if !rules.uses_naptr() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for rec in self.naptr(name, no_cache).await? {
            if !rec.is_srv_terminal() {
                continue;
            }
            let Some(t) = rules.naptr_transport(scheme, &rec.services) else {
                continue;
            };
            for (ip, port) in self.srvs(&rec.replacement, no_cache).await? {
                out.push(Destination {
                    transport: Some(t),
                    ip,
                    port,
                });
            }
        }
        Ok(out)
    }
}
