//! The notification inbox (PROTOCOL.md section 6).
//!
//! - [`model`]: the domain types and the parsing of client input into them;
//! - [`service`]: the operations and the pushes that follow each change;
//! - pushes reach a user's sockets through [`crate::fanout::Fanout`] as
//!   [`crate::fanout::Topic::Inbox`] traffic (the main namespaces and `/notifications`);
//! - [`listener`]: on Postgres, the task that delivers every row inserted into
//!   `notifications`, by this server or by any other program.
//!
//! Delivery has one path per backend. Postgres: the insert's NOTIFY reaches the
//! listener, which loads the row and fans it out, for REST- and SQL-created rows alike.
//! SQLite (no NOTIFY): `POST /api/notifications` pushes right after its insert, and rows
//! other programs write into the file are not pushed (they are listed).
//!
//! In a cluster (`REDIS_URL`, always Postgres) each change reaches each socket once by
//! one of two rules ([`crate::fanout::Reach`]), never both:
//! - new rows: every process's listener hears the NOTIFY (REST and SQL inserts alike)
//!   and pushes `notification:created` and the count to its own sockets (`.local()`).
//!   Chosen over "one process pushes cluster-wide" because every process hears the
//!   announcement anyway, no one has to be elected, and each listener's catch-up
//!   after a lost connection covers exactly the sockets it serves;
//! - client actions (mark read, archive, mark all read): only the process serving the
//!   request knows, so it pushes `notification:updated` and the count cluster-wide
//!   through the adapter.

pub mod error;
pub mod listener;
pub mod model;
pub mod service;

pub use error::{NotificationError, ParseError};
pub use service::NotificationService;
