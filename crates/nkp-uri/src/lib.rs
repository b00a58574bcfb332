//! The URI-list grammar of nkpacket (the grammar of nklib, spec §2.2).
//!
//! A connection spec such as `sip://example.com;transport=tls`,
//! `<test://h:1;transport=ws>;idle_timeout=500` or `"Name" <sip:a@b:5060;lr>;tag=1?h=v` is a
//! comma-separated list of URIs. Each URI is written either *bare* (`scheme:...`) or *bracketed*
//! (`[display] <scheme:...>` followed by more params/headers). This crate is a pure, panic-free
//! parser for that grammar, with a canonical printer ([`Uri`]'s `Display`) whose output
//! [`parse`] reads back to an equal [`Uri`].
//!
//! ```
//! let uris = nkp_uri::parse_list("<test://h:1;transport=ws>;idle_timeout=500, sip:b").unwrap();
//! assert_eq!(uris.len(), 2);
//! assert_eq!(uris[0].host, "h");
//! assert_eq!(uris[0].port, 1);
//! assert_eq!(uris[0].param("transport"), Some(Some("ws")));
//! assert_eq!(uris[0].ext_param("idle_timeout"), Some(Some("500")));
//! assert_eq!(uris[1].scheme, "sip");
//! ```
//!
//! # Grammar
//!
//! ```text
//! list   := item *( "," item )
//! item   := [display] "<" uri ">" *( ";" param ) [ "?" header *( "&" header ) ]
//!         | uri                      (bare form: its params/headers are *ext* params/headers)
//!         | "*" *( ";" param ) [ "?" header *( "&" header ) ]
//! uri    := scheme ":" ["//"] [ user [ ":" password ] "@" ] host [ ":" port ] [ path ]
//!           *( ";" param ) [ "?" header *( "&" header ) ]
//! host   := hostname | IPv4 | "[" IPv6 "]" | "*"
//! param  := key [ "=" value ]
//! header := key [ "=" value ]
//! ```
//!
//! # Decisions
//!
//! These are the choices made where spec §2.2 or the original nklib parser leaves room:
//!
//! * **Empty list.** [`parse_list`] returns `Ok(vec![])` for empty or whitespace-only text (the
//!   spec's "empty list → `{ok, []}`"); [`parse`] rejects it.
//! * **Whitespace** (space, tab, CR, LF) is tolerated around every token: around `<`, `>`, `:`,
//!   `@`, `;`, `=`, `?`, `&`, `,`, and between a display name and `<`. It is *not* allowed
//!   inside a token, and a path must follow its host or port directly (`sip:a /ws` is an error,
//!   as in nklib). Trailing whitespace ends a path (nklib kept it in the path).
//! * **Control characters** (other than that whitespace between tokens) are rejected anywhere;
//!   CR and LF are rejected inside quoted strings.
//! * **Quoting.** Values may contain double-quoted segments; the quotes are removed and inside
//!   them `\x` stands for `x` (so `\"` and `\\` work). nklib kept the quotes in the value; the
//!   facade wants the unquoted text. An unquoted value runs to whitespace or to `; ? > ,`
//!   (params) or `& > ,` (headers), so `;` and `?` may appear in an unquoted header value. A `<`
//!   in an unquoted value is rejected. `key=` with nothing after it is an error; `key=""` gives
//!   `Some("")`.
//! * **Keys** of params and headers are RFC 3261 tokens (letters, digits, `-.!%*_+`'~`) and are
//!   lower-cased. Params must come before headers.
//! * **Display names** lose their quotes (with `\x` escapes resolved); unquoted whitespace runs
//!   become a single space and leading/trailing unquoted whitespace is dropped. `"" <sip:a>`
//!   gives `Some("")`; no display text gives `None`.
//! * **Hosts** are host names (ASCII letters, digits, `-`, `.`, `_`; no empty label, one
//!   trailing dot allowed), IPv4 literals (a host of only digits and dots must be a valid IPv4
//!   address), bracketed IPv6 literals (validated as [`std::net::Ipv6Addr`], kept as written with
//!   brackets) and `*`. An empty host is always an error. The item `*` alone (optionally with
//!   params/headers) is accepted as a URI with an empty scheme and host `*`.
//! * **Userinfo** is recognised by an `@` before the first `; ? < > , / " [`. The user must not
//!   be empty; the password may be (`u:@h` → `Some("")`) and may contain `:`.
//! * **Port** must be decimal digits with a value in 0..=65535; port 0 means "absent".
//! * **Positions** in [`UriError`] are byte offsets into the parsed text. For an unbalanced
//!   `<`, `"` or `[` the position is that of the opening character.
//! * **Canonical form** ([`Uri`]'s `Display`): no `//` after the scheme, the display name always
//!   quoted, values quoted only when needed, a path ending in `/` written with one more `/` so
//!   that reading it back removes only that one. The bracketed form is written when the URI was
//!   bracketed, or has a display name or params/headers inside `<...>`.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

mod parser;

#[cfg(test)]
mod tests;

/// A parameter or header: lower-cased key, and `None` for a flag (`;lr`) or the unquoted value.
pub type Param = (String, Option<String>);

/// One parsed URI of a spec list (see the [crate documentation](crate) for the grammar).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Uri {
    /// Display name written before `<...>`, quotes removed (`None` when there is none).
    pub display: Option<String>,
    /// Scheme, lower-cased (`sip`, `test`, `http`, ...); empty only for the `*` item.
    pub scheme: String,
    /// User name from the userinfo (`user[:password]@`).
    pub user: Option<String>,
    /// Password from the userinfo (`Some("")` for `user:@host`).
    pub password: Option<String>,
    /// Host as written; an IPv6 literal keeps its brackets (`"[1:2::3]"`); may be `"*"`.
    pub host: String,
    /// Port, `0` when absent.
    pub port: u16,
    /// Path from the first `/` after `host[:port]`; one trailing `/` removed unless the path is
    /// exactly `/`.
    pub path: Option<String>,
    /// Params inside `<...>` (lower-cased keys, unquoted values, `None` for flags). Always
    /// empty for the bare form.
    pub params: Vec<Param>,
    /// Headers inside `<...>` (lower-cased keys). Always empty for the bare form.
    pub headers: Vec<Param>,
    /// Params after `>`; for the bare form, all its params.
    pub ext_params: Vec<Param>,
    /// Headers after `>`; for the bare form, all its headers.
    pub ext_headers: Vec<Param>,
    /// Whether the URI was written in `<...>` form.
    pub bracketed: bool,
}

/// A parse error: the whole input, the byte offset where it went wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URI {input:?} at {position}: {reason}")]
pub struct UriError {
    /// The text that was being parsed (the whole list).
    pub input: String,
    /// Byte offset into `input` of the offending character (or of the unclosed `<`, `"`, `[`).
    pub position: usize,
    /// What is wrong there.
    pub reason: String,
}

/// Parses a comma-separated list of URIs.
///
/// Empty or whitespace-only text is the empty list. Any error in any item fails the whole list.
///
/// ```
/// use nkp_uri::parse_list;
///
/// let uris = parse_list(r#""Name" <sip:a@b:5060;lr>;tag=1?h=v, test:[::1]:5060"#)?;
/// assert_eq!(uris[0].display.as_deref(), Some("Name"));
/// assert_eq!(uris[0].user.as_deref(), Some("a"));
/// assert_eq!(uris[0].param("lr"), Some(None));
/// assert_eq!(uris[0].ext_param("tag"), Some(Some("1")));
/// assert_eq!(uris[0].ext_headers, vec![("h".to_string(), Some("v".to_string()))]);
/// assert_eq!(uris[1].host, "[::1]");
/// assert_eq!(uris[1].port, 5060);
///
/// assert_eq!(parse_list("  ")?, vec![]);
/// let err = parse_list("sip:a, sip:b:99999").unwrap_err();
/// assert_eq!(err.position, 13);
/// assert!(err.reason.contains("out of range"));
/// # Ok::<(), nkp_uri::UriError>(())
/// ```
pub fn parse_list(text: &str) -> Result<Vec<Uri>, UriError> {
    parser::Parser::new(text).list()
}

/// Parses exactly one URI (surrounding whitespace allowed); a list or empty text is an error.
///
/// ```
/// let uri = nkp_uri::parse("sip://example.com;transport=tls")?;
/// assert_eq!(uri.scheme, "sip");
/// assert_eq!(uri.host, "example.com");
/// assert_eq!(uri.port, 0);
/// assert!(!uri.bracketed);
/// // In the bare form every param is an ext param.
/// assert_eq!(uri.param("transport"), None);
/// assert_eq!(uri.any_param("transport"), Some(Some("tls")));
///
/// assert!(nkp_uri::parse("sip:a,sip:b").is_err());
/// # Ok::<(), nkp_uri::UriError>(())
/// ```
pub fn parse(text: &str) -> Result<Uri, UriError> {
    parser::Parser::new(text).single()
}

/// Writes a list of URIs in canonical form, comma-separated; [`parse_list`] reads it back.
///
/// ```
/// let uris = nkp_uri::parse_list("sip:a , <sip:b;lr>")?;
/// assert_eq!(nkp_uri::format_list(&uris), "sip:a,<sip:b;lr>");
/// # Ok::<(), nkp_uri::UriError>(())
/// ```
pub fn format_list(uris: &[Uri]) -> String {
    let mut out = String::new();
    for (i, uri) in uris.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing into a String cannot fail.
        let _ = write!(out, "{uri}");
    }
    out
}

fn find<'a>(list: &'a [Param], key: &str) -> Option<Option<&'a str>> {
    list.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_deref())
}

impl Uri {
    /// The first param *inside* `<...>` named `key` (case-insensitive): `Some(None)` for a
    /// flag, `Some(Some(value))` otherwise, `None` when absent.
    ///
    /// ```
    /// let uri = nkp_uri::parse("<sip:a;LR;transport=TCP>;tag=1")?;
    /// assert_eq!(uri.param("lr"), Some(None));
    /// assert_eq!(uri.param("Transport"), Some(Some("TCP")));
    /// assert_eq!(uri.param("tag"), None);
    /// # Ok::<(), nkp_uri::UriError>(())
    /// ```
    pub fn param(&self, key: &str) -> Option<Option<&str>> {
        find(&self.params, key)
    }

    /// The first ext param (after `>`, or any param of the bare form) named `key`
    /// (case-insensitive).
    ///
    /// ```
    /// let uri = nkp_uri::parse("test://h:1;transport=ws;idle_timeout=500")?;
    /// assert_eq!(uri.ext_param("idle_timeout"), Some(Some("500")));
    /// # Ok::<(), nkp_uri::UriError>(())
    /// ```
    pub fn ext_param(&self, key: &str) -> Option<Option<&str>> {
        find(&self.ext_params, key)
    }

    /// The param named `key` inside `<...>` if there is one, else the ext param (this is how
    /// `transport` is looked up, spec §2.5).
    ///
    /// ```
    /// let uri = nkp_uri::parse("<sip:a;transport=tcp>;transport=udp")?;
    /// assert_eq!(uri.any_param("transport"), Some(Some("tcp")));
    /// # Ok::<(), nkp_uri::UriError>(())
    /// ```
    pub fn any_param(&self, key: &str) -> Option<Option<&str>> {
        self.param(key).or_else(|| self.ext_param(key))
    }

    /// The first header inside `<...>` named `key` (case-insensitive).
    pub fn header(&self, key: &str) -> Option<Option<&str>> {
        find(&self.headers, key)
    }

    /// The first ext header (after `>`, or any header of the bare form) named `key`
    /// (case-insensitive).
    pub fn ext_header(&self, key: &str) -> Option<Option<&str>> {
        find(&self.ext_headers, key)
    }

    /// The host as an IP address when it is an IPv4 or IPv6 literal (with or without brackets).
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    /// assert_eq!(nkp_uri::parse("sip:[::1]:5060")?.host_ip(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    /// assert_eq!(nkp_uri::parse("sip:127.0.0.1")?.host_ip(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    /// assert_eq!(nkp_uri::parse("sip:localhost")?.host_ip(), None);
    /// # Ok::<(), nkp_uri::UriError>(())
    /// ```
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.host_unbracketed().parse().ok()
    }

    /// The host without the brackets of an IPv6 literal (`"[::1]"` → `"::1"`).
    ///
    /// ```
    /// assert_eq!(nkp_uri::parse("sip:[1:2::3]:20")?.host_unbracketed(), "1:2::3");
    /// assert_eq!(nkp_uri::parse("sip:host")?.host_unbracketed(), "host");
    /// # Ok::<(), nkp_uri::UriError>(())
    /// ```
    pub fn host_unbracketed(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// Whether [`Display`](fmt::Display) writes this URI in `<...>` form.
    fn writes_bracketed(&self) -> bool {
        self.bracketed
            || self.display.is_some()
            || !self.params.is_empty()
            || !self.headers.is_empty()
    }
}

/// Writes `s` as a double-quoted string, escaping `"` and `\`.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('"')
}

/// Whether a value must be quoted to be read back as the same text.
fn needs_quotes(v: &str) -> bool {
    v.is_empty()
        || v.chars().any(|c| {
            parser::is_ws(c)
                || c.is_control()
                || matches!(c, ';' | '?' | '&' | '>' | ',' | '<' | '"' | '\\' | '=')
        })
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for (k, v) in params {
        write!(f, ";{k}")?;
        if let Some(v) = v {
            f.write_char('=')?;
            write_value(f, v)?;
        }
    }
    Ok(())
}

fn write_headers(f: &mut fmt::Formatter<'_>, headers: &[Param]) -> fmt::Result {
    for (i, (k, v)) in headers.iter().enumerate() {
        f.write_char(if i == 0 { '?' } else { '&' })?;
        f.write_str(k)?;
        if let Some(v) = v {
            f.write_char('=')?;
            write_value(f, v)?;
        }
    }
    Ok(())
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    if needs_quotes(v) {
        write_quoted(f, v)
    } else {
        f.write_str(v)
    }
}

/// The canonical form, which [`parse`] reads back to an equal `Uri` for every `Uri` that
/// [`parse`] or [`parse_list`] produced. (A hand-built `Uri` with characters the grammar cannot
/// carry, such as a host with a space, is written as is and will not read back.)
///
/// ```
/// let uri = nkp_uri::parse(r#" "My  name" < SIP : u:p@host : 5061/ws/ ;transport=tcp?Head1> ;op1="a b""#)?;
/// let text = uri.to_string();
/// assert_eq!(text, r#""My  name" <sip:u:p@host:5061/ws;transport=tcp?head1>;op1="a b""#);
/// assert_eq!(nkp_uri::parse(&text)?, uri);
/// # Ok::<(), nkp_uri::UriError>(())
/// ```
impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracketed = self.writes_bracketed();
        if self.scheme.is_empty() && self.host == "*" && !bracketed {
            f.write_char('*')?;
            write_params(f, &self.ext_params)?;
            return write_headers(f, &self.ext_headers);
        }
        if let Some(display) = &self.display {
            write_quoted(f, display)?;
            f.write_char(' ')?;
        }
        if bracketed {
            f.write_char('<')?;
        }
        write!(f, "{}:", self.scheme)?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(password) = &self.password {
                write!(f, ":{password}")?;
            }
            f.write_char('@')?;
        }
        f.write_str(&self.host)?;
        if self.port != 0 {
            write!(f, ":{}", self.port)?;
        }
        if let Some(path) = &self.path {
            if !path.starts_with('/') {
                f.write_char('/')?;
            }
            f.write_str(path)?;
            // Reading removes one trailing '/' (unless the path is exactly "/").
            if path.len() > 1 && path.ends_with('/') {
                f.write_char('/')?;
            }
        }
        write_params(f, &self.params)?;
        write_headers(f, &self.headers)?;
        if bracketed {
            f.write_char('>')?;
        }
        write_params(f, &self.ext_params)?;
        write_headers(f, &self.ext_headers)
    }
}

impl FromStr for Uri {
    type Err = UriError;

    /// Same as [`parse`]: exactly one URI.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}
