//! The notification inbox (PROTOCOL.md section 6).
//!
//! - [`model`]: the domain types and the parsing of client input into them;
//! - [`service`]: the operations and the pushes that follow each change;
//! - [`fanout`]: how an event reaches every socket of a user (all namespaces);
//! - [`listener`]: on Postgres, the task that delivers every row inserted into
//!   `notifications`, by this server or by any other program.
//!
//! Delivery has one path per backend. Postgres: the insert's NOTIFY reaches the
//! listener, which loads the row and fans it out, for REST- and SQL-created rows alike.
//! SQLite (no NOTIFY): `POST /api/notifications` pushes right after its insert, and rows
//! other programs write into the file are not pushed (they are listed).

pub mod fanout;
pub mod listener;
pub mod model;
pub mod service;

pub use fanout::{Fanout, SocketIoFanout};
pub use listener::NotificationListener;
pub use service::NotificationService;
