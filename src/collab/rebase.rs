//! Rebasing a Quill delta over changes made since its base version: quill-delta's
//! `transform`, with the change already applied taking priority (its inserts stay
//! left on ties, its formats win). This is the rewrite a Quill client does to the
//! changes it receives while its own edit is unacknowledged, so a delta client's model
//! and the server's text agree by construction.
//!
//! Lengths are UTF-16 code units, as in JavaScript. Only retains and deletes are ever
//! split; inserts are taken whole.

use serde_json::{Map, Value};

use super::delta::QuillOp;

/// `ours` rewritten to apply after `applied`, which happened first.
pub fn over(applied: &[QuillOp], ours: &[QuillOp]) -> Vec<QuillOp> {
    let mut theirs = Ops::new(applied);
    let mut mine = Ops::new(ours);
    let mut out: Vec<QuillOp> = Vec::new();
    while theirs.has_next() || mine.has_next() {
        if theirs.peek_is_insert() {
            // Their insert goes first; ours keeps its place after it.
            let n = theirs.take_insert_len();
            push(
                &mut out,
                QuillOp::Retain {
                    retain: n,
                    attributes: None,
                },
            );
        } else if mine.peek_is_insert() {
            if let Some(op) = mine.take_insert() {
                push(&mut out, op);
            }
        } else {
            let n = theirs.peek_len().min(mine.peek_len());
            let (their, my) = (theirs.take(n), mine.take(n));
            match (their, my) {
                // Text they deleted: whatever we did to it is moot.
                (Piece::Delete, _) => {}
                (_, Piece::Delete) => push(&mut out, QuillOp::Delete { delete: n }),
                (Piece::Retain(theirs), Piece::Retain(mine)) => push(
                    &mut out,
                    QuillOp::Retain {
                        retain: n,
                        attributes: formats_after(theirs.as_ref(), mine),
                    },
                ),
            }
        }
    }
    while matches!(
        out.last(),
        Some(QuillOp::Retain {
            attributes: None,
            ..
        })
    ) {
        out.pop();
    }
    out
}

/// Our formats, less those they set on the same text (theirs came first and wins).
fn formats_after(
    theirs: Option<&Map<String, Value>>,
    mine: Option<Map<String, Value>>,
) -> Option<Map<String, Value>> {
    let mine = mine?;
    let Some(theirs) = theirs else {
        return Some(mine);
    };
    let kept: Map<String, Value> = mine
        .into_iter()
        .filter(|(k, _)| !theirs.contains_key(k))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// Appends, merging with a plain retain or delete just before it.
fn push(out: &mut Vec<QuillOp>, op: QuillOp) {
    match (out.last_mut(), &op) {
        (_, QuillOp::Retain { retain: 0, .. } | QuillOp::Delete { delete: 0 }) => {}
        (
            Some(QuillOp::Retain {
                retain: a,
                attributes: None,
            }),
            QuillOp::Retain {
                retain: b,
                attributes: None,
            },
        )
        | (Some(QuillOp::Delete { delete: a }), QuillOp::Delete { delete: b }) => *a += b,
        _ => out.push(op),
    }
}

/// A piece of a retain or delete.
enum Piece {
    Retain(Option<Map<String, Value>>),
    Delete,
}

/// Walks ops, splitting retains and deletes (quill-delta's `OpIterator`). Past the end
/// it yields an endless plain retain.
struct Ops<'a> {
    ops: &'a [QuillOp],
    index: usize,
    offset: u32,
}

impl<'a> Ops<'a> {
    fn new(ops: &'a [QuillOp]) -> Self {
        Self {
            ops,
            index: 0,
            offset: 0,
        }
    }

    fn has_next(&self) -> bool {
        self.index < self.ops.len()
    }

    fn peek_is_insert(&self) -> bool {
        matches!(self.ops.get(self.index), Some(QuillOp::Insert { .. }))
    }

    fn peek_len(&self) -> u32 {
        match self.ops.get(self.index) {
            Some(QuillOp::Retain { retain: n, .. } | QuillOp::Delete { delete: n }) => {
                n - self.offset
            }
            Some(QuillOp::Insert { insert, .. }) => insert_len(insert),
            None => u32::MAX,
        }
    }

    fn take_insert_len(&mut self) -> u32 {
        let n = self.peek_len();
        self.index += 1;
        n
    }

    fn take_insert(&mut self) -> Option<QuillOp> {
        let op = self.ops.get(self.index).cloned();
        self.index += 1;
        op
    }

    /// The next `n` units of a retain or delete (`n` <= `peek_len`).
    fn take(&mut self, n: u32) -> Piece {
        let Some(op) = self.ops.get(self.index) else {
            return Piece::Retain(None);
        };
        let piece = match op {
            QuillOp::Delete { .. } => Piece::Delete,
            QuillOp::Retain { attributes, .. } => Piece::Retain(attributes.clone()),
            QuillOp::Insert { .. } => Piece::Retain(None),
        };
        if n >= self.peek_len() {
            self.index += 1;
            self.offset = 0;
        } else {
            self.offset += n;
        }
        piece
    }
}

/// An insert's length: a string's UTF-16 units, or 1 for an embed.
fn insert_len(insert: &Value) -> u32 {
    match insert {
        Value::String(s) => u32::try_from(s.encode_utf16().count()).unwrap_or(u32::MAX),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(json: serde_json::Value) -> Vec<QuillOp> {
        serde_json::from_value(json).unwrap()
    }

    fn apply(text: &str, delta: &[QuillOp]) -> String {
        let units: Vec<u16> = text.encode_utf16().collect();
        let mut out: Vec<u16> = Vec::new();
        let mut at = 0usize;
        for op in delta {
            match op {
                QuillOp::Insert {
                    insert: Value::String(s),
                    ..
                } => out.extend(s.encode_utf16()),
                QuillOp::Insert { .. } => out.push(0xFFFC),
                QuillOp::Retain { retain, .. } => {
                    out.extend(&units[at..at + *retain as usize]);
                    at += *retain as usize;
                }
                QuillOp::Delete { delete } => at += *delete as usize,
            }
        }
        out.extend(&units[at..]);
        String::from_utf16(&out).unwrap()
    }

    #[test]
    fn concurrent_edits_commute_with_the_first_one_left() {
        let base = "abcdef";
        let cases = [
            // Two inserts at one spot: theirs (first) stays left.
            (
                serde_json::json!([{"retain": 2}, {"insert": "T"}]),
                serde_json::json!([{"retain": 2}, {"insert": "M"}]),
                "abTMcdef",
            ),
            // Our insert inside text they deleted lands where it was.
            (
                serde_json::json!([{"retain": 1}, {"delete": 3}]),
                serde_json::json!([{"retain": 2}, {"insert": "M"}]),
                "aMef",
            ),
            // Overlapping deletes delete once.
            (
                serde_json::json!([{"retain": 1}, {"delete": 3}]),
                serde_json::json!([{"retain": 2}, {"delete": 3}]),
                "af",
            ),
            // Their insert inside the range we delete survives.
            (
                serde_json::json!([{"retain": 3}, {"insert": "T"}]),
                serde_json::json!([{"retain": 2}, {"delete": 2}]),
                "abTef",
            ),
        ];
        for (theirs, mine, expected) in cases {
            let (theirs, mine) = (ops(theirs), ops(mine));
            let rebased = over(&theirs, &mine);
            assert_eq!(
                apply(&apply(base, &theirs), &rebased),
                expected,
                "{rebased:?}"
            );
        }
    }

    #[test]
    fn their_format_wins_and_lengths_count_utf16() {
        let theirs =
            ops(serde_json::json!([{"insert": "👋"}, {"retain": 3, "attributes": {"bold": true}}]));
        let mine = ops(
            serde_json::json!([{"retain": 3, "attributes": {"bold": null, "italic": true}}, {"insert": "!"}]),
        );
        assert_eq!(
            over(&theirs, &mine),
            ops(
                serde_json::json!([{"retain": 2}, {"retain": 3, "attributes": {"italic": true}}, {"insert": "!"}])
            )
        );
    }
}
