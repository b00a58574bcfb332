//! Client side: our own WebSocket handshake over TCP or TLS.

use std::net::SocketAddr;

use base64::Engine;
use nkp_core::{Error, LinkInfo, Options, TransportKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::deflate::{CLIENT_OFFER, check_response};
use crate::frame::Role;
use crate::link::{BoxIo, WsLink};
use crate::server::accept_key;

/// Largest handshake response head a client reads.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The request path of a client: option `path`, `/` when absent or empty (a missing leading
/// `/` is added).
pub(crate) fn client_path(opts: &Options) -> String {
    match opts
        .path
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
        None => "/".to_string(),
    }
}

/// The handshake request text.
fn request(opts: &Options, remote: SocketAddr, secure: bool, key: &str) -> Result<String, Error> {
    let path = client_path(opts);
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Syntax {
            key: "path".into(),
            value: path,
            expected: "a request path without spaces",
        });
    }
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n",
        nkp_http::host_header(opts, remote, secure)
    );
    if let Some(p) = opts.ws_proto.as_deref().filter(|p| !p.is_empty()) {
        r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if opts.ws_deflate == Some(true) {
        r.push_str(&format!("Sec-WebSocket-Extensions: {CLIENT_OFFER}\r\n"));
    }
    for (n, v) in opts.headers.iter().flatten() {
        if n.is_empty()
            || !n.bytes().all(|b| b.is_ascii_graphic() && b != b':')
            || v.chars().any(|c| c == '\r' || c == '\n')
        {
            return Err(Error::Syntax {
                key: "headers".into(),
                value: format!("{n}: {v}"),
                expected: "valid header names and values",
            });
        }
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    Ok(r)
}

/// A parsed handshake response head.
#[derive(Debug)]
struct ResponseHead {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

impl ResponseHead {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

fn parse_head(head: &[u8], remote: SocketAddr) -> Result<ResponseHead, Error> {
    let bad = |why: &str| Error::Protocol(format!("websocket handshake with {remote}: {why}"));
    let text = std::str::from_utf8(head).map_err(|_| bad("response head is not text"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad(&format!("not an HTTP/1.x response: {status_line:?}")));
    }
    // Exactly three digits (found by fuzzing: `0101` and `+101` used to read as 101).
    let status = parts
        .next()
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| bad(&format!("bad header line {line:?}")))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Ok(ResponseHead {
        status,
        reason,
        headers,
    })
}

/// Runs the client handshake on `io` and returns the link (the caller bounds the time).
pub(crate) async fn handshake(
    mut io: BoxIo,
    transport: TransportKind,
    local: SocketAddr,
    remote: SocketAddr,
    opts: &Options,
) -> Result<WsLink, Error> {
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    let key = base64::engine::general_purpose::STANDARD.encode(raw);
    let req = request(opts, remote, transport.is_secure(), &key)?;
    io.write_all(req.as_bytes())
        .await
        .map_err(|e| Error::io("websocket handshake", Some(remote), e))?;
    io.flush()
        .await
        .map_err(|e| Error::io("websocket handshake", Some(remote), e))?;

    // read until the blank line, wherever the reads split it
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(Error::Protocol(format!(
                "websocket handshake with {remote}: response head larger than {MAX_RESPONSE_HEAD} bytes"
            )));
        }
        let mut chunk = [0u8; 4096];
        let n = io
            .read(&mut chunk)
            .await
            .map_err(|e| Error::io("websocket handshake", Some(remote), e))?;
        if n == 0 {
            return Err(Error::Closed(Some(format!(
                "websocket handshake with {remote}: connection closed before the response"
            ))));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = parse_head(&buf[..end], remote)?;
    let rest = &buf[end + 4..];

    if head.status != 101 {
        return Err(Error::Closed(Some(format!(
            "websocket handshake refused by {remote}: HTTP {} {}",
            head.status, head.reason
        ))));
    }
    let bad = |why: String| Error::Protocol(format!("websocket handshake with {remote}: {why}"));
    if !head.has_token("upgrade", "websocket") {
        return Err(bad("the 101 response has no Upgrade: websocket".into()));
    }
    if !head.has_token("connection", "upgrade") {
        return Err(bad("the 101 response has no Connection: Upgrade".into()));
    }
    let expected = accept_key(&key);
    match head.get("sec-websocket-accept") {
        Some(a) if a == expected => {}
        Some(a) => return Err(bad(format!("wrong Sec-WebSocket-Accept {a:?}"))),
        None => return Err(bad("the 101 response has no Sec-WebSocket-Accept".into())),
    }
    let offered = opts.ws_proto.as_deref().filter(|p| !p.is_empty());
    let chosen = head.get("sec-websocket-protocol").map(str::to_string);
    if let Some(c) = &chosen
        && offered.is_none_or(|o| !o.eq_ignore_ascii_case(c))
    {
        return Err(bad(format!(
            "the server selected sub-protocol {c:?}, which was not offered (offered: {offered:?})"
        )));
    }
    let extensions = head.get_all("sec-websocket-extensions");
    let deflate = if opts.ws_deflate == Some(true) {
        check_response(extensions).map_err(bad)?
    } else if extensions.into_iter().any(|v| !v.trim().is_empty()) {
        return Err(bad(
            "the server selected an extension that was not offered".into()
        ));
    } else {
        None
    };

    let max = opts.effective_max_message_size();
    let mut info = LinkInfo::new(transport, local, remote);
    info.meta.host = opts.host.clone();
    info.meta.path = Some(client_path(opts));
    info.meta.ws_proto = chosen.map(|c| c.to_ascii_lowercase());
    Ok(WsLink::new(io, Role::Client, info, max, deflate, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_headers() {
        let mut o = Options::default();
        o.set("ws_proto", "SIP").unwrap();
        o.set("headers", "x-a: 1").unwrap();
        let r = request(&o, "[::1]:8080".parse().unwrap(), false, "k").unwrap();
        assert!(
            r.starts_with("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{r}"
        );
        assert!(r.contains("Sec-WebSocket-Protocol: sip\r\n"));
        assert!(r.ends_with("x-a: 1\r\n\r\n"));
        o.set("path", "a/b").unwrap();
        let r = request(&o, "127.0.0.1:80".parse().unwrap(), false, "k").unwrap();
        assert!(
            r.starts_with("GET /a/b HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
            "{r}"
        );
    }

    #[test]
    fn response_heads() {
        let r = "1.2.3.4:5".parse().unwrap();
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\nserver: NkPACKET", r).unwrap();
        assert_eq!(h.status, 404);
        assert_eq!(h.get("Server"), Some("NkPACKET"));
        assert!(parse_head(b"SSH-2.0-x", r).is_err());
        assert!(parse_head(b"HTTP/1.1 abc\r\n", r).is_err());
    }
}

#[cfg(test)]
mod status_line_tests {
    use super::*;

    #[test]
    fn status_lines_are_strict() {
        let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let ok = parse_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",
            remote,
        );
        assert_eq!(ok.unwrap().status, 101);
        // fuzz/ws_client_handshake: these used to read as 101
        for bad in [
            &b"HTTP/1.1 0101 Switching Protocols\r\n"[..],
            b"HTTP/1.1 +101 Switching Protocols\r\n",
            b"HTTP/1.1\0\0 101 Switching Protocols\r\n",
            b"HTTP/2 101 x\r\n",
        ] {
            assert!(
                parse_head(bad, remote).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
