//! PostgreSQL storage: the production backend. It alone can hear rows other programs
//! insert (LISTEN/NOTIFY).

mod directory;
mod entries;
mod history;
mod notification_feed;
mod notifications;
mod presence;

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::StoreResult;

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
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
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
