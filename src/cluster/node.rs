//! This process's identity among the nodes of a cluster.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A node's id, random per process start: a restarted node is a new node, so nothing
/// another node remembers about the old one (viewers, awareness) is mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId(Uuid);

impl NodeId {
    pub fn random() -> Self {
        NodeId(Uuid::new_v4())
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
