//! Fuzzing the gate in front of yrs together with yrs's integration, through
//! `EntryDoc::apply_update` (the path every client update takes).
//!
//! Each round loads a doc with a prefix of a real editing session, then offers it
//! hostile candidates (see `mutate.rs`). Oracle, for every case:
//! - the process survives (a crash fails the run: nothing here catches a segfault);
//! - yrs never panics on what the gate admitted (`DocError::Poisoned`);
//! - a refused candidate changes neither text nor version;
//! - after an accepted one the text is valid UTF-8 and the doc encodes and re-decodes;
//! - at the end of the round a fresh doc fed the accepted updates in order accepts
//!   each again and ends with the same text.
//!
//! One case in ten is instead a mutated state vector or awareness update (see
//! `side_inputs.rs`).
//!
//! `cargo test --test fuzz_gate` runs a fixed-seed slice (CI). The campaign:
//! `FUZZ_CASES=1000000 cargo test --release --test fuzz_gate` (`FUZZ_SEED` picks
//! another stream; `FUZZ_TRACE=1` prints each candidate before it is applied, so the
//! last line before a crash is the input that caused it). Figures go to
//! docs/testing.md.

mod corpus;
mod mutate;
mod side_inputs;

use std::time::Instant;

use diary_realtime::collab::doc::{Applied, DocError, EntryDoc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use corpus::Corpus;

const ROUND: usize = 50;

#[derive(Default)]
struct Tally {
    cases: u64,
    changed: u64,
    unchanged: u64,
    refused: u64,
    side_accepted: u64,
    side_refused: u64,
    failures: Vec<String>,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let cases = env_number("FUZZ_CASES", 4000);
    let seed = env_number("FUZZ_SEED", 13);
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let corpus = Corpus::new(&mut rng, 64);
    let seeds = side_inputs::Seeds::new();
    let mut awareness = yrs::sync::awareness::Awareness::new(yrs::Doc::new());
    let mut tally = Tally::default();
    while tally.cases < cases && tally.failures.len() < 10 {
        round(&corpus, &seeds, &mut awareness, &mut rng, &mut tally, cases);
    }
    println!(
        "fuzz_gate: seed {seed}, {} cases in {:.1?}: updates {} changed the doc, {} no-ops, {} refused; \
         state vectors and awareness {} accepted, {} refused; {} failures",
        tally.cases,
        started.elapsed(),
        tally.changed,
        tally.unchanged,
        tally.refused,
        tally.side_accepted,
        tally.side_refused,
        tally.failures.len()
    );
    if !tally.failures.is_empty() {
        for failure in &tally.failures {
            eprintln!("{failure}");
        }
        std::process::exit(1);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn round(
    corpus: &Corpus,
    seeds: &side_inputs::Seeds,
    awareness: &mut yrs::sync::awareness::Awareness,
    rng: &mut StdRng,
    tally: &mut Tally,
    cases: u64,
) {
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    let session = &corpus.sessions[rng.gen_range(0..corpus.sessions.len())];
    let prefix = rng.gen_range(0..=session.len());
    let mut doc = EntryDoc::new();
    doc.set_version(0);
    let mut accepted: Vec<Vec<u8>> = Vec::new();
    for update in &session[..prefix] {
        if let Err(e) = doc.apply_update(update) {
            tally.failures.push(format!(
                "a real editor update was refused ({e}): {}",
                hex(update)
            ));
            return;
        }
        accepted.push(update.clone());
    }
    for _ in 0..ROUND {
        if tally.cases >= cases {
            break;
        }
        tally.cases += 1;
        if rng.gen_range(0..10) == 0 {
            let outcome = if rng.gen_bool(0.5) {
                side_inputs::state_vector_case(&doc, corpus, rng)
            } else {
                side_inputs::awareness_case(awareness, seeds, corpus, rng)
            };
            match outcome {
                Ok(true) => tally.side_accepted += 1,
                Ok(false) => tally.side_refused += 1,
                Err(failure) => {
                    tally.failures.push(failure);
                    return;
                }
            }
            continue;
        }
        let candidate = mutate::candidate(corpus, rng);
        if trace {
            eprintln!("candidate {}", hex(&candidate));
        }
        let before = (doc.checked_text(), doc.version());
        match doc.apply_update(&candidate) {
            Ok(outcome) => {
                match outcome {
                    Applied::Changed { .. } => tally.changed += 1,
                    _ => tally.unchanged += 1,
                }
                if doc.checked_text().is_err() {
                    tally.failures.push(format!(
                        "accepted, then the text is not UTF-8: {}",
                        hex(&candidate)
                    ));
                    return;
                }
                let full = doc.encode_full();
                if EntryDoc::new().apply_update(&full).is_err() {
                    tally.failures.push(format!(
                        "accepted, then the doc does not re-decode: {}",
                        hex(&candidate)
                    ));
                    return;
                }
                accepted.push(candidate);
            }
            Err(DocError::Poisoned) => {
                tally.failures.push(format!(
                    "yrs panicked on an admitted update: {}",
                    hex(&candidate)
                ));
                return;
            }
            Err(_) => {
                tally.refused += 1;
                if (doc.checked_text(), doc.version()) != before {
                    tally
                        .failures
                        .push(format!("refused, yet the doc changed: {}", hex(&candidate)));
                    return;
                }
            }
        }
    }
    let mut fresh = EntryDoc::new();
    for update in &accepted {
        if let Err(e) = fresh.apply_update(update) {
            tally.failures.push(format!(
                "replaying the accepted updates refused one ({e}): {}",
                hex(update)
            ));
            return;
        }
    }
    if fresh.checked_text() != doc.checked_text() {
        let last = accepted.last().map(|u| hex(u)).unwrap_or_default();
        tally.failures.push(format!(
            "a fresh doc rebuilt from the accepted updates differs (last accepted: {last})"
        ));
    }
}
