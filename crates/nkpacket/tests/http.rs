//! §13 http_test items (70–75) through the facade: HTTP listeners sharing a port, routed by
//! path and host, 404 with the server header, HTTPS; and the HTTP client link.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use nkpacket::echo::{Echo, EchoClient};
use nkpacket::{ConnInfo, EncodeError, Frame, Nkpacket, Options, Parse, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every request with "Hello World!" and the listener's domain.
struct Hello;
impl Protocol for Hello {
    type Message = Bytes;
    type State = ();
    fn parse(&self, _f: Frame, c: &ConnInfo, _s: &mut ()) -> Parse<Bytes> {
        Parse::Reply(Bytes::from(format!("Hello World! ({})", c.domain())))
    }
    fn encode(&self, m: Bytes, _c: &ConnInfo, _s: &mut ()) -> Result<Frame, EncodeError> {
        Ok(Frame::Binary(m))
    }
}

/// A minimal HTTP/1.1 GET: (status, headers lower-cased, body).
async fn get(port: u16, path: &str, host: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn has_server_header(h: &[(String, String)]) -> bool {
    h.iter().any(|(k, v)| k == "server" && v == "NkPACKET")
}

/// Items 70–74.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listeners_share_a_port() {
    let nk = Nkpacket::builder().protocol("hello", Hello).build();
    let o = |d: &str| Options::default().with_domain(d);
    let l1 = nk
        .start_listener("<hello://all:0/test1;transport=http>", o("dom1"))
        .await
        .unwrap();
    let p = l1.info().port();
    let l2 = nk
        .start_listener(
            format!("<hello://all:{p}/test2/;transport=http>"),
            o("dom2"),
        )
        .await
        .unwrap();
    let mut o3 = o("dom3");
    o3.host = Some("localhost".into());
    o3.path = Some("/test3/a".into());
    let l3 = nk
        .start_listener(format!("<hello://0.0.0.0:{p};transport=http>"), o3)
        .await
        .unwrap();
    // 70
    assert_eq!(l2.info().options().path.as_deref(), Some("/test2"));
    assert_eq!(l3.info().local(), l1.info().local());
    assert_eq!(
        l1.info().external_url(),
        Some(format!("http://127.0.0.1:{p}/test1").as_str())
    );
    // 71
    let (st, h, body) = get(p, "/", "127.0.0.1").await;
    assert_eq!((st, body.as_str()), (404, ""));
    assert!(has_server_header(&h), "{h:?}");
    // 72
    let (st, h, body) = get(p, "/test1", "127.0.0.1").await;
    assert_eq!((st, body.as_str()), (200, "Hello World! (dom1)"));
    assert!(has_server_header(&h));
    let (st, _, body) = get(p, "/test2", "127.0.0.1").await;
    assert_eq!((st, body.as_str()), (200, "Hello World! (dom2)"));
    // 73
    assert_eq!(get(p, "/test3", "127.0.0.1").await.0, 404);
    assert_eq!(get(p, "/test3/a/1", "127.0.0.1").await.0, 404);
    assert_eq!(get(p, "/test3", "localhost").await.0, 404);
    let (st, _, body) = get(p, "/test3/a/1", "localhost").await;
    assert_eq!((st, body.as_str()), (200, "Hello World! (dom3)"));
    // 74
    l3.stop().await;
    let (st, h, _) = get(p, "/test3/a/1", "localhost").await;
    assert_eq!(st, 404);
    assert!(has_server_header(&h));
    l1.stop().await;
    l2.stop().await;
    nk.shutdown().await;
}

/// Item 75 over HTTPS, and the HTTP client link: each message is POSTed, the response body
/// comes back as a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_the_http_client() {
    let dir = std::env::temp_dir().join(format!("nkp-http-{}", std::process::id()));
    let (cert, key) =
        nkpacket::tls::write_self_signed(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
    let nk = Nkpacket::builder().protocol("echo", Echo).build();
    let mut lo = Options::default();
    lo.tls_certfile = Some(cert.display().to_string());
    lo.tls_keyfile = Some(key.display().to_string());
    let l = nk
        .start_listener("<echo://127.0.0.1:0/test1;transport=https>", lo)
        .await
        .unwrap();
    let (client, mut replies) = EchoClient::new();
    let cn = Nkpacket::builder().protocol("echo", client).build();
    let uri = format!(
        "echo://localhost:{}/test1;transport=https;tls_cacertfile={}",
        l.info().port(),
        cert.display()
    );
    let c = cn
        .send(
            uri.as_str(),
            Frame::binary(&b"posted body"[..]),
            Options::default(),
        )
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), replies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload(), b"posted body");
    // the same connection, again (keep-alive); http connections are never reused by send,
    // but a handle can be sent on
    c.send(Frame::binary(&b"second"[..])).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), replies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload(), b"second");
    // a path nobody serves: the response is a 404 with an empty body
    let other = format!(
        "echo://localhost:{}/nothing;transport=https;tls_cacertfile={}",
        l.info().port(),
        cert.display()
    );
    cn.send(other.as_str(), Frame::binary(&b"x"[..]), Options::default())
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), replies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload(), b"");
    // with an HttpRequest frame the whole response comes back: the 404, its server header
    cn.send(
        other.as_str(),
        nkpacket::http::HttpRequest::get("").into_frame(),
        Options::default(),
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), replies.recv())
        .await
        .unwrap()
        .unwrap();
    let resp = nkpacket::http::HttpResponse::from_frame(&got)
        .expect("a whole response")
        .unwrap();
    assert_eq!(resp.status, 404);
    assert!(
        resp.headers
            .contains(&("server".to_string(), "NkPACKET".to_string())),
        "{:?}",
        resp.headers
    );
    cn.shutdown().await;
    nk.shutdown().await;
}

/// Items 76–80: static files and the index redirect, on one port with other paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_and_redirects() {
    use nkpacket::http::StaticFiles;
    let www = std::env::temp_dir().join(format!("nkp-www-{}", std::process::id()));
    std::fs::create_dir_all(www.join("dir1")).unwrap();
    let index = format!("<!DOCTYPE html>{}", "x".repeat(211 - 15));
    assert_eq!(index.len(), 211);
    std::fs::write(www.join("index.html"), &index).unwrap();
    std::fs::write(www.join("dir1/file1.txt"), "file1.txt").unwrap();

    let nk = Nkpacket::default();
    let root = nk
        .serve_http(
            "http://all:0/",
            &Options::default(),
            StaticFiles::new(&www).with_index_redirect("/index.html"),
        )
        .await
        .unwrap();
    let p = root.local_addr().port();
    let deep = nk
        .serve_http(
            format!("http://all:{p}/1/2/"),
            &Options::default(),
            StaticFiles::new(&www),
        )
        .await
        .unwrap();
    // 76
    let (st, h, _) = get(p, "/", "127.0.0.1").await;
    assert_eq!(st, 301);
    let location = h
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        location,
        Some(format!("http://127.0.0.1:{p}/index.html").as_str())
    );
    // 77
    let (st, h, body) = get(p, "/index.html", "127.0.0.1").await;
    assert_eq!(st, 200);
    assert!(body.starts_with("<!DOC"));
    let header = |name: &str| h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(header("content-length").as_deref(), Some("211"));
    assert_eq!(header("content-type").as_deref(), Some("text/html"));
    assert!(header("date").is_some() && header("etag").is_some());
    assert!(header("last-modified").is_some());
    assert!(has_server_header(&h));
    // 78
    for (path, want) in [
        ("/1/2/", 403),
        ("/1/2/index.html", 200),
        ("/1/2/index.htm", 404),
        ("/dir1/file1.txt", 200),
        ("/dir1/././file1.txt", 200),
        ("/dir1/../../file1.txt", 400),
        ("/dir1/../dir1/file1.txt", 200),
        ("/1/2/dir1/file1.txt", 200),
    ] {
        assert_eq!(get(p, path, "127.0.0.1").await.0, want, "{path}");
    }
    let (_, h, body) = get(p, "/dir1/file1.txt", "127.0.0.1").await;
    assert_eq!(body, "file1.txt");
    assert!(h.contains(&("content-type".into(), "application/octet-stream".into())));
    assert!(h.contains(&("content-length".into(), "9".into())));
    // 79
    drop(root);
    assert_eq!(get(p, "/dir1/file1.txt", "127.0.0.1").await.0, 404);
    assert_eq!(get(p, "/1/2/dir1/file1.txt", "127.0.0.1").await.0, 200);
    // 80: options override the URL's path and give a Host filter
    let mut o = Options::default();
    o.path = Some("/a/".into());
    o.host = Some("localhost".into());
    let _a = nk
        .serve_http(format!("http://all:{p}/1/2/"), &o, StaticFiles::new(&www))
        .await
        .unwrap();
    assert_eq!(get(p, "/a/index.html", "127.0.0.1").await.0, 404);
    assert_eq!(get(p, "/a/index.html", "localhost").await.0, 200);
    assert_eq!(get(p, "/c/index.html", "localhost").await.0, 404);
    drop(deep);
    nk.shutdown().await;
}
