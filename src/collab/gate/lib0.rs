//! A bounded reader for lib0's binary encoding (what Yjs and y-protocols write).
//!
//! Every count and length read here is checked against the input still unread
//! before anything is done with it, so a lying length can never make the gate
//! allocate or loop more than the input's own size allows.

use super::GateError;

/// JavaScript numbers hold integers up to 2^53 - 1: the largest client id a Yjs
/// peer can send.
pub const MAX_CLIENT_ID: u64 = (1 << 53) - 1;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn read_u8(&mut self) -> Result<u8, GateError> {
        let byte = *self.buf.get(self.pos).ok_or(GateError::Truncated)?;
        self.pos += 1;
        Ok(byte)
    }

    /// An unsigned varint that must fit in 64 bits (no silent wrapping).
    pub fn read_var_u64(&mut self) -> Result<u64, GateError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.read_u8()?;
            let bits = u64::from(byte & 0x7f);
            // Bits shifted past 64 would be lost: such a number is refused, not wrapped.
            let fits = shift < 64 && (bits << shift) >> shift == bits;
            if fits {
                value |= bits << shift;
            } else if bits != 0 {
                return Err(GateError::NumberTooLarge);
            }
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 70 {
                return Err(GateError::NumberTooLarge);
            }
        }
    }

    /// An unsigned varint that must fit in 32 bits (yrs would wrap a larger one).
    pub fn read_var_u32(&mut self) -> Result<u32, GateError> {
        u32::try_from(self.read_var_u64()?).map_err(|_| GateError::NumberTooLarge)
    }

    /// A count of things each taking at least `min_bytes` of the input still unread:
    /// larger counts are lies.
    pub fn read_count(&mut self, min_bytes: usize) -> Result<usize, GateError> {
        let count = self.read_var_u64()?;
        let possible = self.remaining() / min_bytes.max(1);
        match usize::try_from(count) {
            Ok(count) if count <= possible => Ok(count),
            _ => Err(GateError::CountTooLarge),
        }
    }

    /// A Yjs client id (a JavaScript-safe integer).
    pub fn read_client(&mut self) -> Result<u64, GateError> {
        let client = self.read_var_u64()?;
        if client > MAX_CLIENT_ID {
            return Err(GateError::NumberTooLarge);
        }
        Ok(client)
    }

    /// A length-prefixed byte buffer, borrowed from the input.
    pub fn read_buf(&mut self) -> Result<&'a [u8], GateError> {
        let len = self.read_var_u64()?;
        let len = usize::try_from(len).map_err(|_| GateError::Truncated)?;
        if len > self.remaining() {
            return Err(GateError::Truncated);
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }

    /// A length-prefixed UTF-8 string.
    pub fn read_str(&mut self) -> Result<&'a str, GateError> {
        std::str::from_utf8(self.read_buf()?).map_err(|_| GateError::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_exact_and_bounded() {
        assert_eq!(Reader::new(&[0x7f]).read_var_u64(), Ok(127));
        assert_eq!(Reader::new(&[0x80, 0x01]).read_var_u64(), Ok(128));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).read_var_u32(),
            Ok(u32::MAX)
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x1f]).read_var_u32(),
            Err(GateError::NumberTooLarge)
        );
        assert_eq!(
            Reader::new(&[0xff; 11]).read_var_u64(),
            Err(GateError::NumberTooLarge)
        );
        assert_eq!(
            Reader::new(&[0x80]).read_var_u64(),
            Err(GateError::Truncated)
        );
    }

    #[test]
    fn counts_and_buffers_never_exceed_the_input() {
        // A count of 2^32 with four bytes left.
        let mut r = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3, 4]);
        assert_eq!(r.read_count(1), Err(GateError::CountTooLarge));
        let mut r = Reader::new(&[5, b'a', b'b']);
        assert_eq!(r.read_buf(), Err(GateError::Truncated));
        let mut r = Reader::new(&[2, 0xc3, 0x28]);
        assert_eq!(r.read_str(), Err(GateError::InvalidUtf8));
    }
}
