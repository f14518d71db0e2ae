//! Entry history (PROTOCOL.md 5.5): listing and reading an entry's checkpoints, and
//! the background task that thins and expires them. Checkpoints are taken by the
//! entry's actor (`collab`), which owns the doc; this module only reads and prunes.

mod error;
pub mod model;
pub mod pruning;
mod service;

pub use error::HistoryError;
pub use model::{CheckpointContent, CheckpointView, PageRequest};
pub use service::HistoryService;
