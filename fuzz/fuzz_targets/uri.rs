//! The URI-list parser: never panics, and every list it accepts is written back (canonical
//! form, `Display` / `format_list`) as text that parses to the same URIs; its params then go
//! through `Options::set_from_uri` as the facade does.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(uris) = nkp_uri::parse_list(&text) else {
        // A single URI is a list of one: parse must refuse too (or the text was a list).
        if let Ok(uri) = nkp_uri::parse(&text) {
            panic!("parse accepted {text:?} as {uri:?} but parse_list refused it");
        }
        return;
    };
    // Each URI alone: its canonical form reads back equal.
    for uri in &uris {
        let written = uri.to_string();
        match nkp_uri::parse(&written) {
            Ok(again) => assert_eq!(
                &again, uri,
                "{text:?} → {uri:?} written as {written:?} reads back as {again:?}"
            ),
            Err(e) => panic!("{text:?} → {uri:?} written as {written:?} does not parse: {e}"),
        }
    }
    // The whole list.
    let written = nkp_uri::format_list(&uris);
    match nkp_uri::parse_list(&written) {
        Ok(again) => assert_eq!(again, uris, "list {text:?} written as {written:?}"),
        Err(e) => panic!("list {text:?} written as {written:?} does not parse: {e}"),
    }
    // What the facade does with URI params: options from them never panic.
    for uri in &uris {
        let mut opts = nkp_core::Options::default();
        for (key, value) in uri.params.iter().chain(&uri.ext_params) {
            let _ = opts.set_from_uri(key, value.as_deref().unwrap_or(""), &["x-proto"]);
        }
    }
    // parse agrees with parse_list on one-item lists.
    if uris.len() == 1 {
        assert_eq!(nkp_uri::parse(&text).ok().as_ref(), uris.first());
    }
});
