//! Options set by name (`Options::set`, `Options::set_from_uri`) with arbitrary keys and
//! values: never a panic, a failed set leaves the options untouched, a successful one sets
//! exactly one field, and `set_from_uri` agrees with `set` on the options a URI may carry.
//!
//! Input: one byte choosing the key (a known option name, or the text before the first `=`
//! when the byte is 0xff), then the value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nkp_core::Options;
use nkp_core::options::{OPTION_NAMES, RESOLUTION_PARAMS};

/// Protocol-declared options, as `Protocol::extra_options` would give them.
const EXTRA: &[&str] = &["x-proto", "tag"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let rest = String::from_utf8_lossy(rest);
    let (key, value): (String, &str) = if selector == 0xff {
        match rest.split_once('=') {
            Some((k, v)) => (k.to_string(), v),
            None => (rest.to_string(), ""),
        }
    } else {
        let (name, _) = OPTION_NAMES[usize::from(selector) % OPTION_NAMES.len()];
        (name.to_string(), &*rest)
    };

    // set: all or nothing.
    let mut opts = Options::default();
    let direct = opts.set(&key, value);
    let names = opts.set_names();
    match &direct {
        Ok(()) => assert_eq!(names.len(), 1, "set({key:?}, {value:?}) set {names:?}"),
        Err(e) => {
            assert!(
                names.is_empty(),
                "failed set({key:?}, {value:?}) ({e}) set {names:?}"
            );
            // Errors render (they end up in logs and CLI messages).
            assert!(!e.to_string().is_empty());
        }
    }
    let _ = format!("{opts:?}");

    // set on options that already hold values: a failure changes nothing.
    let mut layered = Options::default();
    layered.set("idle_timeout", "5000").expect("a valid option");
    layered.set("tcp_packet", "4").expect("a valid option");
    let before = layered.set_names();
    if layered.set(&key, value).is_err() {
        assert_eq!(layered.set_names(), before);
    }

    // set_from_uri: the URI rules on top of set.
    let mut from_uri = Options::default();
    let via_uri = from_uri.set_from_uri(&key, value, EXTRA);
    let lower = key.trim().to_ascii_lowercase();
    let known = OPTION_NAMES.iter().find(|(n, _)| *n == lower);
    if RESOLUTION_PARAMS.contains(&lower.as_str()) {
        assert!(matches!(via_uri, Ok(false)), "{key:?}: {via_uri:?}");
        assert!(from_uri.set_names().is_empty() && from_uri.extra.is_empty());
    } else {
        match known {
            Some((name, true)) => {
                let mut reference = Options::default();
                let expected = reference.set(name, value);
                assert_eq!(
                    via_uri.is_ok(),
                    expected.is_ok(),
                    "{key:?}={value:?}: set_from_uri {via_uri:?}, set {expected:?}"
                );
                if via_uri.is_ok() {
                    assert!(matches!(via_uri, Ok(true)));
                    assert_eq!(from_uri.set_names(), reference.set_names());
                }
            }
            Some((_, false)) => {
                assert!(matches!(via_uri, Ok(false)), "{key:?}: {via_uri:?}");
                assert!(from_uri.set_names().is_empty());
            }
            None if EXTRA.contains(&lower.as_str()) => {
                assert!(matches!(via_uri, Ok(true)), "{key:?}: {via_uri:?}");
                assert_eq!(from_uri.extra.get(&lower).map(String::as_str), Some(value));
            }
            None => assert!(
                matches!(via_uri, Err(nkp_core::Error::UnknownOption(_))),
                "{key:?}: {via_uri:?}"
            ),
        }
    }

    // Effective getters never panic, whatever was set.
    let _ = opts.framing();
    let _ = opts.effective_max_message_size();
    let _ = opts.effective_udp_max_size();
    let _ = opts.effective_tcp_max_connections();
    let _ = opts.effective_tls_verify();
    let _ = opts.effective_connect_timeout();
});
