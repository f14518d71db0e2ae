//! EntryDoc: updates, deltas against current and stale bases, the gate's refusals.

use super::*;

fn update_inserting(text: &str) -> Vec<u8> {
    let doc = Doc::new();
    let t = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    t.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

#[test]
fn applies_counts_and_reports_deltas() {
    let mut doc = EntryDoc::new();
    let update = update_inserting("héllo 👋");
    match doc.apply_update(&update).unwrap() {
        Applied::Changed { delta, .. } => assert_eq!(delta.ops.len(), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(doc.version(), 1);
    assert!(matches!(
        doc.apply_update(&update).unwrap(),
        Applied::Unchanged
    ));
    assert_eq!(doc.version(), 1);
    assert_eq!(doc.text(), "héllo 👋");
}

#[test]
fn hostile_bytes_are_refused() {
    let mut doc = EntryDoc::new();
    doc.apply_update(&update_inserting("keep")).unwrap();
    for bad in [
        &b""[..],
        &[0xff; 64][..],
        &[1, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9][..],
    ] {
        let _ = doc.apply_update(bad);
    }
    assert_eq!(doc.text(), "keep");
}

fn ops(json: serde_json::Value) -> Vec<QuillOp> {
    serde_json::from_value(json).unwrap()
}

#[test]
fn deltas_apply_and_bad_ones_change_nothing() {
    let mut doc = EntryDoc::new();
    doc.set_version(0);
    doc.apply_delta(&ops(serde_json::json!([{"insert": "hello world"}])), None)
        .unwrap();
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 6}, {"retain": 5, "attributes": {"bold": true}}])),
        Some(1),
    )
    .unwrap();
    assert_eq!(doc.version(), 2);
    for bad in [
        serde_json::json!([{"retain": 12}]),
        serde_json::json!([{"delete": 20}]),
        serde_json::json!([{"retain": 0}, {"retain": 12}]),
        serde_json::json!([{"insert": ""}]),
        serde_json::json!([{"insert": 5}]),
    ] {
        assert!(doc.apply_delta(&ops(bad), None).is_err());
    }
    assert!(doc
        .apply_delta(&ops(serde_json::json!([{"insert": "x"}])), Some(9))
        .is_err());
    assert_eq!(doc.text(), "hello world");
    assert_eq!(doc.version(), 2);
}

#[test]
fn zero_length_retains_and_deletes_are_no_ops() {
    let mut doc = EntryDoc::new();
    doc.set_version(0);
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 0}, {"insert": "ab"}])),
        None,
    )
    .unwrap();
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 1}, {"delete": 0}, {"insert": "X"}, {"retain": 0}])),
        None,
    )
    .unwrap();
    assert_eq!(doc.text(), "aXb");
    assert_eq!(doc.version(), 2);
    assert!(matches!(
        doc.apply_delta(
            &ops(serde_json::json!([{"retain": 0}, {"delete": 0}])),
            None
        ),
        Ok(Applied::Unchanged)
    ));
    assert_eq!(doc.version(), 2);
    // Stale bases take the same path.
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 0}, {"insert": "<"}])),
        Some(1),
    )
    .unwrap();
    assert_eq!(doc.text(), "<aXb");
}

#[test]
fn stale_base_sees_text_deleted_since() {
    let mut doc = EntryDoc::new();
    doc.set_version(0);
    doc.apply_delta(&ops(serde_json::json!([{"insert": "abcdef"}])), None)
        .unwrap();
    // Version 2 deletes "b"; a client still at version 1 deletes "e".
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 1}, {"delete": 1}])),
        None,
    )
    .unwrap();
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 4}, {"delete": 1}])),
        Some(1),
    )
    .unwrap();
    assert_eq!(doc.text(), "acdf");
}

#[test]
fn stale_base_deltas_merge_through_the_crdt() {
    let mut doc = EntryDoc::new();
    doc.set_version(0);
    doc.apply_delta(&ops(serde_json::json!([{"insert": "abcdef"}])), None)
        .unwrap();
    // Two clients at version 1: one inserts at the start, one deletes "ef".
    doc.apply_delta(&ops(serde_json::json!([{"insert": "X"}])), Some(1))
        .unwrap();
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 4}, {"delete": 2}])),
        Some(1),
    )
    .unwrap();
    assert_eq!(doc.text(), "Xabcd");
    // Two inserts at one position, both kept.
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 3}, {"insert": "1"}])),
        Some(3),
    )
    .unwrap();
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 3}, {"insert": "2"}])),
        Some(3),
    )
    .unwrap();
    let text = doc.text();
    assert!(text == "Xab12cd" || text == "Xab21cd", "{text}");
    // Version 0 is still in the history.
    assert!(doc
        .apply_delta(&ops(serde_json::json!([{"insert": "x"}])), Some(0))
        .is_ok());
}

#[test]
fn updates_with_missing_dependencies_are_refused_until_they_arrive() {
    let source = Doc::new();
    let t = source.get_or_insert_text("content");
    let first = {
        let mut txn = source.transact_mut();
        t.insert(&mut txn, 0, "a");
        txn.encode_update_v1()
    };
    let second = {
        let mut txn = source.transact_mut();
        t.insert(&mut txn, 1, "b");
        txn.encode_update_v1()
    };
    let mut doc = EntryDoc::new();
    assert!(matches!(
        doc.apply_update(&second),
        Err(DocError::Refused(GateError::Gap))
    ));
    assert!(!doc.has_pending());
    assert_eq!(doc.version(), 0);
    assert!(matches!(
        doc.apply_update(&first).unwrap(),
        Applied::Changed { .. }
    ));
    assert!(matches!(
        doc.apply_update(&second).unwrap(),
        Applied::Changed { .. }
    ));
    assert_eq!(doc.text(), "ab");
    assert!(!doc.has_pending());
}

#[test]
fn stale_base_across_a_squashed_insert() {
    // The insert at version 4 extends a block written before version 3; rebuilding
    // version 3 must cut that block where version 3 ended.
    let mut doc = EntryDoc::new();
    doc.set_version(0);
    doc.apply_delta(
        &ops(serde_json::json!([{"insert": "The quick brown fox"}])),
        None,
    )
    .unwrap();
    doc.apply_delta(&ops(serde_json::json!([{"insert": ">> "}])), Some(1))
        .unwrap();
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 16}, {"delete": 3}])),
        Some(1),
    )
    .unwrap();
    assert_eq!(doc.text(), ">> The quick brown ");
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 3}, {"insert": "[a]"}])),
        Some(3),
    )
    .unwrap();
    doc.apply_delta(
        &ops(serde_json::json!([{"retain": 3}, {"insert": "[b]"}])),
        Some(3),
    )
    .unwrap();
    assert_eq!(doc.text(), ">> [a][b]The quick brown ");
}

#[test]
fn a_later_stale_insert_goes_right_of_the_concurrent_one() {
    for _ in 0..20 {
        let mut doc = EntryDoc::new();
        doc.set_version(0);
        doc.apply_delta(&ops(serde_json::json!([{"insert": "abcd"}])), None)
            .unwrap();
        for (i, mark) in ["1", "2", "3"].iter().enumerate() {
            doc.apply_delta(
                &ops(serde_json::json!([{"retain": 2}, {"insert": mark}])),
                Some(1),
            )
            .unwrap();
            assert_eq!(doc.version(), 2 + i as u64);
        }
        assert_eq!(doc.text(), "ab123cd");
    }
}

#[test]
fn stored_rows_the_gate_refuses_are_skipped_and_the_rest_load() {
    let source = Doc::new();
    let t = source.get_or_insert_text("content");
    let edit = |at: u32, s: &str| {
        let mut txn = source.transact_mut();
        t.insert(&mut txn, at, s);
        txn.encode_update_v1()
    };
    let (first, second, third) = (edit(0, "ab"), edit(2, "cd"), edit(4, "ef"));
    let hostile = crate::collab::gate::tests::hex(crate::collab::gate::tests::DUPLICATE_CLIENT);
    let mut doc = EntryDoc::new();
    // `third` was stored before `second` (yrs kept it pending then): it waits for it.
    let skipped = doc
        .restore_all([
            (StoredRow::Snapshot { upto_seq: 1 }, &first[..]),
            (StoredRow::Log { seq: 2 }, &hostile[..]),
            (StoredRow::Log { seq: 3 }, &third[..]),
            (StoredRow::Log { seq: 4 }, &second[..]),
            (StoredRow::Log { seq: 5 }, &[0xff, 0xff][..]),
        ])
        .unwrap();
    assert_eq!(doc.text(), "abcdef");
    let rows: Vec<StoredRow> = skipped.iter().map(|(row, _)| *row).collect();
    assert_eq!(rows, [StoredRow::Log { seq: 2 }, StoredRow::Log { seq: 5 }]);
    assert!(!doc.has_pending());
}

#[test]
fn a_row_whose_dependencies_never_arrive_is_skipped() {
    let source = Doc::new();
    let t = source.get_or_insert_text("content");
    let edit = |at: u32, s: &str| {
        let mut txn = source.transact_mut();
        t.insert(&mut txn, at, s);
        txn.encode_update_v1()
    };
    let (_lost, later) = (edit(0, "ab"), edit(2, "cd"));
    let mut doc = EntryDoc::new();
    let skipped = doc
        .restore_all([(StoredRow::Log { seq: 1 }, &later[..])])
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(matches!(skipped[0].1, DocError::Refused(GateError::Gap)));
    assert_eq!(doc.text(), "");
}
