//! Decoding a Yjs v1 update into what the gate's rules need: per client, the clock
//! ranges its structs cover and the ids each one depends on; the delete set's ranges.
//! Content is checked as it is read (see the rules in [`super`]); nothing is kept but
//! clocks and ids.

use std::collections::{HashMap, HashSet};

use super::json::check_json;
use super::lib0::Reader;
use super::{DocState, GateError, ROOT_NAME};

const GC: u8 = 0;
const SKIP: u8 = 10;
const CONTENT_DELETED: u8 = 1;
const CONTENT_STRING: u8 = 4;
const CONTENT_EMBED: u8 = 5;
const CONTENT_FORMAT: u8 = 6;
const CONTENT_MASK: u8 = 0x1f;
const HAS_PARENT_SUB: u8 = 0x20;
const HAS_RIGHT_ORIGIN: u8 = 0x40;
const HAS_ORIGIN: u8 = 0x80;

/// Longest format attribute name (Quill's are words like `bold`, `header`, `link`).
const MAX_FORMAT_KEY_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Id {
    client: u64,
    clock: u32,
}

/// One struct: the clocks `start..end` of its client, and the items it names as
/// its left and right neighbours when it was inserted.
struct Block {
    start: u32,
    end: u32,
    deps: [Option<Id>; 2],
}

struct ClientBlocks {
    client: u64,
    blocks: Vec<Block>,
}

struct DeleteRange {
    client: u64,
    end: u64,
}

/// The update as the rules see it.
struct Parsed {
    clients: Vec<ClientBlocks>,
    deletes: Vec<DeleteRange>,
}

/// Checks one encoded update against every rule, given what the doc already holds.
pub fn check(bytes: &[u8], doc: &DocState) -> Result<(), GateError> {
    let parsed = parse(bytes)?;
    let after = integrate_clocks(&parsed.clients, doc)?;
    for range in &parsed.deletes {
        let known = after
            .get(&range.client)
            .copied()
            .unwrap_or_else(|| doc.clock(range.client));
        if range.end > u64::from(known) {
            return Err(GateError::DeletesUnknown);
        }
    }
    Ok(())
}

fn parse(bytes: &[u8]) -> Result<Parsed, GateError> {
    let mut r = Reader::new(bytes);
    // Each client's header is at least three bytes (count, id, clock).
    let client_count = r.read_count(3)?;
    let mut seen = HashSet::with_capacity(client_count);
    let mut clients = Vec::with_capacity(client_count);
    for _ in 0..client_count {
        // Each struct is at least two bytes (info and one more).
        let block_count = r.read_count(2)?;
        let client = r.read_client()?;
        if !seen.insert(client) {
            return Err(GateError::DuplicateClient);
        }
        if block_count == 0 {
            return Err(GateError::EmptyClient);
        }
        let mut clock = r.read_var_u32()?;
        let mut blocks = Vec::with_capacity(block_count);
        for _ in 0..block_count {
            let (len, deps) = read_struct(&mut r)?;
            let end = clock.checked_add(len).ok_or(GateError::ClockOverflow)?;
            blocks.push(Block {
                start: clock,
                end,
                deps,
            });
            clock = end;
        }
        clients.push(ClientBlocks { client, blocks });
    }
    let deletes = read_delete_set(&mut r)?;
    if !r.is_empty() {
        return Err(GateError::TrailingBytes);
    }
    Ok(Parsed { clients, deletes })
}

/// Reads one struct; returns its clock length and the ids it depends on.
fn read_struct(r: &mut Reader) -> Result<(u32, [Option<Id>; 2]), GateError> {
    let info = r.read_u8()?;
    match info {
        GC => return Ok((positive(r.read_var_u32()?)?, [None, None])),
        SKIP => return Err(GateError::Skip),
        _ => {}
    }
    if info & HAS_PARENT_SUB != 0 {
        return Err(GateError::ParentSub);
    }
    let origin = (info & HAS_ORIGIN != 0).then(|| read_id(r)).transpose()?;
    let right = (info & HAS_RIGHT_ORIGIN != 0)
        .then(|| read_id(r))
        .transpose()?;
    if origin.is_none() && right.is_none() {
        // No neighbours: the parent is written out, and must be the root text.
        if r.read_var_u64()? != 1 {
            return Err(GateError::NestedParent);
        }
        if r.read_str()? != ROOT_NAME {
            return Err(GateError::UnknownRoot);
        }
    }
    let len = match info & CONTENT_MASK {
        CONTENT_DELETED => positive(r.read_var_u32()?)?,
        CONTENT_STRING => {
            let units = r.read_str()?.encode_utf16().count();
            positive(u32::try_from(units).map_err(|_| GateError::ClockOverflow)?)?
        }
        CONTENT_EMBED => {
            check_json(r.read_str()?)?;
            1
        }
        CONTENT_FORMAT => {
            let key = r.read_str()?;
            if key.is_empty() || key.len() > MAX_FORMAT_KEY_BYTES {
                return Err(GateError::BadFormatKey);
            }
            check_json(r.read_str()?)?;
            1
        }
        other => return Err(GateError::ContentNotAllowed(other)),
    };
    Ok((len, [origin, right]))
}

fn read_id(r: &mut Reader) -> Result<Id, GateError> {
    Ok(Id {
        client: r.read_client()?,
        clock: r.read_var_u32()?,
    })
}

fn positive(len: u32) -> Result<u32, GateError> {
    if len == 0 {
        Err(GateError::EmptyStruct)
    } else {
        Ok(len)
    }
}

fn read_delete_set(r: &mut Reader) -> Result<Vec<DeleteRange>, GateError> {
    let client_count = r.read_count(2)?;
    let mut seen = HashSet::with_capacity(client_count);
    let mut deletes = Vec::new();
    for _ in 0..client_count {
        let client = r.read_client()?;
        if !seen.insert(client) {
            return Err(GateError::DuplicateClient);
        }
        let range_count = r.read_count(2)?;
        for _ in 0..range_count {
            let clock = r.read_var_u32()?;
            let len = positive(r.read_var_u32()?)?;
            let end = u64::from(clock) + u64::from(len);
            deletes.push(DeleteRange { client, end });
        }
    }
    Ok(deletes)
}

/// Replays, on clocks alone, the order in which yrs integrates the update's structs
/// (a client's structs in clock order; a struct only once the items it names exist),
/// refusing every case where yrs would instead keep something pending: a struct
/// starting past its client's clock (a gap), or naming an item neither the doc nor
/// the update holds, or a dependency cycle. Returns the clocks after integration, for
/// the clients the update touches.
///
/// Each struct is pushed onto the stack at most once per dependency it unblocks, and
/// a client is on the stack at most once, so the work is linear in the update's size.
fn integrate_clocks(
    clients: &[ClientBlocks],
    doc: &DocState,
) -> Result<HashMap<u64, u32>, GateError> {
    let index: HashMap<u64, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.client, i))
        .collect();
    let mut clocks: HashMap<u64, u32> = HashMap::with_capacity(clients.len());
    let clock_of = |clocks: &HashMap<u64, u32>, client: u64| {
        clocks
            .get(&client)
            .copied()
            .unwrap_or_else(|| doc.clock(client))
    };
    let mut next = vec![0usize; clients.len()];
    let mut on_stack = vec![false; clients.len()];
    let mut stack: Vec<usize> = Vec::new();
    for first in 0..clients.len() {
        while next[first] < clients[first].blocks.len() {
            stack.push(first);
            on_stack[first] = true;
            while let Some(&group) = stack.last() {
                let client = clients[group].client;
                let Some(block) = clients[group].blocks.get(next[group]) else {
                    stack.pop();
                    on_stack[group] = false;
                    continue;
                };
                let current = clock_of(&clocks, client);
                if block.end <= current {
                    // Already known: yrs skips it.
                    next[group] += 1;
                    continue;
                }
                if block.start > current {
                    return Err(GateError::Gap);
                }
                let unmet = block
                    .deps
                    .iter()
                    .flatten()
                    .find(|dep| dep.clock >= clock_of(&clocks, dep.client));
                match unmet {
                    None => {
                        clocks.insert(client, block.end);
                        next[group] += 1;
                        stack.pop();
                        on_stack[group] = false;
                    }
                    Some(dep) => {
                        let provider =
                            *index.get(&dep.client).ok_or(GateError::MissingDependency)?;
                        if on_stack[provider] || next[provider] >= clients[provider].blocks.len() {
                            return Err(GateError::MissingDependency);
                        }
                        stack.push(provider);
                        on_stack[provider] = true;
                    }
                }
            }
        }
    }
    Ok(clocks)
}
