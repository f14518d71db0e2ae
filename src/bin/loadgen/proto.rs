//! Engine.IO v4 / Socket.IO v5 framing, as much of it as the load generator speaks:
//! events and acks on the default namespace, with binary attachments. Packets here
//! are Socket.IO packets; the Engine.IO `4` (message) prefix is added when sent.

/// One Socket.IO packet as received (the Engine.IO `4` prefix already removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// `0` connect, `2` event, `3` ack, `4` connect error, `5` binary event, `6` binary ack.
    pub kind: u8,
    pub attachments: usize,
    pub id: Option<u64>,
    /// The JSON array (or object for connect packets), as text.
    pub json: &'a str,
}

/// Parses a Socket.IO packet; `None` for anything malformed. A namespace prefix
/// (`/ns,`) is skipped: the load generator only uses the default namespace.
pub fn parse(text: &str) -> Option<Packet<'_>> {
    let bytes = text.as_bytes();
    let kind = bytes.first()?.checked_sub(b'0')?;
    let mut i = 1;
    let mut attachments = 0;
    if kind == 5 || kind == 6 {
        let dash = text[i..].find('-')? + i;
        attachments = text[i..dash].parse().ok()?;
        i = dash + 1;
    }
    if bytes.get(i) == Some(&b'/') {
        i = text[i..]
            .find(',')
            .map(|c| c + i + 1)
            .unwrap_or(bytes.len());
    }
    let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let id = if digits > 0 {
        text[i..i + digits].parse().ok()
    } else {
        None
    };
    Some(Packet {
        kind,
        attachments,
        id,
        json: &text[i + digits..],
    })
}

/// `2[<id>]["name",<payload>]`: an event with a JSON payload.
pub fn event(name: &str, payload: &str, ack: Option<u64>) -> String {
    match ack {
        Some(id) => format!("2{id}[\"{name}\",{payload}]"),
        None => format!("2[\"{name}\",{payload}]"),
    }
}

/// The placeholder Socket.IO puts where attachment `num` goes.
pub const PLACEHOLDER0: &str = "{\"_placeholder\":true,\"num\":0}";

/// `51-[<id>]["name",<payload>]`: an event whose payload holds one attachment
/// ([`PLACEHOLDER0`]), sent as the next (binary) WebSocket message.
pub fn binary_event(name: &str, payload: &str, ack: Option<u64>) -> String {
    match ack {
        Some(id) => format!("51-{id}[\"{name}\",{payload}]"),
        None => format!("51-[\"{name}\",{payload}]"),
    }
}

/// `61-<id>[<placeholder>]`: an ack whose only argument is one binary attachment.
pub fn binary_ack(id: u64) -> String {
    format!("61-{id}[{PLACEHOLDER0}]")
}

/// The event name of an event packet's JSON array: `["name",...`.
pub fn event_name(json: &str) -> Option<&str> {
    let rest = json.strip_prefix("[\"")?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// The payload of `["name",<payload>]` as text.
pub fn event_payload(json: &str) -> Option<&str> {
    let name = event_name(json)?;
    let rest = json.get(name.len() + 4..)?;
    rest.strip_suffix(']')
}

/// Reads the first struct block's (client, clock) of a Yjs v1 update: which client
/// wrote it and where it starts. Each update the load generator sends inserts one
/// character, so this names the sender (client id) and its sequence number (clock).
pub fn yjs_update_id(update: &[u8]) -> Option<(u64, u64)> {
    let mut pos = 0;
    let mut next = || read_var_u64(update, &mut pos);
    let clients = next()?;
    if clients == 0 {
        return None;
    }
    let _structs = next()?;
    let client = next()?;
    let clock = next()?;
    Some((client, clock))
}

fn read_var_u64(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_acks_and_binary() {
        let p = parse("2[\"a\",1]").unwrap();
        assert_eq!((p.kind, p.id, p.json), (2, None, "[\"a\",1]"));
        let p = parse("312[{\"ok\":true}]").unwrap();
        assert_eq!((p.kind, p.id, p.json), (3, Some(12), "[{\"ok\":true}]"));
        let p = parse("51-7[\"x\",{}]").unwrap();
        assert_eq!((p.kind, p.attachments, p.id), (5, 1, Some(7)));
        let p = parse("0/ns,{\"sid\":\"s\"}").unwrap();
        assert_eq!((p.kind, p.json), (0, "{\"sid\":\"s\"}"));
        assert_eq!(event_name("[\"entry_update\",{}]"), Some("entry_update"));
        assert_eq!(event_payload("[\"e\",{\"a\":1}]"), Some("{\"a\":1}"));
        assert!(parse("").is_none());
    }

    #[test]
    fn reads_yjs_update_ids() {
        use yrs::{Doc, GetString, Text, Transact};
        let doc = Doc::with_client_id(4242);
        let text = doc.get_or_insert_text("content");
        let mut last = Vec::new();
        for _ in 0..3 {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            text.insert(&mut txn, len, "a");
            last = txn.encode_update_v1();
        }
        assert_eq!(text.get_string(&doc.transact()), "aaa");
        assert_eq!(yjs_update_id(&last), Some((4242, 2)));
    }
}
