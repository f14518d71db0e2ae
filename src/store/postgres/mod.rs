//! PostgreSQL storage: the production backend. It alone can hear rows other programs
//! insert (LISTEN/NOTIFY).

mod directory;
mod entries;
mod history;
mod notification_feed;
mod notifications;
mod presence;

use std::time::Duration;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{log_opened, StoreResult, APPLIED_MIGRATIONS};

/// A pool on a PostgreSQL database whose schema is up to date.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    url: String,
}

impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let applied = || sqlx::query_scalar::<_, i64>(APPLIED_MIGRATIONS).fetch_one(&pool);
        let before = applied().await.unwrap_or(0);
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        log_opened("postgres", &describe(url), before, applied().await?);
        Ok(Self {
            pool,
            url: url.to_string(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The connection string, for the LISTEN connections that live outside the pool.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `host:port/database` from a connection string, leaving out user and password.
fn describe(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => "?".into(),
    }
}
