//! Server-wide settings of a shared HTTP server, taken from its first listener.

use std::time::Duration;

use nkp_core::options::defaults;
use nkp_core::{Error, Options};

/// Header read timeout when `http_request_timeout` is not given: a client has this long to
/// send a complete request head (first request, and each keep-alive request after it).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum number of request headers when `http_max_headers` is not given.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// TLS handshake timeout of accepted connections when the first listener has no
/// `connect_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings one shared server applies to every connection, whichever listener the
/// requests are routed to. They come from the first listener on the port; a later listener
/// that explicitly asks for a different value is refused with [`Error::SharedFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// TLS (https, wss) or plain (http, ws).
    pub secure: bool,
    /// Largest request head (request line and headers), `http_max_head_size`; larger → 431.
    pub max_head_size: usize,
    /// Most request headers, `http_max_headers`; more → 431.
    pub max_headers: usize,
    /// Most requests on one connection, `http_max_keepalive` (`None`: no limit).
    pub max_keepalive: Option<usize>,
    /// Time to receive a request head, `http_request_timeout` (also the idle time allowed
    /// between keep-alive requests).
    pub request_timeout: Duration,
    /// Most concurrent connections, `tcp_max_connections` (WebSocket sessions included).
    pub max_connections: usize,
    /// TLS handshake timeout (`connect_timeout` of the first listener).
    pub handshake_timeout: Duration,
    /// TLS files and verification (`tls_certfile`, `tls_keyfile`, `tls_cacertfile`,
    /// `tls_verify`, `tls_versions`); empty for plain servers.
    pub tls: Vec<(&'static str, String)>,
    /// Connections start with a PROXY protocol header (`proxy_protocol`): the request's
    /// remote address is the one it gives.
    pub proxy_protocol: bool,
}

fn tls_fields(o: &Options) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("tls_certfile", o.tls_certfile.clone()),
        ("tls_keyfile", o.tls_keyfile.clone()),
        ("tls_cacertfile", o.tls_cacertfile.clone()),
        ("tls_verify", o.tls_verify.map(|v| v.to_string())),
        ("tls_versions", o.tls_versions.as_ref().map(|v| v.join(","))),
        ("tls_depth", o.tls_depth.map(|v| v.to_string())),
    ]
}

impl ServerSettings {
    /// The settings a server created for a listener with `options` gets.
    pub fn from_options(options: &Options, secure: bool) -> Self {
        let tls = if secure {
            tls_fields(options)
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        } else {
            Vec::new()
        };
        ServerSettings {
            secure,
            max_head_size: options
                .http_max_head_size
                .unwrap_or(defaults::HTTP_MAX_HEAD),
            max_headers: options.http_max_headers.unwrap_or(DEFAULT_MAX_HEADERS),
            max_keepalive: options.http_max_keepalive,
            request_timeout: options
                .http_request_timeout
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            max_connections: options.effective_tcp_max_connections(),
            handshake_timeout: options.connect_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
            tls,
            proxy_protocol: options.proxy_protocol == Some(true),
        }
    }

    /// Checks that a listener with `options` may join a server with these settings: every
    /// server-wide option it sets explicitly must equal the server's value.
    pub fn check_compatible(&self, options: &Options, where_: &str) -> Result<(), Error> {
        let conflict = |name: &str, asked: String, have: String| {
            Err(Error::SharedFailed(format!(
                "cannot share port {where_}: the listener asks {name}={asked} but the server on \
                 this port was started with {name}={have} (server-wide settings come from the \
                 first listener)"
            )))
        };
        if let Some(v) = options.http_max_head_size
            && v != self.max_head_size
        {
            return conflict(
                "http_max_head_size",
                v.to_string(),
                self.max_head_size.to_string(),
            );
        }
        if let Some(v) = options.http_max_headers
            && v != self.max_headers
        {
            return conflict(
                "http_max_headers",
                v.to_string(),
                self.max_headers.to_string(),
            );
        }
        if let Some(v) = options.http_max_keepalive
            && Some(v) != self.max_keepalive
        {
            let have = self
                .max_keepalive
                .map_or_else(|| "unlimited".to_string(), |n| n.to_string());
            return conflict("http_max_keepalive", v.to_string(), have);
        }
        if let Some(v) = options.http_request_timeout
            && v != self.request_timeout
        {
            return conflict(
                "http_request_timeout",
                v.as_millis().to_string(),
                self.request_timeout.as_millis().to_string(),
            );
        }
        if let Some(v) = options.proxy_protocol
            && v != self.proxy_protocol
        {
            return conflict(
                "proxy_protocol",
                v.to_string(),
                self.proxy_protocol.to_string(),
            );
        }
        if let Some(v) = options.tcp_max_connections
            && v != self.max_connections
        {
            return conflict(
                "tcp_max_connections",
                v.to_string(),
                self.max_connections.to_string(),
            );
        }
        if self.secure {
            for (k, v) in tls_fields(options) {
                let Some(v) = v else { continue };
                let have = self.tls.iter().find(|(n, _)| *n == k).map(|(_, h)| h);
                if have != Some(&v) {
                    return conflict(k, v, have.cloned().unwrap_or_else(|| "unset".into()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_listeners_may_repeat_but_not_change() {
        let mut first = Options::default();
        first.set("http_max_head_size", "1024").unwrap();
        let s = ServerSettings::from_options(&first, false);
        assert!(s.check_compatible(&Options::default(), "x").is_ok());
        assert!(s.check_compatible(&first, "x").is_ok());
        let mut other = Options::default();
        other.set("http_max_head_size", "2048").unwrap();
        let e = s.check_compatible(&other, "127.0.0.1:1").unwrap_err();
        assert_eq!(e.code(), "shared_failed");
        assert!(e.to_string().contains("http_max_head_size=2048"), "{e}");
    }

    #[test]
    fn tls_files_must_match() {
        let mut first = Options::default();
        first.set("tls_certfile", "/a.pem").unwrap();
        first.set("tls_keyfile", "/a.key").unwrap();
        let s = ServerSettings::from_options(&first, true);
        let mut other = Options::default();
        other.set("tls_certfile", "/b.pem").unwrap();
        assert!(s.check_compatible(&other, "x").is_err());
        assert!(s.check_compatible(&first, "x").is_ok());
    }
}
