//! The gate against real editor output (accepted) and hostile input (refused).

use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Any, Doc, GetString, Options, ReadTxn, StateVector, Text, Transact, Update};

use super::*;

/// The first crasher of issue 13: client 7 twice, overlapping clocks.
pub(crate) const DUPLICATE_CLIENT: &str =
    "02010700040107636f6e74656e7403616263010701040107636f6e74656e7402646500";

pub(crate) fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The second crasher: an `Any` value nested `depth` arrays deep in the root text.
pub(crate) fn deep_any(depth: usize) -> Vec<u8> {
    let mut bytes = vec![1, 1, 7, 0, 8, 1, 7];
    bytes.extend_from_slice(b"content");
    bytes.push(1);
    for _ in 0..depth {
        bytes.extend_from_slice(&[0x75, 0x01]);
    }
    bytes.extend_from_slice(&[0x7e, 0x00]);
    bytes
}

fn doc_with(client: u64) -> Doc {
    Doc::with_options(Options {
        client_id: yrs::ClientID::new(client),
        ..Options::default()
    })
}

fn state_of(doc: &Doc) -> DocState {
    DocState::new(
        doc.transact()
            .state_vector()
            .iter()
            .map(|(c, k)| (c.get(), *k)),
    )
}

/// Edits as editors make them, from two clients: inserts (with emoji), formats, an
/// embed, deletes. Returns each transaction's update in order.
fn editor_session() -> Vec<Vec<u8>> {
    let a = doc_with(1);
    let b = doc_with(2);
    let (ta, tb) = (
        a.get_or_insert_text("content"),
        b.get_or_insert_text("content"),
    );
    let mut updates = Vec::new();
    let on_a = |f: &dyn Fn(&mut yrs::TransactionMut)| {
        let mut txn = a.transact_mut();
        f(&mut txn);
        let u = txn.encode_update_v1();
        drop(txn);
        let mut bt = b.transact_mut();
        bt.apply_update(Update::decode_v1(&u).unwrap()).unwrap();
        u
    };
    updates.push(on_a(&|txn| ta.insert(txn, 0, "Dear diary, héllo 👋")));
    updates.push(on_a(&|txn| {
        let attrs = yrs::types::Attrs::from([("bold".into(), Any::Bool(true))]);
        ta.format(txn, 0, 4, attrs)
    }));
    updates.push(on_a(&|txn| {
        ta.insert_embed(
            txn,
            5,
            Any::from(std::collections::HashMap::from([(
                "image".to_string(),
                Any::from("https://example.org/a.png"),
            )])),
        );
    }));
    updates.push(on_a(&|txn| ta.remove_range(txn, 1, 3)));
    let mut txn = b.transact_mut();
    tb.insert(&mut txn, 2, "[b]");
    updates.push(txn.encode_update_v1());
    updates
}

#[test]
fn editor_updates_pass_in_order() {
    let target = Doc::new();
    for update in editor_session() {
        let checked = check_update(&update, &state_of(&target)).expect("editor update");
        let mut txn = target.transact_mut();
        txn.apply_update(Update::decode_v1(checked.bytes()).unwrap())
            .unwrap();
    }
    assert!(!target.transact().has_missing_updates());
}

#[test]
fn a_full_state_and_an_empty_update_pass() {
    let source = doc_with(1);
    let text = source.get_or_insert_text("content");
    for update in editor_session() {
        source
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
    }
    let full = source
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    assert!(check_update(&full, &DocState::default()).is_ok());
    assert!(check_update(&[0, 0], &DocState::default()).is_ok());
    assert!(!text.get_string(&source.transact()).is_empty());
}

#[test]
fn the_issue_crashers_are_refused() {
    assert_eq!(
        check_update(&hex(DUPLICATE_CLIENT), &DocState::default()).map(|_| ()),
        Err(GateError::DuplicateClient)
    );
    assert_eq!(
        check_update(&deep_any(10_000), &DocState::default()).map(|_| ()),
        Err(GateError::ContentNotAllowed(8))
    );
}

#[test]
fn updates_ahead_of_the_doc_are_refused() {
    let updates = editor_session();
    // The format names text the empty doc lacks.
    assert_eq!(
        check_update(&updates[1], &DocState::default()).map(|_| ()),
        Err(GateError::Gap)
    );
    // Client 2's insert sits between client 1's characters.
    assert_eq!(
        check_update(&updates[4], &DocState::default()).map(|_| ()),
        Err(GateError::MissingDependency)
    );
    // Deleting characters the doc does not hold.
    let mut delete_only = vec![0, 1, 1, 1, 0, 3];
    assert_eq!(
        check_update(&delete_only, &DocState::default()).map(|_| ()),
        Err(GateError::DeletesUnknown)
    );
    delete_only[5] = 2;
    assert!(check_update(&delete_only, &DocState::new([(1, 2)])).is_ok());
}

fn root_item(content: &[u8]) -> Vec<u8> {
    let mut bytes = vec![1, 1, 9, 0];
    bytes.extend_from_slice(content);
    bytes
}

#[test]
fn content_outside_the_schema_is_refused() {
    let mut other_root = vec![1, 1, 9, 0, 4, 1, 5];
    other_root.extend_from_slice(b"title");
    other_root.extend_from_slice(&[1, b'x', 0]);
    assert_eq!(
        check_update(&other_root, &DocState::default()).map(|_| ()),
        Err(GateError::UnknownRoot)
    );
    let with_parent = |kind: u8, rest: &[u8]| {
        let mut b = vec![kind, 1, 7];
        b.extend_from_slice(b"content");
        b.extend_from_slice(rest);
        root_item(&b)
    };
    // Type (a nested Y.Map), binary, JSON, doc.
    for (kind, rest) in [
        (7u8, &[1u8, 0][..]),
        (3, &[1, 0xff, 0][..]),
        (2, &[1, 1, b'1', 0][..]),
        (9, &[1, b'g', 0x7e, 0][..]),
    ] {
        assert_eq!(
            check_update(&with_parent(kind, rest), &DocState::default()).map(|_| ()),
            Err(GateError::ContentNotAllowed(kind))
        );
    }
    // A skip, a map key, a nested parent.
    assert_eq!(
        check_update(&root_item(&[10, 3, 0]), &DocState::default()).map(|_| ()),
        Err(GateError::Skip)
    );
    assert_eq!(
        check_update(
            &with_parent(0x24, &[1, b'k', 1, b'x', 0]),
            &DocState::default()
        )
        .map(|_| ()),
        Err(GateError::ParentSub)
    );
    assert_eq!(
        check_update(&root_item(&[4, 0, 5, 0, 1, b'x', 0]), &DocState::default()).map(|_| ()),
        Err(GateError::NestedParent)
    );
}

#[test]
fn deep_or_bad_json_in_formats_and_embeds_is_refused() {
    let embed = |json: &str| {
        let mut b = vec![5, 1, 7];
        b.extend_from_slice(b"content");
        b.push(json.len() as u8);
        b.extend_from_slice(json.as_bytes());
        b.push(0);
        root_item(&b)
    };
    assert!(check_update(&embed(r#"{"image":"a.png"}"#), &DocState::default()).is_ok());
    let deep = "[".repeat(20) + &"]".repeat(20);
    assert_eq!(
        check_update(&embed(&deep), &DocState::default()).map(|_| ()),
        Err(GateError::TooDeep)
    );
    assert_eq!(
        check_update(&embed("{"), &DocState::default()).map(|_| ()),
        Err(GateError::BadJson)
    );
}

#[test]
fn lying_counts_and_trailing_bytes_are_refused_without_allocating() {
    // Four billion clients, then four billion structs, in a few bytes.
    for bytes in [
        &[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3][..],
        &[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 7, 0, 4][..],
        &[0, 1, 7, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
    ] {
        assert_eq!(
            check_update(bytes, &DocState::default()).map(|_| ()),
            Err(GateError::CountTooLarge)
        );
    }
    assert_eq!(
        check_update(&[0, 0, 0], &DocState::default()).map(|_| ()),
        Err(GateError::TrailingBytes)
    );
    // A clock that would overflow.
    let mut b = vec![1, 1, 7, 0xff, 0xff, 0xff, 0xff, 0x0f, 4, 1, 7];
    b.extend_from_slice(b"content");
    b.extend_from_slice(&[1, b'x', 0]);
    assert_eq!(
        check_update(&b, &DocState::default()).map(|_| ()),
        Err(GateError::ClockOverflow)
    );
}

#[test]
fn dependency_cycles_are_refused() {
    // Client 1's item has client 2's as left neighbour, and client 2's has client 1's.
    let bytes = [
        2, 1, 1, 0, 0x84, 2, 0, 1, b'x', 1, 2, 0, 0x84, 1, 0, 1, b'y', 0,
    ];
    assert_eq!(
        check_update(&bytes, &DocState::default()).map(|_| ()),
        Err(GateError::MissingDependency)
    );
}

#[test]
fn state_vectors_and_awareness_are_checked() {
    let sv = StateVector::from_iter([(yrs::ClientID::new(3), 5)]).encode_v1();
    assert!(check_state_vector(&sv).is_ok());
    assert_eq!(
        check_state_vector(&[2, 3, 5, 3, 6]).map(|_| ()),
        Err(GateError::DuplicateClient)
    );
    assert_eq!(
        check_state_vector(&[1, 3, 0xff, 0xff, 0xff, 0xff, 0x1f]).map(|_| ()),
        Err(GateError::NumberTooLarge)
    );
    let state = br#"{"user":{"name":"a"}}"#;
    let mut ok = vec![1, 3, 1, state.len() as u8];
    ok.extend_from_slice(state);
    assert!(check_awareness(&ok).is_ok());
    let deep = "[".repeat(17) + &"]".repeat(17);
    let mut bad = vec![1, 3, 1, deep.len() as u8];
    bad.extend_from_slice(deep.as_bytes());
    assert_eq!(check_awareness(&bad).map(|_| ()), Err(GateError::TooDeep));
}
