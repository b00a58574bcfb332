//! The hand-written, single-pass parser behind [`crate::parse_list`] and [`crate::parse`].
//!
//! The parser works on byte offsets of the original text (always on `char` boundaries), never
//! recurses and never slices at a computed offset that was not produced by walking the text, so
//! it cannot panic on any input.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{Uri, UriError};

/// Whitespace tolerated between tokens (space, tab, CR, LF).
pub(crate) fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Characters of a parameter or header name (RFC 3261 `token`).
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

/// Characters of a scheme after the first letter.
pub(crate) fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
}

/// Characters of a host name (IPv4 literals are a subset).
pub(crate) fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// Characters of a user name. Excludes everything that delimits a part of the URI.
pub(crate) fn is_user_char(c: char) -> bool {
    !is_ws(c)
        && !c.is_control()
        && !matches!(
            c,
            '@' | ':' | ';' | '?' | '<' | '>' | ',' | '/' | '"' | '[' | ']' | '\\'
        )
}

/// Characters of a password: as a user name, plus `:`.
pub(crate) fn is_password_char(c: char) -> bool {
    c == ':' || is_user_char(c)
}

/// Characters of a path (after its leading `/`).
pub(crate) fn is_path_char(c: char) -> bool {
    !is_ws(c) && !c.is_control() && !matches!(c, ';' | '?' | '>' | ',' | '<' | '"')
}

/// Where the params and headers being read go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Inside `<...>`: `params` / `headers`.
    Inner,
    /// After `>`, or anywhere in the bare form: `ext_params` / `ext_headers`.
    Ext,
}

/// What kind of value is being read: decides which characters end an unquoted value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Param,
    Header,
}

/// Cursor over the input text.
pub(crate) struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

type PResult<T> = Result<T, UriError>;

/// A human description of a character for error messages.
fn describe(c: char) -> String {
    if c.is_control() || is_ws(c) {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}'")
    }
}

impl<'a> Parser<'a> {
    pub(crate) fn new(input: &'a str) -> Self {
        Parser { input, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !is_ws(c) {
                break;
            }
            self.bump();
        }
    }

    /// Advances over a run of characters satisfying `pred` and returns it.
    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !pred(c) {
                break;
            }
            self.bump();
        }
        self.input.get(start..self.pos).unwrap_or("")
    }

    fn error(&self, position: usize, reason: impl Into<String>) -> UriError {
        UriError {
            input: self.input.to_owned(),
            position,
            reason: reason.into(),
        }
    }

    /// Error for the character at the cursor (or the end of input) in the given context.
    fn unexpected(&self, context: &str) -> UriError {
        match self.peek() {
            None => self.error(self.pos, format!("unexpected end of input {context}")),
            Some(c) => self.error(
                self.pos,
                format!("unexpected character {} {context}", describe(c)),
            ),
        }
    }

    /// Rejects control characters anywhere except the whitespace tolerated between tokens.
    fn check_controls(&self) -> PResult<()> {
        for (i, c) in self.input.char_indices() {
            if c.is_control() && !is_ws(c) {
                return Err(self.error(i, format!("control character {} not allowed", describe(c))));
            }
        }
        Ok(())
    }

    /// `list := item *( "," item )`; empty or blank text is the empty list.
    pub(crate) fn list(&mut self) -> PResult<Vec<Uri>> {
        self.check_controls()?;
        self.skip_ws();
        let mut out = Vec::new();
        if self.at_end() {
            return Ok(out);
        }
        loop {
            let uri = self.item()?;
            let more = self.item_end(&uri)?;
            out.push(uri);
            if !more {
                return Ok(out);
            }
        }
    }

    /// Exactly one item, surrounded by optional whitespace.
    pub(crate) fn single(&mut self) -> PResult<Uri> {
        self.check_controls()?;
        self.skip_ws();
        if self.at_end() {
            return Err(self.error(self.pos, "empty URI"));
        }
        let uri = self.item()?;
        self.skip_ws();
        if self.peek() == Some(',') {
            return Err(self.error(self.pos, "expected a single URI, found a list (',')"));
        }
        self.item_end(&uri)?;
        Ok(uri)
    }

    /// After an item: `Ok(true)` if a `,` followed (consumed, and another item must come),
    /// `Ok(false)` at the end of the input, an error for anything else.
    fn item_end(&mut self, uri: &Uri) -> PResult<bool> {
        self.skip_ws();
        match self.peek() {
            None => Ok(false),
            Some(',') => {
                self.bump();
                self.skip_ws();
                if self.at_end() {
                    return Err(self.error(self.pos, "empty list item after ','"));
                }
                Ok(true)
            }
            Some(_) => Err(self.unexpected_after_uri(uri, "after the URI")),
        }
    }

    /// Parses one list item (bare or bracketed URI, with its ext params/headers).
    fn item(&mut self) -> PResult<Uri> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => return Err(self.error(self.pos, "empty URI")),
            Some(',') => return Err(self.error(self.pos, "empty list item")),
            Some('*') if self.is_star_item() => return self.star_item(),
            Some('<') => return self.bracketed(None),
            _ => {}
        }
        if self.classify_display()? {
            let display = self.display()?;
            self.bracketed(Some(display))
        } else {
            self.pos = start;
            let mut uri = Uri::default();
            self.uri_body(&mut uri, Target::Ext)?;
            if self.peek() == Some('>') {
                return Err(self.error(self.pos, "unexpected '>' without a matching '<'"));
            }
            Ok(uri)
        }
    }

    /// `*` alone (optionally followed by ext params/headers) is a URI with host `*`.
    fn is_star_item(&self) -> bool {
        let after = self.rest().get(1..).unwrap_or("");
        let after = after.trim_start_matches(is_ws);
        matches!(after.chars().next(), None | Some(',' | ';' | '?'))
    }

    fn star_item(&mut self) -> PResult<Uri> {
        self.bump();
        let mut uri = Uri {
            host: "*".to_owned(),
            ..Uri::default()
        };
        self.params(&mut uri, Target::Ext)?;
        self.headers(&mut uri, Target::Ext)?;
        Ok(uri)
    }

    /// Looks ahead (without moving) to decide whether the item starts with a display name
    /// (an unquoted `<` comes before any unquoted `:`) or is a bare URI.
    fn classify_display(&self) -> PResult<bool> {
        const MISSING: &str = "missing ':' after the scheme (or '<' after a display name)";
        const NO_LT: &str = "expected '<' after the quoted display name";
        let mut quote_start: Option<usize> = None;
        let mut saw_quote = false;
        let mut escaped = false;
        for (i, c) in self.rest().char_indices() {
            let at = self.pos + i;
            if quote_start.is_some() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    quote_start = None;
                }
                continue;
            }
            match c {
                '"' => {
                    quote_start = Some(at);
                    saw_quote = true;
                }
                '<' => return Ok(true),
                ':' | ',' if saw_quote => return Err(self.error(at, NO_LT)),
                ':' => return Ok(false),
                ',' => return Err(self.error(at, MISSING)),
                _ => {}
            }
        }
        match quote_start {
            Some(q) => Err(self.error(q, "unbalanced '\"': missing closing quote")),
            None if saw_quote => Err(self.error(self.input.len(), NO_LT)),
            None => Err(self.error(self.input.len(), MISSING)),
        }
    }

    /// Reads a display name up to (not including) the unquoted `<`. Quotes are removed, `\x`
    /// inside quotes becomes `x`, unquoted whitespace runs become one space, and unquoted
    /// leading/trailing whitespace is dropped.
    fn display(&mut self) -> PResult<String> {
        let mut out = String::new();
        let mut pending_space = false;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.unexpected("in display name"));
            };
            match c {
                '<' => return Ok(out),
                '"' => {
                    if pending_space {
                        out.push(' ');
                        pending_space = false;
                    }
                    let s = self.quoted()?;
                    out.push_str(&s);
                }
                c if is_ws(c) => {
                    self.bump();
                    if !out.is_empty() {
                        pending_space = true;
                    }
                }
                '>' => return Err(self.error(self.pos, "unexpected '>' in display name")),
                c => {
                    if pending_space {
                        out.push(' ');
                        pending_space = false;
                    }
                    out.push(c);
                    self.bump();
                }
            }
        }
    }

    /// Reads a double-quoted string at the cursor; returns its content without quotes and
    /// with `\x` escapes resolved.
    fn quoted(&mut self) -> PResult<String> {
        let start = self.pos;
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error(start, "unbalanced '\"': missing closing quote")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    None => {
                        return Err(self.error(start, "unbalanced '\"': missing closing quote"));
                    }
                    Some(c) => {
                        self.check_in_quotes(c)?;
                        out.push(c);
                    }
                },
                Some(c) => {
                    self.check_in_quotes(c)?;
                    out.push(c);
                }
            }
        }
    }

    fn check_in_quotes(&self, c: char) -> PResult<()> {
        if matches!(c, '\r' | '\n') {
            let at = self.pos.saturating_sub(1);
            return Err(self.error(at, "line break inside a quoted string"));
        }
        Ok(())
    }

    /// `<` uri `>` followed by ext params/headers; the cursor is on `<`.
    fn bracketed(&mut self, display: Option<String>) -> PResult<Uri> {
        let open = self.pos;
        self.bump();
        let mut uri = Uri {
            display,
            bracketed: true,
            ..Uri::default()
        };
        self.uri_body(&mut uri, Target::Inner)?;
        self.skip_ws();
        match self.peek() {
            Some('>') => {
                self.bump();
            }
            None => return Err(self.error(open, "unbalanced '<': missing '>'")),
            Some(_) => return Err(self.unexpected_after_uri(&uri, "inside '<...>'")),
        }
        self.params(&mut uri, Target::Ext)?;
        self.headers(&mut uri, Target::Ext)?;
        Ok(uri)
    }

    /// Error for trailing garbage after the URI parts, with a hint when params follow headers.
    fn unexpected_after_uri(&self, uri: &Uri, context: &str) -> UriError {
        let has_headers = !uri.headers.is_empty() || !uri.ext_headers.is_empty();
        if self.peek() == Some(';') && has_headers {
            return self.error(
                self.pos,
                "unexpected ';': parameters must come before headers",
            );
        }
        self.unexpected(context)
    }

    /// scheme ":" ["//"] [userinfo "@"] host [":" port] [path] params [headers]
    fn uri_body(&mut self, uri: &mut Uri, target: Target) -> PResult<()> {
        self.skip_ws();
        self.scheme(uri)?;
        self.skip_ws();
        if self.rest().starts_with("//") {
            self.pos += 2;
            self.skip_ws();
        }
        if self.has_userinfo() {
            self.userinfo(uri)?;
        }
        self.host(uri)?;
        let mut path_follows = self.peek() == Some('/');
        if !path_follows {
            self.skip_ws();
            if self.peek() == Some(':') {
                self.bump();
                self.skip_ws();
                uri.port = self.port()?;
                path_follows = self.peek() == Some('/');
            }
        }
        if path_follows {
            uri.path = Some(self.path());
        } else {
            self.skip_ws();
            if self.peek() == Some('/') {
                return Err(self.error(
                    self.pos,
                    "unexpected '/': a path must follow the host or port without whitespace",
                ));
            }
        }
        self.params(uri, target)?;
        self.headers(uri, target)?;
        Ok(())
    }

    fn scheme(&mut self, uri: &mut Uri) -> PResult<()> {
        let start = self.pos;
        let first = match self.peek() {
            Some(':') => return Err(self.error(start, "empty scheme")),
            None => return Err(self.error(start, "missing scheme")),
            Some(c) => c,
        };
        if !first.is_ascii_alphabetic() {
            return Err(self.error(
                start,
                format!("scheme must start with a letter, found {}", describe(first)),
            ));
        }
        let scheme = self.take_while(is_scheme_char);
        self.skip_ws();
        if self.peek() != Some(':') {
            return Err(self.unexpected("in scheme (expected ':')"));
        }
        self.bump();
        uri.scheme = scheme.to_ascii_lowercase();
        Ok(())
    }

    /// Looks ahead for an `@` before anything that ends the authority part.
    fn has_userinfo(&self) -> bool {
        for c in self.rest().chars() {
            match c {
                '@' => return true,
                ';' | '?' | '<' | '>' | ',' | '/' | '"' | '[' => return false,
                _ => {}
            }
        }
        false
    }

    fn userinfo(&mut self, uri: &mut Uri) -> PResult<()> {
        let start = self.pos;
        let user = self.take_while(is_user_char);
        if user.is_empty() {
            return match self.peek() {
                Some('@' | ':') => Err(self.error(start, "empty user name before '@'")),
                _ => Err(self.unexpected("in user name")),
            };
        }
        uri.user = Some(user.to_owned());
        self.skip_ws();
        if self.peek() == Some(':') {
            self.bump();
            self.skip_ws();
            let password = self.take_while(is_password_char);
            uri.password = Some(password.to_owned());
            self.skip_ws();
        }
        if self.peek() != Some('@') {
            return Err(self.unexpected("in user info (expected '@')"));
        }
        self.bump();
        self.skip_ws();
        Ok(())
    }

    fn host(&mut self, uri: &mut Uri) -> PResult<()> {
        let start = self.pos;
        match self.peek() {
            None => return Err(self.error(start, "empty host")),
            Some('[') => {
                self.bump();
                let inner = self.take_while(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
                match self.peek() {
                    Some(']') => {
                        self.bump();
                    }
                    None => return Err(self.error(start, "unbalanced '[': missing ']'")),
                    Some(_) => return Err(self.unexpected("in IPv6 address")),
                }
                if inner.parse::<Ipv6Addr>().is_err() {
                    return Err(self.error(start + 1, format!("invalid IPv6 address {inner:?}")));
                }
                uri.host = format!("[{inner}]");
            }
            Some('*') => {
                self.bump();
                uri.host = "*".to_owned();
            }
            Some(c) if is_host_char(c) => {
                let name = self.take_while(is_host_char);
                validate_host_name(name)
                    .map_err(|(off, reason)| self.error(start + off, reason))?;
                uri.host = name.to_owned();
            }
            Some(c) if is_ws(c) || matches!(c, ';' | '?' | '>' | ',' | '/' | ':') => {
                return Err(self.error(start, "empty host"));
            }
            Some(_) => return Err(self.unexpected("in host")),
        }
        Ok(())
    }

    fn port(&mut self) -> PResult<u16> {
        let start = self.pos;
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            return Err(match self.peek() {
                None => self.error(start, "missing port number after ':'"),
                Some(c) => self.error(
                    start,
                    format!("invalid port: expected digits, found {}", describe(c)),
                ),
            });
        }
        let mut value: u32 = 0;
        for d in digits.bytes() {
            value = value * 10 + u32::from(d - b'0');
            if value > u32::from(u16::MAX) {
                return Err(self.error(start, format!("port {digits} out of range (0-65535)")));
            }
        }
        u16::try_from(value)
            .map_err(|_| self.error(start, format!("port {digits} out of range (0-65535)")))
    }

    /// The path from `/` (at the cursor) to the next delimiter; one trailing `/` is removed
    /// unless the path is exactly `/`.
    fn path(&mut self) -> String {
        let start = self.pos;
        self.bump(); // the leading '/'
        self.take_while(is_path_char);
        let raw = self.input.get(start..self.pos).unwrap_or("/");
        if raw.len() > 1 {
            raw.strip_suffix('/').unwrap_or(raw).to_owned()
        } else {
            raw.to_owned()
        }
    }

    /// `*( ";" key [ "=" value ] )`
    fn params(&mut self, uri: &mut Uri, target: Target) -> PResult<()> {
        loop {
            self.skip_ws();
            if self.peek() != Some(';') {
                return Ok(());
            }
            self.bump();
            self.skip_ws();
            let key = self.key("parameter")?;
            self.skip_ws();
            let value = if self.peek() == Some('=') {
                self.bump();
                self.skip_ws();
                Some(self.value(ValueKind::Param, &key)?)
            } else {
                None
            };
            let list = match target {
                Target::Inner => &mut uri.params,
                Target::Ext => &mut uri.ext_params,
            };
            list.push((key, value));
        }
    }

    /// `[ "?" key [ "=" value ] *( "&" key [ "=" value ] ) ]`
    fn headers(&mut self, uri: &mut Uri, target: Target) -> PResult<()> {
        self.skip_ws();
        if self.peek() != Some('?') {
            return Ok(());
        }
        self.bump();
        loop {
            self.skip_ws();
            let key = self.key("header")?;
            self.skip_ws();
            let value = if self.peek() == Some('=') {
                self.bump();
                self.skip_ws();
                Some(self.value(ValueKind::Header, &key)?)
            } else {
                None
            };
            let list = match target {
                Target::Inner => &mut uri.headers,
                Target::Ext => &mut uri.ext_headers,
            };
            list.push((key, value));
            self.skip_ws();
            if self.peek() != Some('&') {
                return Ok(());
            }
            self.bump();
        }
    }

    fn key(&mut self, what: &str) -> PResult<String> {
        let key = self.take_while(is_token_char);
        if key.is_empty() {
            return Err(match self.peek() {
                None => self.error(self.pos, format!("empty {what} name")),
                Some(c) if is_ws(c) || matches!(c, ';' | '?' | '&' | '=' | '>' | ',') => {
                    self.error(self.pos, format!("empty {what} name"))
                }
                Some(_) => self.unexpected(&format!("in {what} name")),
            });
        }
        Ok(key.to_ascii_lowercase())
    }

    /// A value: unquoted characters and quoted segments (quotes removed), up to whitespace or
    /// a delimiter of its kind (`; ? > ,` for params, `& > ,` for headers).
    fn value(&mut self, kind: ValueKind, key: &str) -> PResult<String> {
        let start = self.pos;
        let mut out = String::new();
        let mut any = false;
        while let Some(c) = self.peek() {
            let ends = match kind {
                ValueKind::Param => matches!(c, ';' | '?' | '>' | ','),
                ValueKind::Header => matches!(c, '&' | '>' | ','),
            };
            if ends || is_ws(c) {
                break;
            }
            match c {
                '"' => {
                    let s = self.quoted()?;
                    out.push_str(&s);
                }
                '<' => {
                    return Err(
                        self.error(self.pos, format!("unexpected '<' in the value of {key:?}"))
                    );
                }
                c => {
                    out.push(c);
                    self.bump();
                }
            }
            any = true;
        }
        if !any {
            return Err(self.error(start, format!("missing value after '=' for {key:?}")));
        }
        Ok(out)
    }
}

/// Checks a host name or IPv4 literal; on error returns (byte offset in `name`, reason).
fn validate_host_name(name: &str) -> Result<(), (usize, String)> {
    if name.contains('.') && name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        if name.parse::<Ipv4Addr>().is_err() {
            return Err((0, format!("invalid IPv4 address {name:?}")));
        }
        return Ok(());
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut offset = 0;
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err((offset, format!("empty label in host name {name:?}")));
        }
        offset += label.len() + 1;
    }
    Ok(())
}
