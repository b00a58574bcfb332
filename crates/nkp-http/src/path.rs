//! Paths, hosts and sub-protocol lists as the shared server compares them (spec §9.2–§9.3).

/// Normalises a listener path: a leading `/` is added, one trailing `/` is stripped, and an
/// absent, empty or `/` path becomes `/` (which matches every request).
///
/// ```
/// use nkp_http::normalize_path;
/// assert_eq!(normalize_path(Some("dom3")), "/dom3");
/// assert_eq!(normalize_path(Some("/test2/")), "/test2");
/// assert_eq!(normalize_path(Some("/")), "/");
/// assert_eq!(normalize_path(Some("")), "/");
/// assert_eq!(normalize_path(None), "/");
/// ```
pub fn normalize_path(path: Option<&str>) -> String {
    let p = path.unwrap_or("").trim();
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() {
        return "/".to_string();
    }
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// The segments of a path: split on `/`, the leading empty segment removed, a trailing empty
/// segment kept (`/a/` → `["a", ""]`); `/` and the empty path have no segments.
///
/// ```
/// use nkp_http::path_segments;
/// assert_eq!(path_segments("/a/b"), vec!["a", "b"]);
/// assert_eq!(path_segments("/a/"), vec!["a", ""]);
/// assert!(path_segments("/").is_empty());
/// assert!(path_segments("").is_empty());
/// ```
pub fn path_segments(path: &str) -> Vec<String> {
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        return Vec::new();
    }
    p.split('/').map(str::to_string).collect()
}

/// The part of `request_path` below the listener path `filter_path` (both as given to the
/// server), always starting with `/`; `None` when the request is not under the filter path.
///
/// This is what the original handed to `http_init` as the sub-path.
///
/// ```
/// use nkp_http::sub_path;
/// assert_eq!(sub_path("/test3/a", "/test3/a/1").as_deref(), Some("/1"));
/// assert_eq!(sub_path("/", "/x/y").as_deref(), Some("/x/y"));
/// assert_eq!(sub_path("/a", "/a").as_deref(), Some("/"));
/// assert_eq!(sub_path("/a", "/ab"), None);
/// ```
pub fn sub_path(filter_path: &str, request_path: &str) -> Option<String> {
    let f = path_segments(&normalize_path(Some(filter_path)));
    let r = path_segments(request_path);
    if !is_prefix(&f, &r) {
        return None;
    }
    Some(format!("/{}", r[f.len()..].join("/")))
}

/// True when `prefix` is an element-wise prefix of `segs`.
pub(crate) fn is_prefix(prefix: &[String], segs: &[String]) -> bool {
    prefix.len() <= segs.len() && prefix.iter().zip(segs).all(|(a, b)| a == b)
}

/// The host part of a `Host` header value (or URI authority), lower-cased, without port;
/// IPv6 literals lose their brackets.
///
/// ```
/// use nkp_http::host_without_port;
/// assert_eq!(host_without_port("LocalHost:8080"), "localhost");
/// assert_eq!(host_without_port("[::1]:80"), "::1");
/// assert_eq!(host_without_port("example.com"), "example.com");
/// ```
pub fn host_without_port(value: &str) -> String {
    let v = value.trim();
    let host = if let Some(rest) = v.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if v.matches(':').count() > 1 {
        // a bare IPv6 literal without port
        v
    } else {
        v.split(':').next().unwrap_or(v)
    };
    host.to_ascii_lowercase()
}

/// Normalises a host filter for comparison: lower-cased, without brackets or a trailing dot.
pub(crate) fn normalize_host(host: &str) -> String {
    host_without_port(host).trim_end_matches('.').to_string()
}

/// The comma-separated tokens of a header value list, trimmed and lower-cased.
pub(crate) fn tokens<'a>(values: impl Iterator<Item = &'a http::HeaderValue>) -> Vec<String> {
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rules() {
        let s = |p: &str| path_segments(p);
        assert!(is_prefix(&s("/"), &s("/anything")));
        assert!(is_prefix(&s("/a/b"), &s("/a/b/c")));
        assert!(!is_prefix(&s("/a/b"), &s("/a")));
        assert!(!is_prefix(&s("/dom1/more"), &s("/dom1")));
        assert_eq!(
            sub_path("/a/", "/a/index.html").as_deref(),
            Some("/index.html")
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(normalize_host("LOCALHOST."), "localhost");
        assert_eq!(normalize_host("[::1]"), "::1");
        assert_eq!(host_without_port("::1"), "::1");
    }
}
