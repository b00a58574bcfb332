//! Static files and redirects (§9.6: the original's `cowboy_static` and `{redirect, Path}`
//! answers), as a tower service to mount with
//! [`HttpServers::attach_service`](crate::HttpServers::attach_service).
//!
//! [`resolve`] and [`join_path`] are pure: the request's sub-path is cut into segments,
//! `.` dropped, `..` taken back (going above the root is a 400), and the file looked up
//! under the root; a directory is a 403, a missing file a 404.
//!
//! ```
//! use nkp_http::files::{join_path, resolve, Resolved};
//! use std::path::Path;
//! assert_eq!(join_path("http://h:1/", "/index.html"), "http://h:1/index.html");
//! assert_eq!(resolve(Path::new("/srv"), "/a/./b/../c.txt"), Resolved::Path("/srv/a/c.txt".into()));
//! assert_eq!(resolve(Path::new("/srv"), "/../etc/passwd"), Resolved::OutsideRoot);
//! ```

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::Body;
use crate::server::{RouteContext, status_response};

/// Joins a base URL and a path as the original's `join_path` (§13 item 102): one trailing
/// `/` dropped from the base (unless it is `/`), one leading `/` from the path, and a `/`
/// between them.
pub fn join_path(base: &str, path: &str) -> String {
    let base = if base.len() > 1 {
        base.strip_suffix('/').unwrap_or(base)
    } else {
        base
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    match (base, path) {
        ("" | "/", p) => format!("/{p}"),
        (b, p) => format!("{b}/{p}"),
    }
}

/// Where a request's sub-path leads under a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// This file system path (it may not exist).
    Path(PathBuf),
    /// `..` went above the root.
    OutsideRoot,
    /// A segment that cannot name a file (a NUL byte, a backslash).
    BadSegment,
}

/// Resolves a sub-path under `root`, without touching the file system.
pub fn resolve(root: &Path, sub_path: &str) -> Resolved {
    let mut parts: Vec<&str> = Vec::new();
    for seg in sub_path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Resolved::OutsideRoot;
                }
            }
            s if s.contains('\0') || s.contains('\\') => return Resolved::BadSegment,
            s => parts.push(s),
        }
    }
    let mut p = root.to_path_buf();
    p.extend(parts);
    Resolved::Path(p)
}

/// The content type of a file name (the original's "web" table; anything else is
/// `application/octet-stream`).
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("js") => "application/javascript",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("xml") => "application/xml",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Serves files under a root; optionally redirects the listener's own path (an empty
/// sub-path) to a page, as the original's test listener did with `/index.html`.
///
/// Responses carry `content-type`, `content-length`, `etag` (from the size and
/// modification time), `last-modified` and `accept-ranges: bytes`; single byte ranges get a
/// `206`. `GET` and `HEAD` only (others: 405).
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: Arc<PathBuf>,
    index_redirect: Option<Arc<str>>,
}

impl StaticFiles {
    /// Files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StaticFiles {
            root: Arc::new(root.into()),
            index_redirect: None,
        }
    }

    /// A request for the listener's path itself is redirected (301) to `page`.
    pub fn with_index_redirect(mut self, page: &str) -> Self {
        self.index_redirect = Some(page.into());
        self
    }

    /// Answers one request.
    pub async fn serve(&self, req: Request<Body>) -> Response<Body> {
        let ctx = req.extensions().get::<RouteContext>().cloned();
        let sub_path = match &ctx {
            Some(c) => c.sub_path.clone(),
            None => req.uri().path().to_string(),
        };
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return status_response(StatusCode::METHOD_NOT_ALLOWED);
        }
        if let Some(page) = &self.index_redirect
            && sub_path.trim_matches('/').is_empty()
        {
            let scheme = if ctx.as_ref().is_some_and(|c| c.secure) {
                "https"
            } else {
                "http"
            };
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let base = format!("{scheme}://{host}{}", req.uri().path());
            let mut r = status_response(StatusCode::MOVED_PERMANENTLY);
            if let Ok(v) = HeaderValue::from_str(&join_path(&base, page)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        let path = match resolve(&self.root, &sub_path) {
            Resolved::Path(p) => p,
            Resolved::OutsideRoot | Resolved::BadSegment => {
                return status_response(StatusCode::BAD_REQUEST);
            }
        };
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(_) => return status_response(StatusCode::NOT_FOUND),
        };
        if meta.is_dir() {
            return status_response(StatusCode::FORBIDDEN);
        }
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let mtime = modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let etag = format!("\"{:x}-{:x}\"", meta.len(), mtime);
        if req
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
        {
            return status_response(StatusCode::NOT_MODIFIED);
        }
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(_) => return status_response(StatusCode::NOT_FOUND),
        };
        let total = data.len();
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| byte_range(v, total));
        let (status, body) = match range {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, data[a..=b].to_vec()),
            None => (StatusCode::OK, data),
        };
        let len = body.len();
        let mut r = if *req.method() == Method::HEAD {
            Response::new(Body::empty())
        } else {
            Response::new(Body::from(body))
        };
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&path)),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            h.insert(header::LAST_MODIFIED, v);
        }
        if let Some((a, b)) = range
            && let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{total}"))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        r
    }
}

/// A single `bytes=a-b` / `bytes=a-` / `bytes=-n` range within `total` bytes.
fn byte_range(value: &str, total: usize) -> Option<(usize, usize)> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') || total == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().ok()?;
            (total.saturating_sub(n), total - 1)
        }
        (a, "") => (a.parse().ok()?, total - 1),
        (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then_some((start, end))
}

impl tower::Service<Request<Body>> for StaticFiles {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.serve(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_path_table_of_the_original() {
        for (a, b, want) in [
            ("", "", "/"),
            ("/", "", "/"),
            ("", "/", "/"),
            ("/", "/", "/"),
            ("a", "", "a/"),
            ("a/", "", "a/"),
            ("a", "/", "a/"),
            ("a/", "/", "a/"),
            ("a", "b", "a/b"),
            ("a", "/b", "a/b"),
            ("", "b", "/b"),
            ("", "/b", "/b"),
        ] {
            assert_eq!(join_path(a, b), want, "({a:?}, {b:?})");
        }
        assert_eq!(
            join_path("http://127.0.0.1:8123/", "/index.html"),
            "http://127.0.0.1:8123/index.html"
        );
    }

    #[test]
    fn resolution() {
        let root = Path::new("/r");
        assert_eq!(
            resolve(root, "/dir1/././file1.txt"),
            Resolved::Path("/r/dir1/file1.txt".into())
        );
        assert_eq!(
            resolve(root, "/dir1/../dir1/f"),
            Resolved::Path("/r/dir1/f".into())
        );
        assert_eq!(
            resolve(root, "/dir1/../../file1.txt"),
            Resolved::OutsideRoot
        );
        assert_eq!(resolve(root, "/a\\b"), Resolved::BadSegment);
        assert_eq!(resolve(root, "/"), Resolved::Path("/r".into()));
    }

    #[test]
    fn ranges_and_types() {
        assert_eq!(byte_range("bytes=0-3", 10), Some((0, 3)));
        assert_eq!(byte_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(byte_range("bytes=-2", 10), Some((8, 9)));
        assert_eq!(byte_range("bytes=8-100", 10), Some((8, 9)));
        assert_eq!(byte_range("bytes=10-", 10), None);
        assert_eq!(byte_range("bytes=0-1,3-4", 10), None);
        assert_eq!(content_type(Path::new("a/index.HTML")), "text/html");
        assert_eq!(
            content_type(Path::new("file1.txt")),
            "application/octet-stream"
        );
    }
}
