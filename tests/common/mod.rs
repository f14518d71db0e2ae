//! Shared helpers for the Rust integration tests: the real [`Application`] in-process on
//! a free port, with a database of its own (a fresh PostgreSQL database, dropped at the
//! end, or a temp SQLite file), and a `rust_socketio` client that records what arrives.
//!
//! Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use diary_realtime::config::{DatabaseTarget, Settings};
use diary_realtime::ids::UserId;
use diary_realtime::state::AppState;
use diary_realtime::Application;
use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub const SECRET: &str = "rust-test-secret-0123456789abcdef";

fn pg_admin_url() -> String {
    std::env::var("PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Which database a test app gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The database a test app owns; removed when the app stops.
pub enum TestDb {
    Postgres { name: String },
    Sqlite(tempfile::TempDir),
}

impl TestDb {
    pub async fn create(backend: Backend) -> (TestDb, DatabaseTarget) {
        match backend {
            Backend::Postgres => {
                let name = format!(
                    "diary_rtest_{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..16]
                );
                let admin = sqlx::PgPool::connect(&pg_admin_url()).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let url = pg_admin_url()
                    .rsplit_once('/')
                    .map(|(base, _)| format!("{base}/{name}"))
                    .unwrap();
                (TestDb::Postgres { name }, DatabaseTarget::Postgres(url))
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("test.db");
                (TestDb::Sqlite(dir), DatabaseTarget::Sqlite(path))
            }
        }
    }

    pub async fn drop_database(self) {
        if let TestDb::Postgres { name } = self {
            drop_pg_database(&name).await;
        }
    }
}

async fn drop_pg_database(name: &str) {
    let admin = sqlx::PgPool::connect(&pg_admin_url()).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    db: Option<TestDb>,
}

/// Settings for a test app: defaults, the test secret, port 0, and the given database.
pub fn test_settings(database: DatabaseTarget) -> Settings {
    Settings::for_tests(database, SECRET)
}

/// Starts the app with default test settings on a fresh database.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the app on a fresh database, after `configure` adjusted the settings.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (db, target) = TestDb::create(backend).await;
    let mut settings = test_settings(target);
    configure(&mut settings);
    spawn_settings(settings, Some(db)).await
}

/// Starts the app with exactly these settings; `db` is removed when it stops.
pub async fn spawn_settings(settings: Settings, db: Option<TestDb>) -> TestApp {
    let app = Application::build(settings).await.unwrap();
    let addr = app.local_addr().unwrap();
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
        db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A token the app accepts, valid for an hour.
    pub fn token(&self, user: UserId) -> String {
        self.state.keys.mint(user, Duration::from_secs(3600), None)
    }

    /// Stops the server (gracefully; fails if that takes over 10 s), then drops its database.
    pub async fn stop(mut self) {
        self.shutdown().await;
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
    }

    /// Drops the app's PostgreSQL database under it (`WITH (FORCE)` ends its sessions).
    pub async fn drop_database_now(&self) {
        match &self.db {
            Some(TestDb::Postgres { name }) => drop_pg_database(name).await,
            _ => panic!("drop_database_now needs a PostgreSQL app"),
        }
    }

    /// Stops the server and returns how long `run_until` took to return.
    pub async fn shutdown(&mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server did not stop within 10 s")
                .unwrap()
                .unwrap();
        }
        started.elapsed()
    }
}

impl Drop for TestApp {
    /// A test that panicked still removes its PostgreSQL database.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(TestDb::Postgres { name }) = self.db.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Runtime::new() {
                    rt.block_on(drop_pg_database(&name));
                }
            })
            .join();
        }
    }
}

/// What a test client saw: events by name with their first argument. Connection
/// errors arrive as `connect_error` (the message), closing as `close`.
pub struct TestSocket {
    pub client: Client,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        #[allow(deprecated)]
        Payload::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        _ => Value::Null,
    }
}

impl TestApp {
    /// Opens a `rust_socketio` client on namespace `ns` with `auth.token` (none if `None`).
    /// Returns once the engine is open, not once authenticated: use [`TestSocket::next`].
    pub async fn socket(
        &self,
        ns: &str,
        token: Option<&str>,
        transport: TransportType,
    ) -> TestSocket {
        let (tx, events) = mpsc::unbounded_channel();
        let any = tx.clone();
        let errors = tx.clone();
        let closes = tx;
        let mut builder = ClientBuilder::new(self.url("/realtime/ws/"))
            .namespace(ns)
            .transport_type(transport)
            .reconnect(false)
            .on_any(move |event, payload, _| {
                let _ = any.send((event.to_string(), first_value(payload)));
                async {}.boxed()
            })
            .on(Event::Error, move |payload, _| {
                let message = first_value(payload);
                // The server's own `error` events are JSON objects; connection failures
                // are the client's text `Received an ConnectError frame: ...`.
                let name = match &message {
                    Value::String(text) if text.contains("ConnectError") => "connect_error",
                    _ => "error",
                };
                let _ = errors.send((name.to_string(), message));
                async {}.boxed()
            })
            .on(Event::Close, move |_, _| {
                let _ = closes.send(("close".to_string(), Value::Null));
                async {}.boxed()
            });
        if let Some(token) = token {
            builder = builder.auth(json!({ "token": token }));
        }
        let client = builder.connect().await.unwrap();
        TestSocket { client, events }
    }
}

impl TestSocket {
    /// The first argument of the next `event` within `within`, skipping other events.
    pub async fn next(&mut self, event: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((name, value))) if name == event => return Some(value),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Emits `event` with `data` and waits for the ack's first argument.
    pub async fn ask(&self, event: &str, data: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        self.client
            .emit_with_ack(event, data, Duration::from_secs(5), move |payload, _| {
                if let Some(tx) = tx.lock().unwrap().take() {
                    // rust_socketio hands an ack's arguments over as one JSON array.
                    let value = match first_value(payload) {
                        Value::Array(mut args) if !args.is_empty() => args.swap_remove(0),
                        other => other,
                    };
                    let _ = tx.send(value);
                }
                async {}.boxed()
            })
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(6), rx)
            .await
            .expect("no ack within 6 s")
            .unwrap()
    }
}
