//! y-protocols awareness updates: `count, (client, clock, JSON state) * count`, a
//! state of `null` meaning the client left.

use std::collections::HashSet;

use super::json::check_json;
use super::lib0::Reader;
use super::GateError;

/// Most clients one awareness update may describe. A y-socket.io client echoes the
/// states of everyone in the room, so this is a bound on a room, not on a user.
pub const MAX_AWARENESS_CLIENTS: usize = 1024;

/// Largest single awareness state (a name, a colour, a cursor: well under 1 KiB).
pub const MAX_AWARENESS_STATE_BYTES: usize = 16 << 10;

pub fn check(bytes: &[u8]) -> Result<(), GateError> {
    let mut r = Reader::new(bytes);
    // Each entry is at least three bytes (client, clock, an empty string's length).
    let count = r.read_count(3)?;
    if count > MAX_AWARENESS_CLIENTS {
        return Err(GateError::CountTooLarge);
    }
    let mut seen = HashSet::with_capacity(count);
    for _ in 0..count {
        if !seen.insert(r.read_client()?) {
            return Err(GateError::DuplicateClient);
        }
        r.read_var_u32()?;
        let state = r.read_str()?;
        if state.len() > MAX_AWARENESS_STATE_BYTES {
            return Err(GateError::TooLarge);
        }
        check_json(state)?;
    }
    if !r.is_empty() {
        return Err(GateError::TrailingBytes);
    }
    Ok(())
}
