//! The in-frame encoding shared by [`crate::HttpRequest`] and [`crate::HttpResponse`]: a
//! magic prefix (starting with a NUL byte, which no ordinary body of a text protocol starts
//! with), then length-prefixed strings, then the body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use nkp_core::Error;

/// Appends `s` as a 32-bit length and its bytes.
pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    b.put_u32(len);
    b.put_slice(&bytes[..len as usize]);
}

/// Appends a header list: a 16-bit count, then name and value of each.
pub(crate) fn put_headers(b: &mut BytesMut, headers: &[(String, String)]) {
    b.put_u16(u16::try_from(headers.len()).unwrap_or(u16::MAX));
    for (n, v) in headers.iter().take(u16::MAX as usize) {
        put_str(b, n);
        put_str(b, v);
    }
}

/// A decoder over the bytes after the magic prefix; `what` names the damaged frame in errors.
pub(crate) struct Reader {
    data: Bytes,
    what: &'static str,
}

impl Reader {
    pub(crate) fn new(data: Bytes, what: &'static str) -> Self {
        Reader { data, what }
    }

    pub(crate) fn damaged(&self) -> Error {
        Error::Encode(format!("damaged {} frame", self.what))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        if self.data.remaining() < 2 {
            return Err(self.damaged());
        }
        Ok(self.data.get_u16())
    }

    pub(crate) fn str(&mut self) -> Result<String, Error> {
        if self.data.remaining() < 4 {
            return Err(self.damaged());
        }
        let len = self.data.get_u32() as usize;
        if self.data.remaining() < len {
            return Err(self.damaged());
        }
        let s = self.data.split_to(len);
        String::from_utf8(s.to_vec()).map_err(|_| self.damaged())
    }

    pub(crate) fn headers(&mut self) -> Result<Vec<(String, String)>, Error> {
        let count = self.u16()?;
        // each header needs at least 8 bytes: never reserve more than the frame can hold
        let mut headers = Vec::with_capacity((count as usize).min(self.data.remaining() / 8));
        for _ in 0..count {
            let n = self.str()?;
            let v = self.str()?;
            headers.push((n, v));
        }
        Ok(headers)
    }

    /// What is left: the body.
    pub(crate) fn rest(self) -> Bytes {
        self.data
    }
}
