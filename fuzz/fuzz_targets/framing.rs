//! The stream framing decoders (`StreamCodec`: raw, 1/2/4-byte length prefix) fed the same
//! byte stream in arbitrary chunks: never a panic, the frames (or the error) do not depend on
//! the chunking and match a reference decoder, and no allocation is larger than the bytes
//! received plus the frame limit allow — in particular a declared length is never allocated
//! up front.
//!
//! Input: byte 0 picks the framing and the limit (a small one, or the 16 MiB default),
//! byte 1.. a list of chunk lengths (one byte each, up to the first 0), then the stream.

#![no_main]


use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use nkp_core::Error;
use nkp_core::codec::{DEFAULT_MAX_FRAME, Framing, StreamCodec};
use tokio_util::codec::Decoder;

#[path = "common/tracking_alloc.rs"]
mod tracking_alloc;

#[global_allocator]
static ALLOC: tracking_alloc::Tracking = tracking_alloc::Tracking;

/// The decoder's read-ahead step (`GROW_STEP` in nkp-core): a frame still arriving may have
/// this much reserved beyond what was received.
const GROW_STEP: usize = 64 * 1024;

/// What decoding a whole stream gives: the frames, then whether it failed (a declared length
/// over the limit) or stopped with an incomplete frame.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Bytes>,
    too_large: Option<usize>,
}

/// The reference: a straightforward length-prefix parser over the whole stream.
fn reference(prefix: usize, max: usize, stream: &[u8]) -> Outcome {
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        if rest.len() < prefix {
            return Outcome {
                frames,
                too_large: None,
            };
        }
        let n = rest[..prefix]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if n > max {
            return Outcome {
                frames,
                too_large: Some(n),
            };
        }
        let body = &rest[prefix..];
        if body.len() < n {
            return Outcome {
                frames,
                too_large: None,
            };
        }
        frames.push(Bytes::copy_from_slice(&body[..n]));
        rest = &body[n..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framing = match mode & 0b11 {
        0 => Framing::Raw,
        1 => Framing::Prefix1,
        2 => Framing::Prefix2,
        _ => Framing::Prefix4,
    };
    // A small limit (0..=1023) or the default 16 MiB one.
    let limit = if mode & 0x80 != 0 {
        DEFAULT_MAX_FRAME
    } else {
        usize::from(mode >> 2) * 33
    };
    let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let chunk_lens: Vec<usize> = rest[..split].iter().map(|b| usize::from(*b)).collect();
    let stream = rest.get(split + 1..).unwrap_or(&[]);

    let mut codec = StreamCodec::new(&framing, limit);
    let prefix_max = match &codec {
        StreamCodec::Prefix { max, .. } => Some(*max),
        _ => None,
    };
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut too_large = None;
    let mut fed = 0usize;
    let mut chunks = chunk_lens.iter().copied().cycle();
    // The largest allocation made by the buffer and the decoder (not by this harness's own
    // bookkeeping, such as the list of frames).
    let mut largest = 0usize;
    'feed: while fed < stream.len() {
        let n = chunks
            .next()
            .unwrap_or(stream.len())
            .max(1)
            .min(stream.len() - fed);
        tracking_alloc::reset();
        buf.put_slice(&stream[fed..fed + n]);
        largest = largest.max(tracking_alloc::largest());
        fed += n;
        loop {
            tracking_alloc::reset();
            let decoded = codec.decode(&mut buf);
            largest = largest.max(tracking_alloc::largest());
            match decoded {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(Error::MessageTooLarge { size, max }) => {
                    assert_eq!(Some(max), prefix_max);
                    assert!(size > max);
                    too_large = Some(size);
                    break 'feed;
                }
                Err(e) => panic!("unexpected decode error {e}"),
            }
        }
        // Memory: what arrived, plus at most one read-ahead step and the limit, doubled for
        // the buffer's amortised growth.
        let allowed = 2 * (fed + GROW_STEP.min(limit) + 64);
        assert!(
            largest <= allowed,
            "an allocation of {largest} bytes after {fed} bytes received (limit {limit})"
        );
    }

    match prefix_max {
        None => {
            // Raw: every byte comes out once, in order, nothing is held back.
            let joined: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
            assert_eq!(joined, stream);
            assert!(frames.iter().all(|f| !f.is_empty()));
            assert!(buf.is_empty());
        }
        Some(max) => {
            let len = match framing {
                Framing::Prefix1 => 1,
                Framing::Prefix2 => 2,
                _ => 4,
            };
            let want = reference(len, max, stream);
            let got = Outcome { frames, too_large };
            assert_eq!(got, want, "framing {framing:?}, limit {limit}");
            if got.too_large.is_none() {
                // End of stream: an incomplete frame is an error, a clean end is not.
                let consumed: usize = got.frames.iter().map(|f| f.len() + len).sum();
                let eof = codec.decode_eof(&mut buf);
                let left = stream.len() - consumed;
                if left == 0 {
                    assert!(matches!(eof, Ok(None)), "{eof:?}");
                } else {
                    // Including a stream cut right after a prefix (nothing left in the
                    // buffer): the first bug this target found.
                    assert!(eof.is_err(), "{left} bytes left: {eof:?}");
                }
            }
        }
    }
});
