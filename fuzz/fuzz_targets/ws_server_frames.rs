//! WebSocket server side, in memory: arbitrary bytes as a client's frames, fed to nkp-ws's
//! pure decoder (frame rules, reassembly, UTF-8, permessage-deflate) in arbitrary chunks.
//!
//! * nothing panics;
//! * the outcome (messages, then the error and its close code) does not depend on the
//!   chunking, nor on decoding the first message straight from the read chunk as `WsLink`
//!   does (`Decoder::decode_slice`);
//! * messages respect the limits (data ≤ `max_message_size`, control ≤ 125 bytes);
//! * no allocation while decoding is larger than the limit plus what was received (plus
//!   the fixed inflater state): a declared length is never allocated up front, and a
//!   compressed message never inflates past the limit (decompression bombs);
//! * what was decoded, encoded again by a client encoder with the same parameters,
//!   decodes to the same messages.
//!
//! Input: byte 0 is flags (bit 0: permessage-deflate negotiated, so half of the inputs
//! have it; bit 1: a 256-byte limit instead of 64 KiB; bit 2: client_no_context_takeover),
//! byte 1 the chunk size (0: everything at once), then the bytes the client sends.

#![no_main]


use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nkp_core::Frame;
use nkp_ws::codec::{CodecError, Decoder, Encoder};
use nkp_ws::deflate::DeflateParams;
use nkp_ws::frame::Role;

#[path = "common/tracking_alloc.rs"]
mod tracking_alloc;

#[global_allocator]
static ALLOC: tracking_alloc::Tracking = tracking_alloc::Tracking;

/// The inflater's own state (zlib-rs: the 32 KiB window and the decoder tables) and the
/// read buffer's growth are allowed beyond the limit.
const SLACK: usize = 128 * 1024;

/// Decodes `stream` in chunks of `step` bytes (0: all at once).
fn decode(
    stream: &[u8],
    step: usize,
    max: usize,
    params: Option<DeflateParams>,
) -> (Vec<Frame>, Option<CodecError>) {
    let mut d = Decoder::new(Role::Server, max, params);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let step = if step == 0 { stream.len().max(1) } else { step };
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// Decodes `stream` in chunks of `step` bytes the way `WsLink` reads: while nothing is
/// buffered, the first message comes straight from the chunk (`decode_slice`), and only the
/// bytes after it are buffered.
fn decode_as_the_link(
    stream: &[u8],
    step: usize,
    max: usize,
    params: Option<DeflateParams>,
) -> (Vec<Frame>, Option<CodecError>) {
    let mut d = Decoder::new(Role::Server, max, params);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let step = if step == 0 { stream.len().max(1) } else { step };
    for chunk in stream.chunks(step) {
        let mut rest = chunk;
        if buf.is_empty() {
            match d.decode_slice(rest) {
                Ok((f, used)) => {
                    frames.extend(f);
                    rest = &rest[used..];
                }
                Err(e) => return (frames, Some(e)),
            }
        }
        buf.extend_from_slice(rest);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fuzz_target!(|input: &[u8]| {
    let [flags, step, stream @ ..] = input else {
        return;
    };
    let params = (flags & 1 != 0).then(|| DeflateParams {
        client_no_context_takeover: flags & 4 != 0,
        ..DeflateParams::default()
    });
    let max = if flags & 2 != 0 { 256 } else { 64 * 1024 };

    tracking_alloc::reset();
    let whole = decode(stream, 0, max, params);
    let chunked = decode(stream, usize::from(*step), max, params);
    let as_the_link = decode_as_the_link(stream, usize::from(*step), max, params);
    let largest = tracking_alloc::largest();
    assert!(
        largest <= max + 2 * stream.len() + SLACK,
        "an allocation of {largest} bytes for {} bytes received (limit {max})",
        stream.len()
    );
    assert_eq!(whole, chunked, "the chunking changed the outcome");
    assert_eq!(whole, as_the_link, "decoding from the read chunk changed the outcome");

    let (frames, error) = whole;
    if let Some(e) = &error {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009), "{e}");
    }
    for f in &frames {
        match f {
            Frame::Text(_) | Frame::Binary(_) => assert!(f.len() <= max),
            Frame::Ping(p) | Frame::Pong(p) => assert!(p.len() <= 125),
            Frame::Close(Some(r)) => assert!(r.reason.len() <= 123),
            Frame::Close(None) => {}
        }
    }

    // encoded again by a client with the same parameters: the same messages
    let mut enc = Encoder::new(Role::Client, params);
    let mut wire = Vec::new();
    for f in &frames {
        enc.encode(f, &mut wire)
            .unwrap_or_else(|e| panic!("a decoded frame does not encode: {e}"));
    }
    let (again, err) = decode(&wire, 0, max, params);
    assert_eq!(err, None);
    assert_eq!(again, frames);
});
