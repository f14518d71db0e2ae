//! Sync step 1 state vectors: `count, (client, clock) * count`.

use std::collections::HashSet;

use super::lib0::Reader;
use super::GateError;

pub fn check(bytes: &[u8]) -> Result<(), GateError> {
    let mut r = Reader::new(bytes);
    let count = r.read_count(2)?;
    let mut seen = HashSet::with_capacity(count);
    for _ in 0..count {
        if !seen.insert(r.read_client()?) {
            return Err(GateError::DuplicateClient);
        }
        r.read_var_u32()?;
    }
    if !r.is_empty() {
        return Err(GateError::TrailingBytes);
    }
    Ok(())
}
