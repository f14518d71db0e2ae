//! Awareness (cursors, names, selections of Yjs editors) for one entry: the latest
//! state per Yjs client id, and who sent it (a local member, or another node), so a
//! member's states can be removed, and the removal broadcast, when it leaves, and a
//! dead node's when it goes quiet.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::sync::awareness::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc};

use super::command::MemberId;
use super::doc::{self, DocError};
use super::gate;
use crate::cluster::node::NodeId;

/// Where awareness states came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Member(MemberId),
    /// Relayed by another node's replica.
    Node(NodeId),
}

pub struct AwarenessStates {
    awareness: Awareness,
    owners: HashMap<ClientID, Owner>,
}

impl AwarenessStates {
    pub fn new() -> Self {
        Self {
            // Awareness needs a doc of its own; only its client id is used, for
            // nothing (states here are all remote).
            awareness: Awareness::new(Doc::new()),
            owners: HashMap::new(),
        }
    }

    /// Applies a y-protocols awareness update sent by `from`. Returns whether it
    /// changed any state; an error if it is malformed (only a well-formed update is
    /// relayed). `from` owns the states it changed, not those it merely repeated: a
    /// y-socket.io client echoes the states it receives, and must not take them over.
    pub fn apply(&mut self, from: &Owner, bytes: &[u8]) -> Result<bool, DocError> {
        let checked = gate::check_awareness(bytes).map_err(doc::refused)?;
        let update = catch_unwind(|| AwarenessUpdate::decode_v1(checked.bytes()))
            .map_err(|_| DocError::MalformedUpdate)?
            .map_err(|_| DocError::MalformedUpdate)?;
        let summary = catch_unwind(AssertUnwindSafe(|| {
            self.awareness.apply_update_summary(update)
        }))
        .map_err(|_| DocError::MalformedUpdate)?
        .map_err(|_| DocError::MalformedUpdate)?;
        let Some(summary) = summary else {
            return Ok(false);
        };
        for client in summary.added.iter().chain(&summary.updated) {
            self.owners.insert(*client, from.clone());
        }
        for client in &summary.removed {
            self.owners.remove(client);
        }
        Ok(true)
    }

    /// Removes every state `owner` sent; returns the encoded removal to broadcast.
    pub fn remove(&mut self, owner: &Owner) -> Option<Vec<u8>> {
        let clients: Vec<ClientID> = self
            .owners
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(client, _)| *client)
            .collect();
        if clients.is_empty() {
            return None;
        }
        for client in &clients {
            self.owners.remove(client);
            self.awareness.remove_state(*client);
        }
        self.awareness
            .update_with_clients(clients)
            .ok()
            .map(|u| u.encode_v1())
    }

    /// Every live state, for a member that just synced.
    pub fn full_update(&self) -> Option<Vec<u8>> {
        let update = self.awareness.update().ok()?;
        (!update.clients.is_empty()).then(|| update.encode_v1())
    }
}

impl Default for AwarenessStates {
    fn default() -> Self {
        Self::new()
    }
}
