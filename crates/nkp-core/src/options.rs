//! Typed listen / connect / send options.
//!
//! Every option of the original NkPACKET that still means something has a typed field here.
//! Fields are `Option`s: `None` means "not given", so that option sets can be layered (caller
//! over protocol defaults over URI parameters, see [`Options::merge_from`]). The getters with
//! the same name as a field return the effective value with its default.
//!
//! Options are also settable by name ([`Options::set`]), which is how URI parameters such as
//! `;idle_timeout=5000;tcp_packet=4` become options. Values are parsed leniently (numbers from
//! text, booleans from `true`/`false`/`1`/`0`); a bad value is an [`Error::Syntax`] naming the
//! key, and an unknown key is an [`Error::UnknownOption`].
//!
//! ```
//! use nkp_core::Options;
//! use std::time::Duration;
//!
//! let mut uri_opts = Options::default();
//! uri_opts.set("idle_timeout", "500").unwrap();
//! uri_opts.set("tcp_packet", "4").unwrap();
//!
//! let mut caller = Options::default();
//! caller.idle_timeout = Some(Duration::from_secs(2));
//!
//! // caller options win over URI options
//! let mut merged = uri_opts.clone();
//! merged.merge_from(&caller);
//! assert_eq!(merged.idle_timeout, Some(Duration::from_secs(2)));
//! assert_eq!(merged.tcp_packet.as_ref().map(|f| f.name()), Some("4"));
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Error, Framing, Result, TransportKind};

/// Default values of the original NkPACKET (spec appendix A).
pub mod defaults {
    use std::time::Duration;

    /// Global cap on live connections.
    pub const MAX_CONNECTIONS: usize = 1024;
    /// Idle timeout of UDP connections.
    pub const UDP_TIMEOUT: Duration = Duration::from_secs(30);
    /// Idle timeout of TCP and TLS connections.
    pub const TCP_TIMEOUT: Duration = Duration::from_secs(180);
    /// Idle timeout of SCTP connections.
    pub const SCTP_TIMEOUT: Duration = Duration::from_secs(180);
    /// Idle timeout of WS and WSS connections.
    pub const WS_TIMEOUT: Duration = Duration::from_secs(180);
    /// Idle timeout of HTTP and HTTPS connections.
    pub const HTTP_TIMEOUT: Duration = Duration::from_secs(180);
    /// Outbound connect timeout (TCP connect plus TLS and WS handshakes).
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Largest datagram sent over UDP before `udp_too_large`.
    pub const UDP_MAX_SIZE: usize = 1300;
    /// STUN client retransmission base.
    pub const UDP_STUN_T1: Duration = Duration::from_millis(500);
    /// Per-listener cap on accepted stream connections.
    pub const TCP_MAX_CONNECTIONS: usize = 1024;
    /// SCTP outbound streams.
    pub const SCTP_OUT_STREAMS: u16 = 10;
    /// SCTP inbound streams.
    pub const SCTP_IN_STREAMS: u16 = 10;
    /// Largest message accepted on a stream frame or a WebSocket message (16 MiB).
    pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
    /// Largest HTTP request head (64 KiB).
    pub const HTTP_MAX_HEAD: usize = 64 * 1024;
    /// Depth of a connection's send queue before senders wait (backpressure).
    pub const SEND_QUEUE: usize = 128;

    /// The default idle timeout of a transport.
    pub const fn idle_timeout(t: crate::TransportKind) -> Duration {
        use crate::TransportKind::*;
        match t {
            Udp => UDP_TIMEOUT,
            Tcp | Tls => TCP_TIMEOUT,
            Sctp => SCTP_TIMEOUT,
            Ws | Wss => WS_TIMEOUT,
            Http | Https => HTTP_TIMEOUT,
        }
    }
}

/// An opaque value attached to a listener or connection by the application
/// (option `user_state`), readable by protocol code.
///
/// ```
/// use nkp_core::UserState;
/// let s = UserState::new(42u32);
/// assert_eq!(s.downcast_ref::<u32>(), Some(&42));
/// ```
#[derive(Clone)]
pub struct UserState(Arc<dyn Any + Send + Sync>);

impl UserState {
    /// Wraps a value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        UserState(Arc::new(value))
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for UserState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserState(..)")
    }
}

/// How a spec is being resolved (option `resolve_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveType {
    /// For a listener: no NAPTR/SRV, and port 0 stays 0.
    Listen,
    /// For `connect`.
    Connect,
    /// For `send`.
    Send,
}

/// Declares the option fields once: the struct, `merge_from` and the list of names.
macro_rules! option_fields {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty ),* $(,)?) => {
        /// Listen, connect and send options. See the [module documentation](self).
        #[derive(Clone, Default)]
        #[non_exhaustive]
        pub struct Options {
            $( $(#[$doc])* pub $field: Option<$ty>, )*
            /// Options not known to nkpacket that the protocol declared
            /// ([`Options::set_extra`]), by name.
            pub extra: BTreeMap<String, String>,
        }

        impl Options {
            /// Layers `other` over `self`: every option set in `other` replaces the one here.
            pub fn merge_from(&mut self, other: &Options) {
                $( if other.$field.is_some() { self.$field = other.$field.clone(); } )*
                for (k, v) in &other.extra {
                    self.extra.insert(k.clone(), v.clone());
                }
            }

            /// Names of the options that are set, for logs and debugging.
            pub fn set_names(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $( if self.$field.is_some() { v.push(stringify!($field)); } )*
                v
            }
        }
    };
}

option_fields! {
    /// Identifier of the listener or connection (random when absent).
    id: String,
    /// Domain (the original's *class*): groups listeners and connections, scopes protocol
    /// registration and connection reuse.
    domain: String,
    /// Application value attached to the listener / connection.
    user_state: UserState,
    /// Name of the registered protocol to use instead of the one of the URI scheme.
    protocol: String,
    /// How the spec is being resolved.
    resolve_type: ResolveType,
    /// The listener or connection stops when this token is cancelled.
    monitor: CancellationToken,
    /// Inactivity timeout; zero means never.
    idle_timeout: Duration,
    /// Verbose logging for this listener / connection.
    debug: bool,
    /// Timeout of an outbound connect, including TLS and WebSocket handshakes.
    connect_timeout: Duration,
    /// Bypass DNS cache reads for this call.
    no_dns_cache: bool,
    /// Build outbound connections on a listener of the same domain, protocol and transport
    /// (the original's `base_nkport`); required for UDP and SCTP unless
    /// `udp_ephemeral` is set.
    base_listener: bool,
    /// For UDP sends without a listener: send from a new ephemeral socket.
    udp_ephemeral: bool,
    /// Always open a new connection.
    force_new: bool,
    /// A UDP listener also listens on TCP on the same port.
    udp_starts_tcp: bool,
    /// A UDP listener hands every datagram to `listen_parse`, without connections.
    udp_no_connections: bool,
    /// A UDP listener answers STUN binding requests.
    udp_stun_reply: bool,
    /// STUN client retransmission base.
    udp_stun_t1: Duration,
    /// A UDP message larger than `udp_max_size` is sent over TCP instead.
    udp_to_tcp: bool,
    /// Largest UDP datagram sent.
    udp_max_size: usize,
    /// SCTP outbound streams.
    sctp_out_streams: u16,
    /// SCTP inbound streams.
    sctp_in_streams: u16,
    /// Framing of TCP/TLS streams.
    tcp_packet: Framing,
    /// Maximum time a write may block.
    send_timeout: Duration,
    /// Close the connection when a write times out.
    send_timeout_close: bool,
    /// Per-listener cap of accepted stream connections.
    tcp_max_connections: usize,
    /// Per-listener cap of live connections from one source IP address (off by default).
    max_connections_per_ip: usize,
    /// Send a keepalive this often (WebSocket ping; `\r\n\r\n` on raw TCP/TLS, RFC 5626).
    keepalive_interval: Duration,
    /// With `keepalive_interval`: the peer is dead when nothing arrives this long after a
    /// keepalive (default 10 s).
    keepalive_timeout: Duration,
    /// Listen on this many sockets bound to the same address with `SO_REUSEPORT` (udp and
    /// tcp listeners; 1, the default, is one plain socket): the kernel spreads peers over
    /// them and each is served by its own task, so a listener uses every core.
    reuseport: u16,
    /// Accepted streams start with a PROXY protocol header (v1 or v2) giving the real
    /// client's address (listeners behind a load balancer).
    proxy_protocol: bool,
    /// Answer `\r\n\r\n` keepalives with `\r\n` on raw TCP/TLS (RFC 5626 server side),
    /// without passing them to the protocol.
    crlf_keepalive: bool,
    /// Largest message accepted (stream frame, WebSocket message, HTTP body).
    max_message_size: usize,
    /// Host: listener Host filter (ws/http), client Host header and TLS server name.
    host: String,
    /// Path: listener path prefix (ws/http), client request path.
    path: String,
    /// WebSocket sub-protocol (lower-cased).
    ws_proto: String,
    /// Extra headers of the WebSocket client handshake.
    headers: Vec<(String, String)>,
    /// WebSocket permessage-deflate (RFC 7692), off by default: a ws/wss listener accepts
    /// a client's offer, a ws/wss client offers it (the peer may decline; then messages go
    /// uncompressed). Costs up to ~300 KiB of compressor state per connection.
    ws_deflate: bool,
    /// External URL of an http/https listener.
    external_url: String,
    /// User from the URI userinfo.
    user: String,
    /// Password from the URI userinfo.
    password: String,
    /// HTTP: inactivity timeout of a connection.
    http_inactivity_timeout: Duration,
    /// HTTP: maximum number of request headers.
    http_max_headers: usize,
    /// HTTP: maximum size of the request head (request line plus headers).
    http_max_head_size: usize,
    /// HTTP: maximum requests per connection.
    http_max_keepalive: usize,
    /// HTTP: maximum time to receive a request head.
    http_request_timeout: Duration,
    /// TLS: verify the peer (clients: the server certificate; servers: require a client
    /// certificate).
    tls_verify: bool,
    /// TLS: certificate chain file (PEM).
    tls_certfile: String,
    /// TLS: private key file (PEM).
    tls_keyfile: String,
    /// TLS: CA bundle (PEM) used to verify the peer.
    tls_cacertfile: String,
    /// TLS: password of an encrypted key.
    tls_password: String,
    /// TLS: maximum chain depth.
    tls_depth: u8,
    /// TLS: protocol versions allowed (`tls1.2`, `tls1.3`).
    tls_versions: Vec<String>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Options");
        if let Some(v) = &self.id {
            d.field("id", v);
        }
        if let Some(v) = &self.domain {
            d.field("domain", v);
        }
        d.field("set", &self.set_names());
        if !self.extra.is_empty() {
            d.field("extra", &self.extra);
        }
        d.finish()
    }
}

/// Names accepted by [`Options::set`], and whether each may come from a URI parameter.
pub const OPTION_NAMES: &[(&str, bool)] = &[
    ("id", true),
    ("domain", false),
    ("class", false),
    ("protocol", false),
    ("resolve_type", false),
    ("idle_timeout", true),
    ("debug", true),
    ("connect_timeout", true),
    ("no_dns_cache", true),
    ("base_listener", false),
    ("base_nkport", false),
    ("udp_ephemeral", true),
    ("force_new", false),
    ("udp_starts_tcp", true),
    ("udp_no_connections", true),
    ("udp_stun_reply", true),
    ("stun", true),
    ("udp_stun_t1", true),
    ("udp_to_tcp", true),
    ("udp_max_size", true),
    ("sctp_out_streams", true),
    ("sctp_in_streams", true),
    ("tcp_packet", true),
    ("send_timeout", true),
    ("send_timeout_close", true),
    ("tcp_max_connections", true),
    ("max_connections_per_ip", true),
    ("keepalive_interval", true),
    ("keepalive_timeout", true),
    ("crlf_keepalive", true),
    ("proxy_protocol", true),
    ("reuseport", true),
    ("max_message_size", true),
    ("host", true),
    ("path", true),
    ("ws_proto", true),
    ("headers", true),
    ("ws_deflate", true),
    ("external_url", true),
    ("user", true),
    ("password", true),
    ("http_inactivity_timeout", true),
    ("http_max_headers", true),
    ("http_max_head_size", true),
    ("http_max_keepalive", true),
    ("http_request_timeout", true),
    ("tls_verify", true),
    ("tls_certfile", true),
    ("tls_keyfile", true),
    ("tls_cacertfile", true),
    ("tls_password", true),
    ("tls_depth", true),
    ("tls_versions", true),
];

/// URI parameters that are not options but are read by resolution itself; they are
/// accepted and ignored by [`Options::set_from_uri`].
pub const RESOLUTION_PARAMS: &[&str] = &["transport", "maddr"];

fn syntax(key: &str, value: &str, expected: &'static str) -> Error {
    Error::Syntax {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(syntax(key, v, "true or false")),
    }
}

fn parse_int<T: std::str::FromStr>(key: &str, v: &str, min: u64, max: u64) -> Result<T> {
    const EXPECTED: &str = "a whole number in range";
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| syntax(key, v, "a whole number"))?;
    if n < min || n > max {
        return Err(syntax(key, v, EXPECTED));
    }
    v.trim().parse().map_err(|_| syntax(key, v, EXPECTED))
}

fn parse_ms(key: &str, v: &str, min: u64) -> Result<Duration> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| syntax(key, v, "a whole number of milliseconds"))?;
    if n < min {
        return Err(syntax(key, v, "a positive number of milliseconds"));
    }
    Ok(Duration::from_millis(n))
}

fn parse_text(key: &str, v: &str) -> Result<String> {
    if v.chars().any(|c| c.is_control()) {
        return Err(syntax(key, v, "text without control characters"));
    }
    Ok(v.to_string())
}

/// Parses `name: value` pairs separated by `,` (the `headers` option as URI text).
fn parse_headers(key: &str, v: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (n, val) = part
            .split_once(':')
            .ok_or_else(|| syntax(key, v, "name: value pairs separated by commas"))?;
        let n = n.trim();
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(syntax(key, v, "a valid header name"));
        }
        out.push((n.to_string(), parse_text(key, val.trim())?));
    }
    Ok(out)
}

impl Options {
    /// Empty options (everything at its default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an option by name from its text form.
    ///
    /// Errors: [`Error::UnknownOption`] for a name nkpacket does not know (protocol-specific
    /// options go through [`Options::set_extra`]), [`Error::Syntax`] for a bad value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let k = key.trim();
        let v = value;
        match k {
            "id" => self.id = Some(parse_text(k, v)?),
            "domain" | "class" => self.domain = Some(parse_text(k, v)?),
            "protocol" => self.protocol = Some(parse_text(k, v)?.to_ascii_lowercase()),
            "resolve_type" => {
                self.resolve_type = Some(match v.trim() {
                    "listen" => ResolveType::Listen,
                    "connect" => ResolveType::Connect,
                    "send" => ResolveType::Send,
                    _ => return Err(syntax(k, v, "listen, connect or send")),
                })
            }
            "idle_timeout" => self.idle_timeout = Some(parse_ms(k, v, 0)?),
            "debug" => self.debug = Some(parse_bool(k, v)?),
            "connect_timeout" => self.connect_timeout = Some(parse_ms(k, v, 1)?),
            "no_dns_cache" => self.no_dns_cache = Some(parse_bool(k, v)?),
            "base_listener" | "base_nkport" => self.base_listener = Some(parse_bool(k, v)?),
            "udp_ephemeral" => self.udp_ephemeral = Some(parse_bool(k, v)?),
            "force_new" => self.force_new = Some(parse_bool(k, v)?),
            "udp_starts_tcp" => self.udp_starts_tcp = Some(parse_bool(k, v)?),
            "udp_no_connections" => self.udp_no_connections = Some(parse_bool(k, v)?),
            "udp_stun_reply" | "stun" => self.udp_stun_reply = Some(parse_bool(k, v)?),
            "udp_stun_t1" => self.udp_stun_t1 = Some(parse_ms(k, v, 1)?),
            "udp_to_tcp" => self.udp_to_tcp = Some(parse_bool(k, v)?),
            "udp_max_size" => self.udp_max_size = Some(parse_int(k, v, 1, 65_507)?),
            "sctp_out_streams" => self.sctp_out_streams = Some(parse_int(k, v, 1, 65_535)?),
            "sctp_in_streams" => self.sctp_in_streams = Some(parse_int(k, v, 1, 65_535)?),
            "tcp_packet" => {
                self.tcp_packet =
                    Some(Framing::parse(v).ok_or_else(|| syntax(k, v, "raw, 1, 2 or 4"))?)
            }
            "send_timeout" => self.send_timeout = Some(parse_ms(k, v, 1)?),
            "send_timeout_close" => self.send_timeout_close = Some(parse_bool(k, v)?),
            "keepalive_interval" => self.keepalive_interval = Some(parse_ms(k, v, 1)?),
            "keepalive_timeout" => self.keepalive_timeout = Some(parse_ms(k, v, 1)?),
            "crlf_keepalive" => self.crlf_keepalive = Some(parse_bool(k, v)?),
            "proxy_protocol" => self.proxy_protocol = Some(parse_bool(k, v)?),
            "reuseport" => self.reuseport = Some(parse_int(k, v, 1, 256)?),
            "max_connections_per_ip" => {
                self.max_connections_per_ip = Some(parse_int(k, v, 1, 1_000_000)?)
            }
            "tcp_max_connections" => {
                self.tcp_max_connections = Some(parse_int(k, v, 1, 1_000_000)?)
            }
            "max_message_size" => {
                self.max_message_size = Some(parse_int(k, v, 1, u32::MAX as u64)?)
            }
            "host" => self.host = Some(parse_text(k, v)?),
            "path" => self.path = Some(parse_text(k, v)?),
            "ws_proto" => self.ws_proto = Some(parse_text(k, v)?.to_ascii_lowercase()),
            "headers" => self.headers = Some(parse_headers(k, v)?),
            "ws_deflate" => self.ws_deflate = Some(parse_bool(k, v)?),
            "external_url" => self.external_url = Some(parse_text(k, v)?),
            "user" => self.user = Some(parse_text(k, v)?),
            "password" => self.password = Some(parse_text(k, v)?),
            "http_inactivity_timeout" => self.http_inactivity_timeout = Some(parse_ms(k, v, 0)?),
            "http_max_headers" => self.http_max_headers = Some(parse_int(k, v, 1, 10_000)?),
            "http_max_head_size" => {
                self.http_max_head_size = Some(parse_int(k, v, 64, 16 * 1024 * 1024)?)
            }
            "http_max_keepalive" => {
                self.http_max_keepalive = Some(parse_int(k, v, 1, u32::MAX as u64)?)
            }
            "http_request_timeout" => self.http_request_timeout = Some(parse_ms(k, v, 1)?),
            "tls_verify" => self.tls_verify = Some(parse_bool(k, v)?),
            "tls_certfile" => self.tls_certfile = Some(parse_text(k, v)?),
            "tls_keyfile" => self.tls_keyfile = Some(parse_text(k, v)?),
            "tls_cacertfile" => self.tls_cacertfile = Some(parse_text(k, v)?),
            "tls_password" => self.tls_password = Some(parse_text(k, v)?),
            "tls_depth" => self.tls_depth = Some(parse_int(k, v, 0, 16)?),
            "tls_versions" => {
                let mut out = Vec::new();
                for t in v.split(',').map(|s| s.trim().to_ascii_lowercase()) {
                    match t.as_str() {
                        "tls1.2" | "tlsv1.2" => out.push("tls1.2".to_string()),
                        "tls1.3" | "tlsv1.3" => out.push("tls1.3".to_string()),
                        _ => return Err(syntax(k, v, "tls1.2 and/or tls1.3, comma separated")),
                    }
                }
                self.tls_versions = Some(out)
            }
            _ => return Err(Error::UnknownOption(k.to_string())),
        }
        Ok(())
    }

    /// Sets an option that came from a URI parameter.
    ///
    /// Like [`Options::set`], with three differences that follow the original:
    /// `transport` and `maddr` (read by resolution) are ignored, options that may not come
    /// from a URI (`domain`, `protocol`, `force_new`, ...) are ignored with `Ok(false)`, and
    /// names in `extra_keys` (the protocol's own options) go to [`Options::extra`].
    /// Returns whether the option was taken.
    pub fn set_from_uri(&mut self, key: &str, value: &str, extra_keys: &[&str]) -> Result<bool> {
        let k = key.trim().to_ascii_lowercase();
        if RESOLUTION_PARAMS.contains(&k.as_str()) {
            return Ok(false);
        }
        match OPTION_NAMES.iter().find(|(n, _)| *n == k) {
            Some((_, true)) => self.set(&k, value).map(|_| true),
            Some((_, false)) => Ok(false),
            None if extra_keys.contains(&k.as_str()) => {
                self.extra.insert(k, value.to_string());
                Ok(true)
            }
            None => Err(Error::UnknownOption(k)),
        }
    }

    /// Sets a protocol-specific option (one nkpacket does not interpret).
    pub fn set_extra(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.extra.insert(key.into(), value.into());
    }

    /// Builder form of setting the domain.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Builder form of setting the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Builder form of setting the idle timeout.
    pub fn with_idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = Some(t);
        self
    }

    /// Builder form of setting the user state.
    pub fn with_user_state(mut self, s: UserState) -> Self {
        self.user_state = Some(s);
        self
    }

    /// Builder form of setting `base_listener`.
    pub fn with_base_listener(mut self, on: bool) -> Self {
        self.base_listener = Some(on);
        self
    }

    /// Builder form of setting the stream framing.
    pub fn with_framing(mut self, f: Framing) -> Self {
        self.tcp_packet = Some(f);
        self
    }

    /// Effective domain (`"none"` when absent, as the original's default class).
    pub fn domain_or_default(&self) -> &str {
        self.domain.as_deref().unwrap_or("none")
    }

    /// Effective idle timeout for `transport` (`None` = never).
    pub fn effective_idle_timeout(&self, transport: TransportKind) -> Option<Duration> {
        let t = self
            .idle_timeout
            .unwrap_or_else(|| defaults::idle_timeout(transport));
        (!t.is_zero()).then_some(t)
    }

    /// Effective connect timeout.
    pub fn effective_connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(defaults::CONNECT_TIMEOUT)
    }

    /// Effective framing of stream transports.
    pub fn framing(&self) -> Framing {
        self.tcp_packet.clone().unwrap_or_default()
    }

    /// Effective maximum message size.
    pub fn effective_max_message_size(&self) -> usize {
        self.max_message_size.unwrap_or(defaults::MAX_MESSAGE_SIZE)
    }

    /// Effective maximum UDP datagram size.
    pub fn effective_udp_max_size(&self) -> usize {
        self.udp_max_size.unwrap_or(defaults::UDP_MAX_SIZE)
    }

    /// Effective per-listener connection cap.
    pub fn effective_tcp_max_connections(&self) -> usize {
        self.tcp_max_connections
            .unwrap_or(defaults::TCP_MAX_CONNECTIONS)
    }

    /// True when listeners must set `SO_REUSEPORT` (`reuseport` above 1).
    pub fn wants_reuseport(&self) -> bool {
        self.reuseport.is_some_and(|n| n > 1)
    }

    /// Effective TLS verification: on by default.
    pub fn effective_tls_verify(&self) -> bool {
        self.tls_verify.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_settable() {
        for (name, _) in OPTION_NAMES {
            let sample = match *name {
                "resolve_type" => "listen",
                "tcp_packet" => "2",
                "headers" => "x-a: 1, x-b: 2",
                "tls_versions" => "tls1.2,tls1.3",
                "tls_depth" => "3",
                "reuseport" => "4",
                "http_max_head_size" => "1024",
                "send_timeout_close" | "crlf_keepalive" | "proxy_protocol" => "true",
                n if n.contains("timeout") || n.ends_with("_t1") || n.ends_with("_interval") => {
                    "100"
                }
                n if n.contains("max") || n.contains("streams") => "10",
                "id" | "domain" | "class" | "protocol" | "host" | "path" | "ws_proto"
                | "external_url" | "user" | "password" | "tls_certfile" | "tls_keyfile"
                | "tls_cacertfile" | "tls_password" => "x",
                _ => "true",
            };
            let mut o = Options::default();
            o.set(name, sample)
                .unwrap_or_else(|e| panic!("{name}={sample}: {e}"));
            assert!(!o.set_names().is_empty(), "{name} set nothing");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let mut o = Options::default();
        match o.set("udp_max_size", "big") {
            Err(Error::Syntax { key, .. }) => assert_eq!(key, "udp_max_size"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            o.set("udp_max_size", "0"),
            Err(Error::Syntax { .. })
        ));
        assert!(matches!(
            o.set("tcp_packet", "3"),
            Err(Error::Syntax { .. })
        ));
        assert!(matches!(
            o.set("connect_timeout", "0"),
            Err(Error::Syntax { .. })
        ));
        assert!(matches!(o.set("nope", "1"), Err(Error::UnknownOption(k)) if k == "nope"));
    }

    #[test]
    fn uri_rules() {
        let mut o = Options::default();
        assert!(!o.set_from_uri("transport", "tcp", &[]).unwrap());
        assert!(!o.set_from_uri("class", "x", &[]).unwrap());
        assert_eq!(o.domain, None);
        assert!(o.set_from_uri("idle_timeout", "5", &[]).unwrap());
        assert!(o.set_from_uri("lr", "1", &["lr"]).unwrap());
        assert_eq!(o.extra.get("lr").map(String::as_str), Some("1"));
        assert!(matches!(
            o.set_from_uri("zzz", "1", &[]),
            Err(Error::UnknownOption(_))
        ));
    }

    #[test]
    fn merge_precedence_and_defaults() {
        let mut a = Options::default();
        a.set("idle_timeout", "0").unwrap();
        a.set("ws_proto", "SIP").unwrap();
        assert_eq!(a.ws_proto.as_deref(), Some("sip"));
        assert_eq!(a.effective_idle_timeout(TransportKind::Tcp), None);
        let b = Options::default().with_idle_timeout(Duration::from_millis(7));
        a.merge_from(&b);
        assert_eq!(
            a.effective_idle_timeout(TransportKind::Tcp),
            Some(Duration::from_millis(7))
        );
        assert_eq!(
            Options::default().effective_idle_timeout(TransportKind::Udp),
            Some(Duration::from_secs(30))
        );
        assert!(Options::default().effective_tls_verify());
        assert_eq!(Options::default().domain_or_default(), "none");
    }
}
