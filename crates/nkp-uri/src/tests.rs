//! Unit tests: the examples of spec §2.2, §13 item 104 and the nklib test-suite it refers to,
//! error cases with their positions, and the Display → parse round trip.

use super::*;

fn one(text: &str) -> Uri {
    match parse(text) {
        Ok(uri) => uri,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn list(text: &str) -> Vec<Uri> {
    match parse_list(text) {
        Ok(uris) => uris,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

/// Asserts that `text` fails (as a list) at `position` with a reason containing `reason`.
fn fails(text: &str, position: usize, reason: &str) {
    match parse_list(text) {
        Ok(uris) => panic!("{text:?} should fail, parsed as {uris:?}"),
        Err(e) => {
            assert_eq!(e.input, text);
            assert!(
                e.reason.contains(reason),
                "{text:?}: reason {:?} should contain {reason:?}",
                e.reason
            );
            assert_eq!(
                e.position, position,
                "{text:?}: wrong position for {:?}",
                e.reason
            );
        }
    }
}

fn kv(k: &str, v: &str) -> Param {
    (k.to_owned(), Some(v.to_owned()))
}

fn flag(k: &str) -> Param {
    (k.to_owned(), None)
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Spec §13 item 104 and §2.2 examples

#[test]
fn item_104_path_trailing_slash() {
    assert_eq!(one("sip:a/ws/1/").path, s("/ws/1"));
    assert_eq!(one("sip:a/ws/1").path, s("/ws/1"));
    assert_eq!(one("http://h:1/").path, s("/"));
    assert_eq!(one("http://h:1").path, None);
}

#[test]
fn item_104_params_headers_split() {
    let uri = one("<sip:a;b;c=2?dd=2&ff>;g=3?h&i");
    assert_eq!(uri.params, vec![flag("b"), kv("c", "2")]);
    assert_eq!(uri.headers, vec![kv("dd", "2"), flag("ff")]);
    assert_eq!(uri.ext_params, vec![kv("g", "3")]);
    assert_eq!(uri.ext_headers, vec![flag("h"), flag("i")]);
    assert!(uri.bracketed);
    assert_eq!(uri.host, "a");
}

#[test]
fn item_104_ipv6_port_path() {
    let uri = one("sip:[1:2::3]:20/ws");
    assert_eq!(uri.host, "[1:2::3]");
    assert_eq!(uri.port, 20);
    assert_eq!(uri.path, s("/ws"));
    assert_eq!(uri.host_unbracketed(), "1:2::3");
    assert_eq!(uri.host_ip(), Some("1:2::3".parse().unwrap()));
}

#[test]
fn item_104_two_uris() {
    let uris = list("sip:a,sip:b");
    assert_eq!(uris.len(), 2);
    assert_eq!(uris[0].host, "a");
    assert_eq!(uris[1].host, "b");
}

#[test]
fn item_104_header_keys_lowercased() {
    let uri = one("<sip:a?routE=a>?route=b");
    assert_eq!(uri.headers, vec![kv("route", "a")]);
    assert_eq!(uri.ext_headers, vec![kv("route", "b")]);
    let bare = one("sip:a?routE=a");
    assert!(bare.headers.is_empty());
    assert_eq!(bare.ext_headers, vec![kv("route", "a")]);
}

#[test]
fn brief_examples() {
    let uri = one("sip://example.com;transport=tls");
    assert_eq!(
        (uri.scheme.as_str(), uri.host.as_str(), uri.port),
        ("sip", "example.com", 0)
    );
    assert_eq!(uri.ext_params, vec![kv("transport", "tls")]);
    assert!(uri.params.is_empty());
    assert_eq!(uri.any_param("transport"), Some(Some("tls")));

    let uri = one("<test://h:1;transport=ws>;idle_timeout=500");
    assert_eq!(uri.params, vec![kv("transport", "ws")]);
    assert_eq!(uri.ext_params, vec![kv("idle_timeout", "500")]);
    assert_eq!(uri.param("idle_timeout"), None);
    assert_eq!(uri.any_param("transport"), Some(Some("ws")));

    let uri = one("test:[::1]:5060");
    assert_eq!((uri.host.as_str(), uri.port), ("[::1]", 5060));
    assert_eq!(
        uri.host_ip(),
        Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
    );

    let uri = one(r#""Name" <sip:a@b:5060;lr>;tag=1?h=v"#);
    assert_eq!(uri.display, s("Name"));
    assert_eq!(uri.user, s("a"));
    assert_eq!((uri.host.as_str(), uri.port), ("b", 5060));
    assert_eq!(uri.params, vec![flag("lr")]);
    assert_eq!(uri.param("LR"), Some(None));
    assert_eq!(uri.ext_params, vec![kv("tag", "1")]);
    assert_eq!(uri.ext_headers, vec![kv("h", "v")]);

    let uri = one(" sip : host : 5061 ");
    assert_eq!(
        (uri.scheme.as_str(), uri.host.as_str(), uri.port),
        ("sip", "host", 5061)
    );

    let uri = one("test://host:5060");
    assert_eq!((uri.host.as_str(), uri.port), ("host", 5060));
}

#[test]
fn spec_section_13_uris() {
    let uri =
        one(r#"test://all:8080/any;transport=ws;host=localhost; path= "dom3"; ws_proto=proto1"#);
    assert_eq!(uri.path, s("/any"));
    assert_eq!(
        uri.ext_params,
        vec![
            kv("transport", "ws"),
            kv("host", "localhost"),
            kv("path", "dom3"),
            kv("ws_proto", "proto1")
        ]
    );
    let uri = one("send://127.0.0.1:5/a/b;transport=ws;connect_timeout=2000;idle_timeout=500");
    assert_eq!(uri.path, s("/a/b"));
    assert_eq!(uri.ext_param("connect_timeout"), Some(Some("2000")));
    let uri = one("<http://all:8080/test2/>");
    assert_eq!(uri.path, s("/test2"));
    let uri = one("<test://all;transport=udp>;class=dom1");
    assert_eq!(uri.ext_param("class"), Some(Some("dom1")));
    let uri = one("<https://[1::5]>;transport=https");
    assert_eq!(uri.host, "[1::5]");
    assert_eq!(uri.any_param("transport"), Some(Some("https")));
    let uri = one("<sip:1.2.3.4;transport=other>");
    assert_eq!(uri.host_ip(), Some(IpAddr::from([1, 2, 3, 4])));
}

#[test]
fn scheme_is_lowercased_and_flexible() {
    assert_eq!(one("SIPS:host").scheme, "sips");
    assert_eq!(one("coap+tcp:host").scheme, "coap+tcp");
    assert_eq!(one("x-y.z:host").scheme, "x-y.z");
}

#[test]
fn param_keys_lowercased_values_kept() {
    let uri = one("<sip:a;Transport=TCP>;MyKey=MyValue");
    assert_eq!(uri.params, vec![kv("transport", "TCP")]);
    assert_eq!(uri.ext_params, vec![kv("mykey", "MyValue")]);
    assert_eq!(uri.ext_param("MYKEY"), Some(Some("MyValue")));
}

// ---------------------------------------------------------------------------------------------
// The nklib test-suite (uri1..uri6), adapted where the spec says otherwise (values and display
// names unquoted, trailing whitespace not part of a path).

#[test]
fn nklib_uri1_errors() {
    fails(
        " one two sip  :  a  ",
        5,
        "unexpected character 't' in scheme",
    );
    fails("abc", 3, "missing ':'");
    fails(":a", 0, "empty scheme");
    fails("<  : a>", 3, "empty scheme");
    fails("sip: ", 5, "empty host");
    fails("<sip:a", 0, "unbalanced '<'");
    fails("<sip: a;", 8, "empty parameter name");
    fails("sip: a:a", 7, "invalid port");
    fails("<sip:u@a", 0, "unbalanced '<'");
}

#[test]
fn nklib_uri1_ok() {
    let uri = one("sip:a");
    assert_eq!(
        (uri.display.clone(), uri.scheme.as_str(), uri.host.as_str()),
        (None, "sip", "a")
    );
    assert!(!uri.bracketed);
    let uri = one("<sip:a>");
    assert_eq!(
        (uri.display.clone(), uri.host.as_str(), uri.bracketed),
        (None, "a", true)
    );
    assert_eq!(one(" \x09  sip  \r\n :  a  ").host, "a");
    assert_eq!(one("   <  sip  :  b  >  ").host, "b");
    let uri = one(" Mi \"disp<,:\" <sip:a>");
    assert_eq!(uri.display, s("Mi disp<,:"));
    assert_eq!(uri.host, "a");
    assert_eq!(
        (one("sip:a : 20").host, one("sip:a : 20").port),
        ("a".into(), 20)
    );
    assert_eq!(one("<sip:a:20>").port, 20);
    let uri = one("sip:u@a");
    assert_eq!((uri.user.clone(), uri.host.as_str()), (s("u"), "a"));
    let uri = one("<sip:u@a >");
    assert_eq!((uri.user.clone(), uri.host.as_str()), (s("u"), "a"));
    let uri = one("<sip:u@a:20>");
    assert_eq!(
        (uri.user.clone(), uri.host.as_str(), uri.port),
        (s("u"), "a", 20)
    );
    let uri = one("<sip:u:p@a:20>");
    assert_eq!(
        (uri.user.clone(), uri.password.clone(), uri.port),
        (s("u"), s("p"), 20)
    );
    let uri = one(" sip:u: p @ a");
    assert_eq!((uri.user.clone(), uri.password.clone()), (s("u"), s("p")));
    assert_eq!((uri.host.as_str(), uri.port), ("a", 0));
    let uri = one("sip: a;b");
    assert_eq!(
        (uri.host.as_str(), uri.port, uri.ext_params.clone()),
        ("a", 0, vec![flag("b")])
    );
    assert_eq!(
        one("sip: a  ;  b ; c =  2").ext_params,
        vec![flag("b"), kv("c", "2")]
    );
    let uri = one("<sip:u:p@a:20;b;c=2>");
    assert_eq!(uri.params, vec![flag("b"), kv("c", "2")]);
    assert!(uri.ext_params.is_empty());
    let uri = one("sip:u:p@a:20;b;c=2 ");
    assert_eq!(uri.ext_params, vec![flag("b"), kv("c", "2")]);
    assert!(uri.params.is_empty());
    assert_eq!(
        one("sip:a?d=2&f").ext_headers,
        vec![kv("d", "2"), flag("f")]
    );
    assert_eq!(
        one("<sip:a?dd=2&ff>").headers,
        vec![kv("dd", "2"), flag("ff")]
    );
}

#[test]
fn nklib_uri1_star() {
    let star = one("*");
    assert_eq!((star.scheme.as_str(), star.host.as_str()), ("", "*"));
    assert_eq!(one("  *  ").host, "*");
    assert_eq!(one("*;a").ext_params, vec![flag("a")]);
    let uris = list("*, sip:b");
    assert_eq!((uris[0].host.as_str(), uris[1].host.as_str()), ("*", "b"));
    assert_eq!(one("sip:*").host, "*");
}

#[test]
fn nklib_uri2_ipv6() {
    fails("sip : as[1::2]", 8, "unexpected character '['");
    fails("sip :[1::2", 5, "unbalanced '['");
    let uri = one("sip:[1:2::3]:20");
    assert_eq!((uri.host.as_str(), uri.port), ("[1:2::3]", 20));
    let uri = one("<sip:  [1:2::3]  : 20  >");
    assert_eq!((uri.host.as_str(), uri.port), ("[1:2::3]", 20));
    let uri = one("<sip:u@ [1:2::3]>");
    assert_eq!((uri.user.clone(), uri.host.as_str()), (s("u"), "[1:2::3]"));
    let uri = one("<sip:u : p @ [1:2::3]>");
    assert_eq!((uri.user.clone(), uri.password.clone()), (s("u"), s("p")));
    assert_eq!(uri.host, "[1:2::3]");
}

#[test]
fn nklib_uri3() {
    assert_eq!(one("sip:host").host, "host");
    let uri = one("  sips  :  host  :  5061  ");
    assert_eq!(
        (uri.scheme.as_str(), uri.host.as_str(), uri.port),
        ("sips", "host", 5061)
    );

    let uri = one(" \"My name\" <sip:user:pass@host:5061;transport=tcp?head1> ; op1=\"1\"");
    assert_eq!(uri.display, s("My name"));
    assert_eq!(
        (uri.user.clone(), uri.password.clone()),
        (s("user"), s("pass"))
    );
    assert_eq!((uri.host.as_str(), uri.port), ("host", 5061));
    assert_eq!(uri.params, vec![kv("transport", "tcp")]);
    assert_eq!(uri.headers, vec![flag("head1")]);
    assert_eq!(uri.ext_params, vec![kv("op1", "1")]);

    let uri = one(" Name   < sips : host:  5061 > ?hd2=2&hd3=a");
    assert_eq!(uri.display, s("Name"));
    assert_eq!((uri.host.as_str(), uri.port), ("host", 5061));
    assert_eq!(uri.ext_headers, vec![kv("hd2", "2"), kv("hd3", "a")]);

    let uri = one(" < sip : user@host ;lr; t=1 ;d ? a=1 >");
    assert_eq!((uri.user.clone(), uri.host.as_str()), (s("user"), "host"));
    assert_eq!(uri.params, vec![flag("lr"), kv("t", "1"), flag("d")]);
    assert_eq!(uri.headers, vec![kv("a", "1")]);

    let uri = one("\"A. G. Bell\" <sip:agb@bell-telephone.com> ;tag=a48s");
    assert_eq!(uri.display, s("A. G. Bell"));
    assert_eq!(uri.ext_params, vec![kv("tag", "a48s")]);

    let uri = one("sip:+12125551212@server.phone2net.com;tag=887s");
    assert_eq!(uri.user, s("+12125551212"));
    assert_eq!(uri.host, "server.phone2net.com");
    assert_eq!(uri.ext_params, vec![kv("tag", "887s")]);

    let uri = one(concat!(
        "<sip:xxxx@192.168.1.2:5060;transport=TCP;ob>;reg-id=1;",
        "+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000097ee887e>\""
    ));
    assert_eq!((uri.user.clone(), uri.password.clone()), (s("xxxx"), None));
    assert_eq!((uri.host.as_str(), uri.port), ("192.168.1.2", 5060));
    assert_eq!(uri.params, vec![kv("transport", "TCP"), flag("ob")]);
    assert!(uri.headers.is_empty());
    assert_eq!(
        uri.ext_params,
        vec![
            kv("reg-id", "1"),
            kv(
                "+sip.instance",
                "<urn:uuid:00000000-0000-0000-0000-000097ee887e>"
            )
        ]
    );

    let uri = one(r#"<sip:host;key="my \""?hd="your \"">"#);
    assert_eq!(uri.host, "host");
    assert_eq!(uri.params, vec![kv("key", "my \"")]);
    assert_eq!(uri.headers, vec![kv("hd", "your \"")]);
}

#[test]
fn nklib_uri4_lists() {
    let hosts = |text: &str| list(text).into_iter().map(|u| u.host).collect::<Vec<_>>();
    assert_eq!(hosts("sip:a,sip:b"), ["a", "b"]);
    assert_eq!(hosts("<sip:a>  ,  sip:b  "), ["a", "b"]);
    assert_eq!(hosts("<sip:a>,<sip:b@b>,<sip:c>"), ["a", "b", "c"]);
    let uris = list("sip:u1:p1@a?a1,<sip:u2:p2@b;b1>");
    assert_eq!(uris.len(), 2);
    assert_eq!(
        (uris[0].user.clone(), uris[0].password.clone()),
        (s("u1"), s("p1"))
    );
    assert_eq!(uris[0].host, "a");
    assert_eq!(uris[0].ext_headers, vec![flag("a1")]);
    assert_eq!(
        (uris[1].user.clone(), uris[1].password.clone()),
        (s("u2"), s("p2"))
    );
    assert_eq!(uris[1].host, "b");
    assert_eq!(uris[1].params, vec![flag("b1")]);
}

#[test]
fn nklib_uri6_paths() {
    let uri = one("sip:a/ws/1");
    assert_eq!(
        (uri.host.as_str(), uri.port, uri.path.clone()),
        ("a", 0, s("/ws/1"))
    );
    assert_eq!(one("sip:a/ws/1/").path, s("/ws/1"));
    assert_eq!(one("<sip:a/ws>").path, s("/ws"));
    fails(
        " \x09  sip  \r\n :  a /ws/1  ",
        17,
        "a path must follow the host or port",
    );
    let uri = one("sip:a : 20/ws");
    assert_eq!((uri.port, uri.path.clone()), (20, s("/ws")));
    assert_eq!(one("<sip:a:20/ws>").path, s("/ws"));
    assert_eq!(one("sip:u@a/ws").path, s("/ws"));
    // nklib kept the trailing space ("/ws "); whitespace ends a path here.
    assert_eq!(one("<sip:u@a/ws >").path, s("/ws"));
    let uri = one("<sip:u@a:20/ws>");
    assert_eq!(
        (uri.user.clone(), uri.port, uri.path.clone()),
        (s("u"), 20, s("/ws"))
    );
    let uri = one("<sip:u:p@a:20/ws>");
    assert_eq!((uri.password.clone(), uri.path.clone()), (s("p"), s("/ws")));
    let uri = one("sip: a/ws;b");
    assert_eq!(
        (uri.path.clone(), uri.ext_params.clone()),
        (s("/ws"), vec![flag("b")])
    );
    let uri = one("<sip:u:p@a:20/ws;b;c=2>");
    assert_eq!(
        (uri.path.clone(), uri.params.clone()),
        (s("/ws"), vec![flag("b"), kv("c", "2")])
    );
    let uri = one("sip:u:p@a:20/ws;b;c=2 ");
    assert_eq!(uri.ext_params, vec![flag("b"), kv("c", "2")]);
    let uri = one("sip:a/ws?d=2&f");
    assert_eq!(
        (uri.path.clone(), uri.ext_headers.clone()),
        (s("/ws"), vec![kv("d", "2"), flag("f")])
    );
    let uri = one("<sip:a/ws;b;c=2?dd=2&ff>;g=3?h&i");
    assert_eq!(uri.path, s("/ws"));
    assert_eq!(uri.params, vec![flag("b"), kv("c", "2")]);
    assert_eq!(uri.headers, vec![kv("dd", "2"), flag("ff")]);
    assert_eq!(uri.ext_params, vec![kv("g", "3")]);
    assert_eq!(uri.ext_headers, vec![flag("h"), flag("i")]);
    let paths = |text: &str| list(text).into_iter().map(|u| u.path).collect::<Vec<_>>();
    assert_eq!(paths("sip:a/ws,sip:b/ws2"), [s("/ws"), s("/ws2")]);
    assert_eq!(paths("<sip:a/ws>  ,  sip:b/ws2"), [s("/ws"), s("/ws2")]);
    let uri = one("sip:[1:2::3]/ws");
    assert_eq!(
        (uri.host.as_str(), uri.port, uri.path.clone()),
        ("[1:2::3]", 0, s("/ws"))
    );
}

// ---------------------------------------------------------------------------------------------
// More of the grammar

#[test]
fn empty_and_blank_lists() {
    assert_eq!(list(""), vec![]);
    assert_eq!(list(" \t\r\n "), vec![]);
    let e = parse("").unwrap_err();
    assert_eq!((e.position, e.reason.as_str()), (0, "empty URI"));
    let e = parse("   ").unwrap_err();
    assert_eq!(e.position, 3);
}

#[test]
fn parse_single_rejects_lists() {
    let e = parse("sip:a, sip:b").unwrap_err();
    assert_eq!(e.position, 5);
    assert!(e.reason.contains("single URI"), "{e}");
    assert_eq!("sip:a".parse::<Uri>(), Ok(one("sip:a")));
    assert!("sip:a,sip:b".parse::<Uri>().is_err());
}

#[test]
fn quoted_values_and_escapes() {
    let uri = one(r#"sip:a;x="a;b?c>d,e";y="";z=pre"mid dle"post;w="back\\slash""#);
    assert_eq!(
        uri.ext_params,
        vec![
            kv("x", "a;b?c>d,e"),
            kv("y", ""),
            kv("z", "premid dlepost"),
            kv("w", "back\\slash")
        ]
    );
    // Commas inside quotes or <...> do not split the list.
    let uris = list(r#"<sip:a;x="1,2">, "b, c" <sip:b?h="3,4">"#);
    assert_eq!(uris.len(), 2);
    assert_eq!(uris[0].param("x"), Some(Some("1,2")));
    assert_eq!(uris[1].display, s("b, c"));
    assert_eq!(uris[1].header("h"), Some(Some("3,4")));
}

#[test]
fn header_values_may_hold_semicolons() {
    let uri = one("sip:a?h=1;2?3&g=x=y");
    assert_eq!(uri.ext_headers, vec![kv("h", "1;2?3"), kv("g", "x=y")]);
    assert_eq!(uri.ext_header("H"), Some(Some("1;2?3")));
    let uri = one("sip:a;p=1&2");
    assert_eq!(uri.ext_params, vec![kv("p", "1&2")]);
}

#[test]
fn display_names() {
    assert_eq!(one("<sip:a>").display, None);
    assert_eq!(one("\"\" <sip:a>").display, s(""));
    assert_eq!(one("  John   Doe\t<sip:a>").display, s("John Doe"));
    assert_eq!(one(r#""  spaced  " <sip:a>"#).display, s("  spaced  "));
    assert_eq!(one(r#""a \"b\" \\ c"<sip:a>"#).display, s(r#"a "b" \ c"#));
    assert_eq!(one("Bob\u{e9}<sip:a>").display, s("Bob\u{e9}"));
}

#[test]
fn userinfo_forms() {
    let uri = one("sip:u:@h");
    assert_eq!((uri.user.clone(), uri.password.clone()), (s("u"), s("")));
    let uri = one("sip:u:p:q@h:1");
    assert_eq!(
        (uri.user.clone(), uri.password.clone(), uri.port),
        (s("u"), s("p:q"), 1)
    );
    let uri = one("sip://user@host");
    assert_eq!((uri.user.clone(), uri.host.as_str()), (s("user"), "host"));
    // An '@' after a delimiter does not make userinfo.
    let uri = one("sip:a;x=u@b");
    assert_eq!((uri.user.clone(), uri.host.as_str()), (None, "a"));
    assert_eq!(uri.ext_params, vec![kv("x", "u@b")]);
}

#[test]
fn hosts() {
    assert_eq!(
        one("sip:my_host-1.example.com.").host,
        "my_host-1.example.com."
    );
    assert_eq!(
        one("sip:0.0.0.0").host_ip(),
        Some(IpAddr::from([0, 0, 0, 0]))
    );
    assert_eq!(one("sip:[::]").host_ip(), Some(IpAddr::from([0u16; 8])));
    assert_eq!(one("sip:[::ffff:1.2.3.4]").host, "[::ffff:1.2.3.4]");
    assert_eq!(one("sip:all").host_ip(), None);
    assert_eq!(one("sip:5060").host, "5060");
    let hand = Uri {
        host: "::1".into(),
        ..Uri::default()
    };
    assert_eq!(
        hand.host_ip(),
        Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
    );
    assert_eq!(hand.host_unbracketed(), "::1");
}

#[test]
fn ports() {
    assert_eq!(one("sip:a:0").port, 0);
    assert_eq!(one("sip:a:65535").port, 65535);
    assert_eq!(one("sip:a:00080").port, 80);
    fails("sip:a:65536", 6, "port 65536 out of range");
    fails("sip:a:99999999999999999999999", 6, "out of range");
    fails("sip:a:", 6, "missing port number");
    fails("sip:a:-1", 6, "invalid port");
}

#[test]
fn param_lookup_helpers() {
    let uri = one("<sip:a;transport=tcp;lr>;transport=udp;foo");
    assert_eq!(uri.param("transport"), Some(Some("tcp")));
    assert_eq!(uri.ext_param("transport"), Some(Some("udp")));
    assert_eq!(uri.any_param("TRANSPORT"), Some(Some("tcp")));
    assert_eq!(uri.any_param("foo"), Some(None));
    assert_eq!(uri.param("foo"), None);
    assert_eq!(uri.any_param("missing"), None);
    let uri = one("<sip:a?x=1>?y");
    assert_eq!(uri.header("X"), Some(Some("1")));
    assert_eq!(uri.header("y"), None);
    assert_eq!(uri.ext_header("y"), Some(None));
}

#[test]
fn error_cases() {
    fails("sip:a\u{1}", 5, "control character U+0001");
    fails("sip:a;x=\"a\u{7f}\"", 10, "control character U+007F");
    fails(
        "sip:a;x=\"a\r\nb\"",
        10,
        "line break inside a quoted string",
    );
    fails("\"abc", 0, "unbalanced '\"'");
    fails("sip:a;x=\"abc", 8, "unbalanced '\"'");
    fails("sip:a;x=\"abc\\", 8, "unbalanced '\"'");
    fails("sip:a>", 5, "'>' without a matching '<'");
    fails("<sip:a>>", 7, "unexpected character '>' after the URI");
    fails("<sip:a;b?c", 0, "unbalanced '<'");
    fails("sip:a,", 6, "empty list item after ','");
    fails(",sip:a", 0, "empty list item");
    fails("sip:a, ,sip:b", 7, "empty list item");
    fails("1sip:a", 0, "scheme must start with a letter");
    fails("s_p:a", 1, "unexpected character '_' in scheme");
    fails("sip:[1::2::3]", 5, "invalid IPv6 address");
    fails("sip:[1::2", 4, "unbalanced '['");
    fails("sip:[1::g]", 8, "unexpected character 'g' in IPv6 address");
    fails("sip:1.2.3.256", 4, "invalid IPv4 address");
    fails("sip:a..b", 6, "empty label");
    fails("sip:.a", 4, "empty label");
    fails("sip::5060", 4, "empty host");
    fails("sip:;a", 4, "empty host");
    fails(
        "sip:h\u{fc}",
        5,
        "unexpected character '\u{fc}' after the URI",
    );
    fails("sip:\u{fc}", 4, "unexpected character '\u{fc}' in host");
    fails("sip:@a", 4, "empty user name");
    fails("sip:u x@a", 6, "unexpected character 'x' in user info");
    fails("sip:a b", 6, "unexpected character 'b' after the URI");
    fails("<sip:a b>", 7, "unexpected character 'b' inside '<...>'");
    fails("sip:a;=b", 6, "empty parameter name");
    fails("sip:a;b=", 8, "missing value after '='");
    fails("sip:a;b= ;c", 9, "missing value after '='");
    fails("sip:a;x=<b>", 8, "unexpected '<' in the value");
    fails("sip:a?", 6, "empty header name");
    fails("sip:a?h&", 8, "empty header name");
    fails("sip:a?h;x", 7, "parameters must come before headers");
    fails("<sip:a?h;x>", 8, "parameters must come before headers");
    fails("sip:a;k{=1", 7, "unexpected character '{' after the URI");
    fails("sip:a /ws", 6, "a path must follow the host or port");
    fails("sip:a:1 /ws", 8, "a path must follow the host or port");
    fails("Bob > <sip:a>", 4, "unexpected '>' in display name");
    fails("<sip:a> x", 8, "unexpected character 'x' after the URI");
    fails("<sip:a>, junk", 13, "missing ':'");
    fails(
        "\"Name\" sip:a",
        10,
        "expected '<' after the quoted display name",
    );
    fails("\"Name\"", 6, "expected '<' after the quoted display name");
    fails(
        "sip:a, \"Name\", sip:b",
        13,
        "expected '<' after the quoted display name",
    );
}

#[test]
fn error_display() {
    let e = parse_list("sip:a:70000").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid URI \"sip:a:70000\" at 6: port 70000 out of range (0-65535)"
    );
}

// ---------------------------------------------------------------------------------------------
// Canonical form and round trip

#[test]
fn canonical_forms() {
    let cases = [
        (
            "sip://example.com;transport=tls",
            "sip:example.com;transport=tls",
        ),
        (" sip : host : 5061 ", "sip:host:5061"),
        (
            "<test://h:1;transport=ws>;idle_timeout=500",
            "<test:h:1;transport=ws>;idle_timeout=500",
        ),
        (
            "\"Name\" <sip:a@b:5060;lr>;tag=1?h=v",
            "\"Name\" <sip:a@b:5060;lr>;tag=1?h=v",
        ),
        ("Name <sip:a>", "\"Name\" <sip:a>"),
        ("sip:a/ws/1/", "sip:a/ws/1"),
        ("http://h:1/", "http:h:1/"),
        ("sip:a///", "sip:a///"),
        ("sip:a;x=\"a b\";y=\"\"", "sip:a;x=\"a b\";y=\"\""),
        ("sip:a;x=\"plain\"", "sip:a;x=plain"),
        ("* ; a", "*;a"),
        ("<sip:a?routE=a>?route=b", "<sip:a?route=a>?route=b"),
        ("SIP:a:0", "sip:a"),
    ];
    for (input, canonical) in cases {
        assert_eq!(
            one(input).to_string(),
            canonical,
            "canonical form of {input:?}"
        );
    }
}

#[test]
fn round_trip_table() {
    let inputs = [
        "sip:a",
        "<sip:a>",
        "*",
        "*;a=1?b",
        "sip:*",
        "sip:a/ws/1/",
        "sip:a//",
        "sip:a///",
        "http://h:1/",
        "sip:[1:2::3]:20/ws",
        "test:[::1]:5060",
        "<sip:a;b;c=2?dd=2&ff>;g=3?h&i",
        "<sip:a?routE=a>?route=b",
        "\"Name\" <sip:a@b:5060;lr>;tag=1?h=v",
        " Mi \"disp<,:\" <sip:a>",
        "\"\" <sip:a>",
        "\"tab\there\" <sip:a>",
        r#""a \"b\" \\ c"<sip:a>"#,
        "sip:u:@h",
        "sip:u:p:q@h:1",
        "sip:+12125551212@server.phone2net.com;tag=887s",
        r#"<sip:host;key="my \""?hd="your \"">"#,
        r#"sip:a;x="a;b?c>d,e";y="";z=pre"mid dle"post;w="back\\slash";v="x=y""#,
        "sip:a?h=1;2?3&g=x=y",
        "sip:a;p=1&2",
        "<sip:xxxx@192.168.1.2:5060;transport=TCP;ob>;reg-id=1;+sip.instance=\"<urn:uuid:1>\"",
        r#"test://all:8080/any;transport=ws;host=localhost; path= "dom3"; ws_proto=proto1"#,
        "<http://all:8080/test2/>",
        "sip:a/p%20q/r@s",
        "Bob\u{e9} <sip:\u{e9}l\u{e8}ve@h;x=\u{2603}>",
    ];
    for input in inputs {
        let uri = one(input);
        let text = uri.to_string();
        assert_eq!(one(&text), uri, "{input:?} written as {text:?}");
        assert_eq!(
            one(&text).to_string(),
            text,
            "canonical form of {input:?} is not stable"
        );
    }
    let all = list(&inputs.join(" , "));
    assert_eq!(all.len(), inputs.len());
    assert_eq!(list(&format_list(&all)), all);
}

#[test]
fn display_of_hand_built_uris() {
    // params inside <...> force the bracketed form even when `bracketed` is false
    let uri = Uri {
        scheme: "sip".into(),
        host: "h".into(),
        params: vec![flag("lr")],
        ..Uri::default()
    };
    assert_eq!(uri.to_string(), "<sip:h;lr>");
    let uri = Uri {
        scheme: "sip".into(),
        host: "h".into(),
        path: Some("x".into()),
        ..Uri::default()
    };
    assert_eq!(uri.to_string(), "sip:h/x");
}
