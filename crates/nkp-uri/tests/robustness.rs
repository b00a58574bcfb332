//! Seeded-random robustness tests: the parser never panics, every error points inside the input,
//! and every accepted list survives the canonical Display → parse round trip. Also generates
//! random valid `Uri` values and checks that their canonical text parses back to them.

use nkp_uri::{Param, Uri, format_list, parse, parse_list};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEEDS: &[&str] = &[
    "sip:a",
    "<sip:a>",
    "*",
    "*;a=1?b",
    "sip://example.com;transport=tls",
    "<test://h:1;transport=ws>;idle_timeout=500",
    "test:[::1]:5060",
    "\"Name\" <sip:a@b:5060;lr>;tag=1?h=v",
    " sip : host : 5061 ",
    "<sip:a;b;c=2?dd=2&ff>;g=3?h&i",
    "<sip:a?routE=a>?route=b",
    "sip:a,sip:b",
    "sip:[1:2::3]:20/ws",
    "sip:a/ws/1/",
    "http://h:1/",
    " Mi \"disp<,:\" <sip:a>",
    "<sip:xxxx@192.168.1.2:5060;transport=TCP;ob>;reg-id=1;+sip.instance=\"<urn:uuid:1>\"",
    r#"<sip:host;key="my \""?hd="your \"">"#,
    "sip:u1:p1@a?a1,<sip:u2:p2@b;b1>",
    r#"test://all:8080/any;transport=ws;host=localhost; path= "dom3"; ws_proto=proto1"#,
    "Bob\u{e9} <sip:\u{e9}l\u{e8}ve@h;x=\u{2603}>",
];

/// Characters that matter to the grammar, plus a few that must be rejected.
const ALPHABET: &[char] = &[
    's', 'i', 'p', 'a', 'b', 'Z', '0', '1', '9', ':', ':', '/', '/', '<', '>', ';', ';', '?', '&',
    '=', '=', ',', ',', '"', '"', '\\', '[', ']', '@', '*', '.', '-', '_', '+', ' ', '\t', '\r',
    '\n', '\u{0}', '\u{1}', '\u{7f}', '\u{85}', '\u{e9}', '\u{2603}', '%', '{', '#',
];

/// Parses `text` as a list and as a single URI and checks every invariant.
fn check(text: &str) {
    match parse_list(text) {
        Ok(uris) => {
            let written = format_list(&uris);
            match parse_list(&written) {
                Ok(again) => assert_eq!(again, uris, "{text:?} written as {written:?}"),
                Err(e) => panic!("{text:?} written as {written:?} does not parse: {e}"),
            }
            for uri in &uris {
                let one = uri.to_string();
                assert_eq!(
                    parse(&one).as_ref(),
                    Ok(uri),
                    "{text:?}: item written as {one:?}"
                );
            }
            // parse() agrees with parse_list() on single items.
            match parse(text) {
                Ok(uri) => assert_eq!(uris, vec![uri], "{text:?}"),
                Err(_) => assert_ne!(
                    uris.len(),
                    1,
                    "{text:?}: parse_list gave one URI, parse failed"
                ),
            }
        }
        Err(e) => {
            assert_eq!(e.input, text);
            assert!(
                e.position <= text.len(),
                "{text:?}: position {} out of range",
                e.position
            );
            assert!(
                text.is_char_boundary(e.position),
                "{text:?}: position not on a char boundary"
            );
            assert!(!e.reason.is_empty());
            assert!(
                parse(text).is_err(),
                "{text:?}: list failed but single parse succeeded"
            );
        }
    }
}

#[test]
fn random_strings_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x6e6b_7572_6931);
    let mut accepted = 0;
    for _ in 0..150_000 {
        let len = rng.random_range(0..32);
        let text: String = if rng.random_bool(0.2) {
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .collect()
        };
        check(&text);
        if parse_list(&text).is_ok_and(|u| !u.is_empty()) {
            accepted += 1;
        }
    }
    // The alphabet is rich enough that some random strings are valid lists.
    assert!(accepted > 0, "no random string was accepted");
}

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..5) {
            0 => chars.insert(at, ALPHABET[rng.random_range(0..ALPHABET.len())]),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 if at < chars.len() => chars[at] = ALPHABET[rng.random_range(0..ALPHABET.len())],
            3 if at < chars.len() => {
                let end = rng.random_range(at..chars.len());
                let copy: Vec<char> = chars[at..=end].to_vec();
                let to = rng.random_range(0..=chars.len());
                chars.splice(to..to, copy);
            }
            _ if chars.len() > 1 => {
                let other = rng.random_range(0..chars.len());
                let at = at.min(chars.len() - 1);
                chars.swap(at, other);
            }
            _ => chars.push(','),
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mutated_valid_uris_never_panic() {
    for seed in SEEDS {
        check(seed);
        assert!(parse_list(seed).is_ok(), "seed {seed:?} must be valid");
    }
    let mut rng = StdRng::seed_from_u64(0x6e6b_7572_6932);
    let mut accepted = 0;
    for _ in 0..200_000 {
        let seed = SEEDS[rng.random_range(0..SEEDS.len())];
        let text = if rng.random_bool(0.1) {
            let other = SEEDS[rng.random_range(0..SEEDS.len())];
            mutate(&mut rng, &format!("{seed},{other}"))
        } else {
            mutate(&mut rng, seed)
        };
        check(&text);
        if parse_list(&text).is_ok() {
            accepted += 1;
        }
    }
    assert!(
        accepted > 1_000,
        "too few mutations accepted ({accepted}): mutations too destructive"
    );
}

// ---------------------------------------------------------------------------------------------
// Generated values

fn pick(rng: &mut StdRng, set: &str) -> char {
    let chars: Vec<char> = set.chars().collect();
    chars[rng.random_range(0..chars.len())]
}

fn word(rng: &mut StdRng, set: &str, min: usize, max: usize) -> String {
    let len = rng.random_range(min..=max);
    (0..len).map(|_| pick(rng, set)).collect()
}

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const TOKEN: &str = "abcdefxyz0129-.!%*_+`'~";
const FREE: &str = "aZ9 \t;?&>,<\"\\=@:/[]{}*#%\u{e9}\u{2603}";
const USER: &str = "aZ09-_.!~*'()&=+$%\u{e9}";
const PATH: &str = "aZ09/-_.~%@&=+$*:[]\u{e9}";

fn gen_params(rng: &mut StdRng) -> Vec<Param> {
    (0..rng.random_range(0..3))
        .map(|_| {
            let key = word(rng, TOKEN, 1, 6);
            let value = rng.random_bool(0.7).then(|| word(rng, FREE, 0, 8));
            (key.to_ascii_lowercase(), value)
        })
        .collect()
}

fn gen_host(rng: &mut StdRng) -> String {
    match rng.random_range(0..5) {
        0 => format!(
            "{}.{}.{}.{}",
            rng.random::<u8>(),
            rng.random::<u8>(),
            rng.random::<u8>(),
            rng.random::<u8>()
        ),
        1 => format!("[{}]", std::net::Ipv6Addr::from(rng.random::<u128>())),
        2 => "*".to_owned(),
        _ => {
            let labels: Vec<String> = (0..rng.random_range(1..4))
                .map(|_| word(rng, "ab-_9Z", 1, 5))
                .collect();
            let mut host = labels.join(".");
            if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                host.push('x');
            }
            host
        }
    }
}

fn gen_uri(rng: &mut StdRng) -> Uri {
    let mut uri = Uri {
        scheme: format!("{}{}", pick(rng, LOWER), word(rng, "az09+-.", 0, 4)),
        host: gen_host(rng),
        port: if rng.random_bool(0.5) {
            rng.random()
        } else {
            0
        },
        ext_params: gen_params(rng),
        ext_headers: gen_params(rng),
        ..Uri::default()
    };
    if rng.random_bool(0.3) {
        uri.user = Some(word(rng, USER, 1, 6));
        if rng.random_bool(0.5) {
            uri.password = Some(word(rng, &format!("{USER}:"), 0, 6));
        }
    }
    if rng.random_bool(0.4) {
        uri.path = Some(format!("/{}", word(rng, PATH, 0, 8)));
    }
    if rng.random_bool(0.5) {
        uri.bracketed = true;
        uri.params = gen_params(rng);
        uri.headers = gen_params(rng);
        if rng.random_bool(0.5) {
            uri.display = Some(word(rng, FREE, 0, 8));
        }
    }
    uri
}

#[test]
fn generated_uris_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x6e6b_7572_6933);
    for _ in 0..20_000 {
        let uris: Vec<Uri> = (0..rng.random_range(1..4))
            .map(|_| gen_uri(&mut rng))
            .collect();
        let text = format_list(&uris);
        match parse_list(&text) {
            Ok(parsed) => assert_eq!(parsed, uris, "{text:?}"),
            Err(e) => panic!("generated {uris:?} written as {text:?} does not parse: {e}"),
        }
    }
}
