//! Quill deltas <-> the entry's `Y.Text`. Indices are UTF-16 code units, as in
//! JavaScript, because the doc is created with `OffsetKind::Utf16`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use yrs::any::Number;
use yrs::types::text::{Diff, YChange};
use yrs::types::{Attrs, Delta};
use yrs::{Any, Out};

/// One Quill delta operation, as clients send and receive it. Unknown keys are
/// refused: an op like `{retain: 3, delete: 'x'}` or `{retain: 2, frobnicate: 1}` is not
/// something the client meant as a plain retain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum QuillOp {
    Insert {
        insert: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attributes: Option<Map<String, Value>>,
    },
    Delete {
        delete: u32,
    },
    Retain {
        retain: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attributes: Option<Map<String, Value>>,
    },
}

/// `{ops: [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuillDelta {
    pub ops: Vec<QuillOp>,
}

/// The change a yrs text event describes, as a Quill delta.
pub fn from_text_event(delta: &[Delta]) -> QuillDelta {
    let ops = delta
        .iter()
        .map(|d| match d {
            Delta::Inserted(value, attrs) => QuillOp::Insert {
                insert: out_to_json(value),
                attributes: attrs.as_deref().map(attrs_to_json),
            },
            Delta::Deleted(len) => QuillOp::Delete { delete: *len },
            Delta::Retain(len, attrs) => QuillOp::Retain {
                retain: *len,
                attributes: attrs.as_deref().map(attrs_to_json),
            },
        })
        .collect();
    QuillDelta { ops }
}

/// The whole text as a Quill delta of inserts.
pub fn from_diff(diff: Vec<Diff<YChange>>) -> QuillDelta {
    QuillDelta {
        ops: diff
            .into_iter()
            .map(|d| QuillOp::Insert {
                insert: out_to_json(&d.insert),
                attributes: d.attributes.as_deref().map(attrs_to_json),
            })
            .collect(),
    }
}

fn out_to_json(value: &Out) -> Value {
    match value {
        Out::Any(Any::String(s)) => Value::String(s.to_string()),
        Out::Any(any) => any_to_json(any),
        // Nested shared types never appear in the entry text; render them as text.
        other => Value::String(other.to_string()),
    }
}

fn attrs_to_json(attrs: &Attrs) -> Map<String, Value> {
    attrs
        .iter()
        .map(|(k, v)| (k.to_string(), any_to_json(v)))
        .collect()
}

pub(crate) fn any_to_json(any: &Any) -> Value {
    serde_json::to_value(any).unwrap_or(Value::Null)
}

pub(crate) fn json_to_any(value: &Value) -> Any {
    match value {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(*b),
        Value::Number(n) => Any::Number(match n.as_i64() {
            Some(i) => Number::Int(i),
            None => Number::Float(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Any::String(s.as_str().into()),
        Value::Array(items) => Any::Array(items.iter().map(json_to_any).collect()),
        Value::Object(map) => Any::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_any(v)))
                .collect::<std::collections::HashMap<_, _>>()
                .into(),
        ),
    }
}

/// Quill attributes as yrs attributes (`null` removes a format).
pub(crate) fn json_to_attrs(map: &Map<String, Value>) -> Attrs {
    map.iter()
        .map(|(k, v)| (k.as_str().into(), json_to_any(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_parse_strictly() {
        let ok: Vec<QuillOp> = serde_json::from_str(
            r#"[{"insert":"a","attributes":{"bold":true}},{"retain":2,"attributes":{"bold":null}},{"delete":1},{"insert":{"image":"x"}}]"#,
        )
        .unwrap();
        assert_eq!(ok.len(), 4);
        for bad in [
            r#"[{"retain":3,"delete":"x"}]"#,
            r#"[{"retain":3,"delete":2}]"#,
            r#"[{"delete":2,"attributes":{}}]"#,
            r#"[{"retain":2,"frobnicate":1}]"#,
            r#"[{"retain":"x"}]"#,
            r#"[{"retain":-1}]"#,
            r#"[{"retain":1.5}]"#,
            r#"[{}]"#,
        ] {
            assert!(serde_json::from_str::<Vec<QuillOp>>(bad).is_err(), "{bad}");
        }
    }
}
