//! The PROXY protocol header parser (`nkp_core::proxy::parse`, v1 and v2) on arbitrary bytes:
//!
//! * never a panic;
//! * a header found uses between 1 and `buf.len()` bytes, never more than the longest header
//!   allowed (`V1_MAX` for v1, `V2_MAX` for v2), and the same header is found in exactly
//!   those bytes (what follows the header does not change it);
//! * every shorter prefix of a header (or of an input that "needs more") asks for more bytes
//!   rather than failing: a header split across reads is never rejected, which is what
//!   `read_header` relies on;
//! * "needs more" is never said of an input already as long as the longest header of its
//!   version.
//!
//! Input: the first bytes of an accepted stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nkp_core::proxy::{V1_MAX, V2_MAX, parse};

fuzz_target!(|buf: &[u8]| {
    match parse(buf) {
        Ok(Some((header, used))) => {
            assert!(used >= 1 && used <= buf.len(), "used {used} of {}", buf.len());
            let max = if buf[0] == b'P' { V1_MAX } else { V2_MAX };
            assert!(used <= max, "a header of {used} bytes (max {max})");
            match parse(&buf[..used]) {
                Ok(Some((again, n))) => {
                    assert_eq!(again, header);
                    assert_eq!(n, used);
                }
                other => panic!("the header alone parses as {other:?}"),
            }
            for k in 0..used {
                assert!(
                    matches!(parse(&buf[..k]), Ok(None)),
                    "a {k}-byte prefix of a {used}-byte header is not 'needs more'"
                );
            }
        }
        Ok(None) => {
            let max = match buf.first() {
                Some(b'P') => V1_MAX,
                _ => V2_MAX,
            };
            assert!(buf.len() < max, "needs more after {} bytes", buf.len());
            for k in 0..buf.len() {
                assert!(matches!(parse(&buf[..k]), Ok(None)));
            }
        }
        Err(e) => {
            // a typed error with a message that says what it is about
            assert!(e.to_string().contains("PROXY"), "{e}");
        }
    }
});
