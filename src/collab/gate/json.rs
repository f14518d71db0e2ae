//! JSON values embedded in updates (format attributes, embeds) and awareness states.
//!
//! yrs and serde_json parse JSON recursively, so nesting depth is checked first by a
//! single loop over the text that counts brackets outside strings: no recursion, no
//! allocation, whatever the input. Only then is the text parsed (to refuse what is not
//! JSON at all), with the depth already known to be small.

use serde::de::IgnoredAny;

use super::GateError;

/// Deepest nesting of arrays and objects accepted. Quill formats and embeds nest two
/// or three levels; awareness states (user, cursor with relative positions) four.
pub const MAX_JSON_DEPTH: usize = 16;

/// Checks that `text` is one JSON value nested at most [`MAX_JSON_DEPTH`] deep.
pub fn check_json(text: &str) -> Result<(), GateError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(GateError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|_| GateError::BadJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_json_passes_deep_json_is_refused_without_recursion() {
        assert_eq!(check_json(r#"{"bold":true}"#), Ok(()));
        assert_eq!(
            check_json(r#"{"image":"data:[[[[[[[[[[[[[[[[[[[[\""}"#),
            Ok(())
        );
        assert_eq!(check_json("null"), Ok(()));
        let deep = "[".repeat(17) + &"]".repeat(17);
        assert_eq!(check_json(&deep), Err(GateError::TooDeep));
        let very_deep = "[".repeat(1_000_000);
        assert_eq!(check_json(&very_deep), Err(GateError::TooDeep));
        assert_eq!(check_json("{bold}"), Err(GateError::BadJson));
        assert_eq!(check_json(""), Err(GateError::BadJson));
    }
}
