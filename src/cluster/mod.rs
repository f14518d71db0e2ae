//! Running as one node of a cluster: the Socket.IO adapter shared by every node, and
//! this node's identity and liveness in the shared Redis.

mod adapter;
pub mod node;

pub use adapter::{resp3_client, Adapter, NodeDriver, SocketIo, SocketRef};
pub use node::{NodeId, NodeLink};
