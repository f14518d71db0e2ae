//! Property tests of the Yjs update path: whatever bytes a client sends, applying them
//! never panics the process, and a refused update leaves the doc as it was.

use diary_realtime::collab::doc::{Applied, EntryDoc};
use proptest::prelude::*;
use yrs::{Doc, Text, Transact};

fn valid_updates() -> Vec<Vec<u8>> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("content");
    let mut updates = Vec::new();
    for (i, chunk) in ["hello", " wörld", " 👋", "!"].iter().enumerate() {
        let mut txn = doc.transact_mut();
        let at = (i as u32).min(text.len(&txn));
        text.insert(&mut txn, at, chunk);
        updates.push(txn.encode_update_v1());
    }
    {
        let mut txn = doc.transact_mut();
        text.remove_range(&mut txn, 1, 2);
        updates.push(txn.encode_update_v1());
    }
    updates
}

fn seeded_doc() -> EntryDoc {
    let mut doc = EntryDoc::new();
    doc.set_version(0);
    for update in valid_updates() {
        doc.apply_update(&update).expect("valid update");
    }
    doc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut doc = seeded_doc();
        let before = (doc.text(), doc.version());
        match doc.apply_update(&bytes) {
            Err(_) => prop_assert_eq!((doc.text(), doc.version()), before),
            Ok(Applied::Unchanged) => prop_assert_eq!(doc.text(), before.0),
            Ok(_) => { let _ = doc.encode_full(); }
        }
    }

    #[test]
    fn mutated_valid_updates_never_panic(
        which in 0usize..5,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut update = valid_updates()[which].clone();
        for (at, byte) in flips {
            let len = update.len();
            update[at % len] = byte;
        }
        update.truncate(cut % (update.len() + 1));
        let mut doc = EntryDoc::new();
        doc.set_version(0);
        let _ = doc.apply_update(&update);
        let _ = doc.text();
        let _ = doc.state_vector();
    }

    #[test]
    fn random_state_vectors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let doc = seeded_doc();
        let _ = doc.diff_since(&bytes);
    }
}
