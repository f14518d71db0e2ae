//! Running as one node of a cluster: the Socket.IO adapter shared by every node.

mod adapter;
pub mod node;

pub use adapter::{resp3_client, Adapter, NodeDriver, SocketIo, SocketRef};
