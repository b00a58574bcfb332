//! Decompression of the LZ4 "legacy" stream Linux uses for its compressed kernel image
//! (Debian's cloud kernel), so the VM can boot the ELF `vmlinux` directly without any
//! tool on the host.

/// Magic number of the legacy format, little-endian.
pub const LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
/// Uncompressed size of every block but the last.
const BLOCK: usize = 8 << 20;

/// Decodes a legacy LZ4 stream starting at the magic. Stops after the first block that
/// yields less than 8 MiB, or at anything that is not a plausible block (the kernel
/// appends the uncompressed size, then the rest of the image follows).
pub fn decompress_legacy(input: &[u8]) -> Result<Vec<u8>, String> {
    if !input.starts_with(&LEGACY_MAGIC) {
        return Err("not an LZ4 legacy stream".into());
    }
    let mut out = Vec::new();
    let mut pos = 4;
    while let Some(size) = input.get(pos..pos + 4) {
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        // A new frame's magic, or something larger than a compressed 8 MiB block can be.
        if size == u32::from_le_bytes(LEGACY_MAGIC) as usize || size > BLOCK + BLOCK / 255 + 16 {
            break;
        }
        let Some(block) = input.get(pos + 4..pos + 4 + size) else {
            break;
        };
        let before = out.len();
        decompress_block(block, &mut out)?;
        pos += 4 + size;
        if out.len() - before < BLOCK {
            break;
        }
    }
    if out.is_empty() {
        return Err("empty LZ4 stream".into());
    }
    Ok(out)
}

/// Decodes one LZ4 block, appending to `out` (matches may reach back into earlier data).
pub fn decompress_block(block: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut i = 0;
    let err = |what: &str| format!("corrupt LZ4 block: {what}");
    let read_len = |i: &mut usize, mut len: usize| -> Result<usize, String> {
        loop {
            let b = *block.get(*i).ok_or_else(|| err("length past the end"))?;
            *i += 1;
            len += b as usize;
            if b != 255 {
                return Ok(len);
            }
        }
    };
    while i < block.len() {
        let token = block[i];
        i += 1;
        let mut lit = (token >> 4) as usize;
        if lit == 15 {
            lit = read_len(&mut i, lit)?;
        }
        let literals = block
            .get(i..i + lit)
            .ok_or_else(|| err("literals past the end"))?;
        out.extend_from_slice(literals);
        i += lit;
        if i >= block.len() {
            break; // the last sequence has literals only
        }
        let off = block
            .get(i..i + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| err("offset past the end"))?;
        i += 2;
        let mut len = (token & 15) as usize;
        if len == 15 {
            len = read_len(&mut i, len)?;
        }
        len += 4;
        if off == 0 || off > out.len() {
            return Err(err("bad offset"));
        }
        let from = out.len() - off;
        if off >= len {
            out.extend_from_within(from..from + len);
        } else {
            for k in 0..len {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_literals_and_overlapping_matches() {
        // "abc" then a match of 9 at offset 3 -> "abcabcabcabc", then literal "!".
        // token: 3 literals, match length 9-4=5.
        let block = [0x35, b'a', b'b', b'c', 3, 0, 0x10, b'!'];
        let mut out = Vec::new();
        decompress_block(&block, &mut out).unwrap();
        assert_eq!(out, b"abcabcabcabc!");
    }

    #[test]
    fn legacy_stream_stops_at_a_short_block() {
        let block = [0x35, b'a', b'b', b'c', 3, 0, 0x10, b'!'];
        let mut stream = LEGACY_MAGIC.to_vec();
        stream.extend_from_slice(&(block.len() as u32).to_le_bytes());
        stream.extend_from_slice(&block);
        stream.extend_from_slice(&13u32.to_le_bytes()); // the appended size
        stream.extend_from_slice(b"trailing image data");
        assert_eq!(decompress_legacy(&stream).unwrap(), b"abcabcabcabc!");
        assert!(decompress_legacy(b"nope").is_err());
    }

    #[test]
    fn rejects_a_bad_offset() {
        let mut out = Vec::new();
        assert!(decompress_block(&[0x10, b'a', 9, 0, 0], &mut out).is_err());
    }
}
