//! The gate's two other inputs: sync step 1 state vectors (answered with
//! `EntryDoc::diff_since`) and y-protocols awareness updates (applied to a yrs
//! `Awareness`, as `src/collab/awareness.rs` does). Oracle: no crash, and what the gate
//! admits yrs decodes and applies without error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use diary_realtime::collab::doc::EntryDoc;
use diary_realtime::collab::gate::check_awareness;
use rand::rngs::StdRng;
use rand::Rng;
use yrs::sync::awareness::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, Options};

use super::corpus::Corpus;
use super::mutate::mutate_once;

pub struct Seeds {
    awareness: Vec<Vec<u8>>,
}

const STATES: &[&str] = &[
    r##"{"user":{"name":"Alice","color":"#e91e63"}}"##,
    r##"{"user":{"name":"Bob","color":"#3f51b5"},"cursor":{"anchor":{"type":{"client":100,"clock":3},"tname":null,"item":{"client":100,"clock":4},"assoc":0},"head":{"type":null,"tname":"content","item":null,"assoc":-1}}}"##,
    r#"{"typing":true}"#,
];

impl Seeds {
    pub fn new() -> Self {
        let mut awareness = Vec::new();
        for (i, state) in STATES.iter().enumerate() {
            let doc = Doc::with_options(Options {
                client_id: yrs::ClientID::new(100 + i as u64),
                ..Options::default()
            });
            let mut a = Awareness::new(doc);
            a.set_local_state_raw(*state);
            if let Ok(update) = a.update() {
                awareness.push(update.encode_v1());
            }
            a.clean_local_state();
            if let Ok(update) = a.update() {
                awareness.push(update.encode_v1());
            }
        }
        Seeds { awareness }
    }
}

/// One state vector case against `doc`; `Err` describes a failure.
pub fn state_vector_case(
    doc: &EntryDoc,
    corpus: &Corpus,
    rng: &mut StdRng,
) -> Result<bool, String> {
    let mut sv = doc.state_vector();
    for _ in 0..rng.gen_range(0..4) {
        mutate_once(&mut sv, corpus, rng);
    }
    let admitted = diary_realtime::collab::gate::check_state_vector(&sv).is_ok();
    match doc.diff_since(&sv) {
        Ok(_) => Ok(true),
        Err(_) if admitted => Err(format!(
            "a state vector the gate admitted was refused by yrs: {}",
            super::hex(&sv)
        )),
        Err(_) => Ok(false),
    }
}

/// One awareness case against `awareness`; `Ok(true)` when applied.
pub fn awareness_case(
    awareness: &mut Awareness,
    seeds: &Seeds,
    corpus: &Corpus,
    rng: &mut StdRng,
) -> Result<bool, String> {
    let mut update = seeds.awareness[rng.gen_range(0..seeds.awareness.len())].clone();
    for _ in 0..rng.gen_range(0..4) {
        mutate_once(&mut update, corpus, rng);
    }
    let Ok(checked) = check_awareness(&update) else {
        return Ok(false);
    };
    let applied = catch_unwind(AssertUnwindSafe(|| {
        AwarenessUpdate::decode_v1(checked.bytes())
            .map_err(|e| e.to_string())
            .and_then(|u| awareness.apply_update_summary(u).map_err(|e| e.to_string()))
    }));
    match applied {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => Err(format!(
            "an awareness update the gate admitted failed in yrs ({e}): {}",
            super::hex(&update)
        )),
        Err(_) => Err(format!(
            "yrs panicked on an admitted awareness update: {}",
            super::hex(&update)
        )),
    }
}
