//! Seeds: what real editors send. Several clients edit one `content` text (inserts of
//! ASCII, accented, CJK and emoji text, deletes, Quill formats, embeds), each update
//! reaching the others, in the order the server receives them; sync answers (a
//! client's whole state past a state vector); and the two crashers of issue 13.

use rand::rngs::StdRng;
use rand::Rng;
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::{Any, Doc, OffsetKind, Options, ReadTxn, Text, Transact, Update};

/// One editing session: updates in the order the server receives them. Each applies
/// cleanly to a doc holding the ones before it.
pub type Session = Vec<Vec<u8>>;

pub struct Corpus {
    pub sessions: Vec<Session>,
}

const SNIPPETS: &[&str] = &[
    "a",
    "Dear diary",
    " ",
    "héllo",
    "naïve café",
    "日記",
    "👋",
    "🏳️‍🌈",
    "x\ny",
    "\n",
    "😀😀",
];

impl Corpus {
    pub fn new(rng: &mut StdRng, sessions: usize) -> Self {
        Corpus {
            sessions: (0..sessions).map(|_| session(rng)).collect(),
        }
    }

    pub fn any_update<'a>(&'a self, rng: &mut StdRng) -> &'a [u8] {
        let session = &self.sessions[rng.gen_range(0..self.sessions.len())];
        &session[rng.gen_range(0..session.len())]
    }
}

/// The first crasher: client 7 twice, overlapping clocks.
pub fn duplicate_client() -> Vec<u8> {
    hex("02010700040107636f6e74656e7403616263010701040107636f6e74656e7402646500")
}

/// The second crasher's shape, at any depth: an `Any` value nested `depth` arrays deep.
pub fn deep_any(client: u8, depth: usize) -> Vec<u8> {
    let mut bytes = vec![1, 1, client & 0x7f, 0, 8, 1, 7];
    bytes.extend_from_slice(b"content");
    bytes.push(1);
    for _ in 0..depth {
        bytes.extend_from_slice(&[0x75, 0x01]);
    }
    bytes.extend_from_slice(&[0x7e, 0x00]);
    bytes
}

/// An embed whose JSON value nests `depth` deep (well formed otherwise).
pub fn deep_embed(client: u8, depth: usize) -> Vec<u8> {
    let json = "[".repeat(depth) + &"]".repeat(depth);
    let mut bytes = vec![1, 1, client & 0x7f, 0, 5, 1, 7];
    bytes.extend_from_slice(b"content");
    write_var(&mut bytes, json.len() as u64);
    bytes.extend_from_slice(json.as_bytes());
    bytes.push(0);
    bytes
}

pub fn write_var(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn session(rng: &mut StdRng) -> Session {
    let clients: Vec<Doc> = (0..rng.gen_range(1..=4))
        .map(|i| {
            Doc::with_options(Options {
                client_id: yrs::ClientID::new(100 + i as u64 * 7919),
                offset_kind: OffsetKind::Utf16,
                ..Options::default()
            })
        })
        .collect();
    let texts: Vec<_> = clients
        .iter()
        .map(|d| d.get_or_insert_text("content"))
        .collect();
    let mut updates: Session = Vec::new();
    // Updates each client has not received yet (delivery lags, so edits are concurrent).
    let mut inbox: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients.len()];
    for _ in 0..rng.gen_range(4..40) {
        let who = rng.gen_range(0..clients.len());
        if rng.gen_bool(0.6) {
            for update in inbox[who].drain(..) {
                if let Ok(u) = Update::decode_v1(&update) {
                    let _ = clients[who].transact_mut().apply_update(u);
                }
            }
        }
        let (doc, text) = (&clients[who], &texts[who]);
        let update = {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            match rng.gen_range(0..10) {
                0..=4 => {
                    let at = rng.gen_range(0..=len);
                    let snippet = SNIPPETS[rng.gen_range(0..SNIPPETS.len())];
                    if rng.gen_bool(0.3) {
                        let attrs = Attrs::from([("bold".into(), Any::Bool(true))]);
                        text.insert_with_attributes(&mut txn, at, snippet, attrs);
                    } else {
                        text.insert(&mut txn, at, snippet);
                    }
                }
                5 | 6 if len > 0 => {
                    let at = rng.gen_range(0..len);
                    let n = rng.gen_range(1..=(len - at).min(6));
                    text.remove_range(&mut txn, at, n);
                }
                7 if len > 0 => {
                    let at = rng.gen_range(0..len);
                    let n = rng.gen_range(1..=(len - at));
                    let (key, value) = match rng.gen_range(0..4) {
                        0 => ("italic", Any::Bool(true)),
                        1 => ("header", Any::from(2.0)),
                        2 => ("link", Any::from("https://example.org/")),
                        _ => ("bold", Any::Null),
                    };
                    text.format(&mut txn, at, n, Attrs::from([(key.into(), value)]));
                }
                8 => {
                    let at = rng.gen_range(0..=len);
                    let embed = Any::from(std::collections::HashMap::from([(
                        "image".to_string(),
                        Any::from("https://example.org/a.png"),
                    )]));
                    text.insert_embed(&mut txn, at, embed);
                }
                _ => {}
            }
            txn.encode_update_v1()
        };
        if update.len() <= 2 {
            continue;
        }
        for (other, pending) in inbox.iter_mut().enumerate() {
            if other != who {
                pending.push(update.clone());
            }
        }
        updates.push(update);
    }
    // A client's sync answer: all it holds, as a reconnecting editor sends it.
    if let Some(doc) = clients.first() {
        let full = doc
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        updates.push(full);
    }
    if updates.is_empty() {
        updates.push(vec![0, 0]);
    }
    updates
}
