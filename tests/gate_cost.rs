//! What the gate in front of yrs costs per update, next to what yrs's own apply
//! costs, for the three shapes that matter: a keystroke, a 1 KiB paste, a sync
//! answer (a reconnecting editor's whole state). Prints a table; asserts nothing
//! about time (figures belong in BENCHMARKS.md, not in a test's pass/fail).
//!
//! `cargo test --release --test gate_cost` (pin it: `taskset -c 1`).

use std::hint::black_box;
use std::time::Instant;

use diary_realtime::collab::doc::EntryDoc;
use diary_realtime::collab::gate::{check_update, DocState};
use yrs::updates::decoder::Decode;
use yrs::{Doc, OffsetKind, Options, ReadTxn, StateVector, Text, Transact, Update};

fn editor(client: u64) -> Doc {
    Doc::with_options(Options {
        client_id: yrs::ClientID::new(client),
        offset_kind: OffsetKind::Utf16,
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

/// A doc three editors wrote (`edits` inserts and deletes), and the update that
/// brings it there.
fn history(edits: u32) -> Vec<u8> {
    let docs: Vec<Doc> = (1..=3).map(editor).collect();
    let texts: Vec<_> = docs
        .iter()
        .map(|d| d.get_or_insert_text("content"))
        .collect();
    for i in 0..edits {
        let who = (i % 3) as usize;
        let update = {
            let mut txn = docs[who].transact_mut();
            let len = texts[who].len(&txn);
            if i % 7 == 6 && len > 4 {
                texts[who].remove_range(&mut txn, len / 2, 2);
            } else {
                texts[who].insert(&mut txn, (i * 31) % (len + 1), "diary ");
            }
            txn.encode_update_v1()
        };
        for (other, doc) in docs.iter().enumerate() {
            if other != who {
                let u = Update::decode_v1(&update).expect("own update");
                doc.transact_mut().apply_update(u).expect("apply");
            }
        }
    }
    let txn = docs[0].transact();
    txn.encode_state_as_update_v1(&StateVector::default())
}

struct Case {
    name: &'static str,
    base: Vec<u8>,
    update: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let base = history(300);
    let next = |text: &str| {
        let doc = editor(1);
        let t = doc.get_or_insert_text("content");
        doc.transact_mut()
            .apply_update(Update::decode_v1(&base).expect("base"))
            .expect("apply");
        let mut txn = doc.transact_mut();
        let at = t.len(&txn) / 2;
        t.insert(&mut txn, at, text);
        txn.encode_update_v1()
    };
    vec![
        Case {
            name: "keystroke (1 char)",
            base: base.clone(),
            update: next("x"),
        },
        Case {
            name: "paste (1 KiB)",
            base: base.clone(),
            update: next(&"Dear diary, today ".repeat(57)),
        },
        Case {
            name: "sync answer (300 edits, 3 editors)",
            base: vec![0, 0],
            update: base,
        },
    ]
}

fn per_op(iterations: u32, started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
}

fn main() {
    // Debug-build figures mean nothing; `cargo test` still runs this, briefly, so it
    // keeps compiling and running.
    let n: u32 = if cfg!(debug_assertions) { 20 } else { 2000 };
    println!(
        "| update | bytes | gate (us) | yrs decode+apply (us) | EntryDoc::apply_update (us) |"
    );
    println!("|---|---|---|---|---|");
    for case in cases() {
        let base_doc = || {
            let doc = editor(99);
            doc.get_or_insert_text("content");
            doc.transact_mut()
                .apply_update(Update::decode_v1(&case.base).expect("base"))
                .expect("apply");
            doc
        };
        // Gate: building its view of the doc (the state vector) and checking.
        let doc = base_doc();
        let started = Instant::now();
        for _ in 0..n {
            let state = state_of(&doc);
            black_box(check_update(black_box(&case.update), &state).is_ok());
        }
        let gate = per_op(n, started);
        // yrs alone, each time on a fresh copy of the base doc.
        let docs: Vec<Doc> = (0..n).map(|_| base_doc()).collect();
        let started = Instant::now();
        for doc in &docs {
            let u = Update::decode_v1(&case.update).expect("update");
            doc.transact_mut().apply_update(u).expect("apply");
        }
        let yrs = per_op(n, started);
        drop(docs);
        // The server's whole path for an update.
        let mut entries: Vec<EntryDoc> = (0..n)
            .map(|_| {
                let mut d = EntryDoc::new();
                d.apply_update(&case.base).expect("base");
                d
            })
            .collect();
        let started = Instant::now();
        for entry in &mut entries {
            black_box(entry.apply_update(&case.update).is_ok());
        }
        let whole = per_op(n, started);
        println!(
            "| {} | {} | {gate:.2} | {yrs:.2} | {whole:.2} |",
            case.name,
            case.update.len()
        );
    }
}
