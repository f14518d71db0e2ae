//! Hostile variants of real updates: byte-level (bit flips, overwrites, splices,
//! truncation) and structure-aware (edited varints, swapped client ids and clocks,
//! duplicated client blocks, merged updates, deep values).

use rand::rngs::StdRng;
use rand::Rng;

use super::corpus::{deep_any, deep_embed, duplicate_client, write_var, Corpus};

/// Clients a mutation may swap in: those of the corpus's sessions and a few others.
const CLIENTS: &[u64] = &[100, 8019, 15938, 23857, 7, 0, (1 << 53) - 1, 1 << 53];

pub fn candidate(corpus: &Corpus, rng: &mut StdRng) -> Vec<u8> {
    let mut update = match rng.gen_range(0..100) {
        0..=1 => duplicate_client(),
        2..=3 => deep_any(rng.gen_range(1..128), rng.gen_range(1..20_000)),
        4..=5 => deep_embed(rng.gen_range(1..128), rng.gen_range(1..40)),
        6..=14 => duplicated_block(corpus, rng),
        15..=19 => merged(corpus, rng),
        _ => corpus.any_update(rng).to_vec(),
    };
    let edits = match rng.gen_range(0..10) {
        0 => 0,
        1..=6 => 1,
        _ => rng.gen_range(2..6),
    };
    for _ in 0..edits {
        mutate_once(&mut update, corpus, rng);
    }
    update
}

pub fn mutate_once(update: &mut Vec<u8>, corpus: &Corpus, rng: &mut StdRng) {
    if update.is_empty() {
        update.push(rng.gen());
        return;
    }
    let at = rng.gen_range(0..update.len());
    match rng.gen_range(0..9) {
        0 => update[at] ^= 1 << rng.gen_range(0..8),
        1 => update[at] = rng.gen(),
        2 => {
            // A varint made longer, larger or unterminated.
            let replacement: &[u8] = match rng.gen_range(0..4) {
                0 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                1 => &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                2 => &[0x80],
                _ => &[0x81, 0x00],
            };
            update.splice(at..at + 1, replacement.iter().copied());
        }
        3 => update.truncate(at),
        4 => {
            // Splice: this update's head onto another's tail.
            let other = corpus.any_update(rng);
            let from = rng.gen_range(0..=other.len());
            update.truncate(at);
            update.extend_from_slice(&other[from..]);
        }
        5 => swap_client(update, rng),
        6 => set_clock(update, rng),
        7 => {
            let n = rng.gen_range(1..8);
            for _ in 0..n {
                update.insert(at, rng.gen());
            }
        }
        _ => {
            let end = (at + rng.gen_range(1..8)).min(update.len());
            update.drain(at..end);
        }
    }
}

/// The header of a one-client update: `1, structs, client, clock, ...`. Returns the
/// offsets of the client and clock varints when the update has that shape.
fn header(update: &[u8]) -> Option<(usize, usize, usize)> {
    if update.first() != Some(&1) {
        return None;
    }
    let skip = |mut i: usize| {
        while *update.get(i)? & 0x80 != 0 {
            i += 1;
        }
        Some(i + 1)
    };
    let client = skip(1)?;
    let clock = skip(client)?;
    let rest = skip(clock)?;
    Some((client, clock, rest))
}

fn swap_client(update: &mut Vec<u8>, rng: &mut StdRng) {
    if let Some((client, clock, _)) = header(update) {
        let mut id = Vec::new();
        write_var(&mut id, CLIENTS[rng.gen_range(0..CLIENTS.len())]);
        update.splice(client..clock, id);
    }
}

fn set_clock(update: &mut Vec<u8>, rng: &mut StdRng) {
    if let Some((_, clock, rest)) = header(update) {
        let mut value = Vec::new();
        write_var(&mut value, rng.gen_range(0..64));
        update.splice(clock..rest, value);
    }
}

/// Two one-client updates with empty delete sets joined as one update naming both
/// client blocks, the first crasher's shape (the same client, when it is).
fn duplicated_block(corpus: &Corpus, rng: &mut StdRng) -> Vec<u8> {
    let a = corpus.any_update(rng);
    let b = if rng.gen_bool(0.5) {
        a
    } else {
        corpus.any_update(rng)
    };
    let one_client = |u: &[u8]| u.len() > 2 && u[0] == 1 && u[u.len() - 1] == 0;
    if !one_client(a) || !one_client(b) {
        return a.to_vec();
    }
    let mut out = vec![2];
    out.extend_from_slice(&a[1..a.len() - 1]);
    out.extend_from_slice(&b[1..b.len() - 1]);
    out.push(0);
    if rng.gen_bool(0.3) {
        swap_client(&mut out, rng);
    }
    out
}

/// Updates merged by yrs (several clients in one update; skips where they leave gaps).
fn merged(corpus: &Corpus, rng: &mut StdRng) -> Vec<u8> {
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    let parts: Vec<yrs::Update> = (0..rng.gen_range(2..5))
        .filter_map(|_| yrs::Update::decode_v1(corpus.any_update(rng)).ok())
        .collect();
    yrs::Update::merge_updates(parts).encode_v1()
}
