//! Inputs found by the fuzz targets in `fuzz/` (`cargo xtask fuzz`), kept as tests of the
//! stream framing decoder.

#![allow(clippy::unwrap_used)]

use bytes::{BufMut, BytesMut};
use nkp_core::codec::{DEFAULT_MAX_FRAME, Framing, StreamCodec};
use tokio_util::codec::Decoder;

/// Feeds `chunks` one after the other, decoding after each; returns the frames.
fn feed(codec: &mut StreamCodec, buf: &mut BytesMut, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for chunk in chunks {
        buf.put_slice(chunk);
        while let Some(frame) = codec.decode(buf).unwrap() {
            out.push(frame.to_vec());
        }
    }
    out
}

/// fuzz/framing: a partial frame at the end of the stream is an error at EOF when some of
/// its bytes are still buffered (part of the prefix, or the prefix and part of the body).
#[test]
fn partial_frame_at_eof_is_an_error() {
    for (framing, tail) in [
        (Framing::Prefix2, &[0u8][..]),
        (Framing::Prefix2, &[0, 3, b'a'][..]),
        (Framing::Prefix4, &[0, 0, 0, 9, 1, 2][..]),
    ] {
        let mut codec = StreamCodec::new(&framing, DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::new();
        assert!(feed(&mut codec, &mut buf, &[tail]).is_empty());
        assert!(codec.decode_eof(&mut buf).is_err(), "{framing:?} {tail:?}");
    }
}

/// fuzz/framing crash-566dfe17 (input `81 00 00 01`: 1-byte prefix, stream `00 01`): an empty
/// frame, then the prefix of a 1-byte frame whose body never arrives. The decoder has taken
/// the prefix out of the buffer and the buffer is empty: `decode_eof` must still report the
/// truncated frame (it used to report a clean end of stream).
#[test]
fn frame_truncated_after_its_prefix_is_an_error_at_eof() {
    let mut codec = StreamCodec::new(&Framing::Prefix1, DEFAULT_MAX_FRAME);
    let mut buf = BytesMut::new();
    let frames = feed(&mut codec, &mut buf, &[&[0x00, 0x01]]);
    assert_eq!(frames, vec![Vec::<u8>::new()]);
    assert!(buf.is_empty());
    assert!(
        codec.decode_eof(&mut buf).is_err(),
        "a 1-byte frame was announced and never came"
    );
}
