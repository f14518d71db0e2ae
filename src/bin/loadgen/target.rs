//! The server under test: one the load generator starts (the release binary, pinned to
//! its own core, on a fresh Postgres database dropped afterwards) or servers given by
//! URL. Also seeds the rows the scenarios need (users, entries, collaborators, logs).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use diary_realtime::auth::JwtKeys;
use diary_realtime::ids::UserId;
use rand::Rng;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Executor;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::client::ws_url;
use crate::metrics::ServerProc;

/// How to reach (or start) the server, from the command line.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// Servers given by URL (`http://host:port`); empty: start one.
    pub urls: Vec<String>,
    /// Postgres server for the databases we create (started server), or the database
    /// the given servers use (to seed rows).
    pub database_url: String,
    pub jwt_secret: String,
    pub server_bin: PathBuf,
    /// Pid of a given server, to read its memory and CPU.
    pub server_pid: Option<u32>,
    /// CPU list for the started server (`taskset -c`); empty: no pinning.
    pub server_cpus: String,
}

/// A running target for one scenario run.
pub struct Target {
    pub http: Vec<String>,
    pub ws: Vec<String>,
    pub proc: Option<ServerProc>,
    pub db: PgPool,
    keys: JwtKeys,
    started: Option<Started>,
}

struct Started {
    child: Child,
    admin_url: String,
    database: String,
}

impl Target {
    /// Starts a server (with extra environment `env`) or connects to the given ones.
    pub async fn start(opts: &TargetOptions, env: &[(&str, String)]) -> anyhow::Result<Target> {
        let keys = JwtKeys::new(&opts.jwt_secret);
        if !opts.urls.is_empty() {
            let db = PgPoolOptions::new()
                .max_connections(4)
                .connect(&opts.database_url)
                .await
                .context("connecting to the target's database")?;
            return Ok(Target {
                http: opts.urls.clone(),
                ws: opts.urls.iter().map(|u| ws_url(u)).collect(),
                proc: opts.server_pid.map(|pid| ServerProc { pid }),
                db,
                keys,
                started: None,
            });
        }
        let database = format!("loadgen_{:016x}", rand::thread_rng().gen::<u64>());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&opts.database_url)
            .await
            .context("connecting to Postgres")?;
        admin
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await?;
        admin.close().await;
        let db_url = with_database(&opts.database_url, &database)?;
        let port = free_port()?;
        let mut cmd = if opts.server_cpus.is_empty() {
            Command::new(&opts.server_bin)
        } else {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(&opts.server_cpus).arg(&opts.server_bin);
            c
        };
        cmd.env("DATABASE_URL", &db_url)
            .env("JWT_SECRET", &opts.jwt_secret)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", opts.server_bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("server exited at once"))?;
        let started = Started {
            child,
            admin_url: opts.database_url.clone(),
            database,
        };
        let mut target = Target {
            http: vec![format!("http://127.0.0.1:{port}")],
            ws: vec![ws_url(&format!("http://127.0.0.1:{port}"))],
            proc: Some(ServerProc { pid }),
            db: PgPoolOptions::new()
                .max_connections(4)
                .connect_lazy(&db_url)?,
            keys,
            started: Some(started),
        };
        if let Err(e) = target.wait_listening(port).await {
            target.stop().await;
            return Err(e);
        }
        Ok(target)
    }

    /// Waits until the server answers HTTP: it binds its port before it opens the
    /// database, so a port that accepts connections is not yet a server that is ready.
    async fn wait_listening(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if answers_http(port).await {
                return Ok(());
            }
            if let Some(s) = &mut self.started {
                if let Ok(Some(status)) = s.child.try_wait() {
                    bail!("server exited during start-up: {status}");
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("server did not listen within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The engine URL client `i` uses: targets are shared round-robin.
    pub fn ws_for(&self, i: usize) -> &str {
        &self.ws[i % self.ws.len()]
    }

    pub fn token(&self, user: Uuid) -> String {
        self.keys
            .mint(UserId(user), Duration::from_secs(3600), None)
    }

    /// Stops a started server (SIGTERM, then kill) and drops its database.
    pub async fn stop(mut self) {
        self.db.close().await;
        let Some(mut s) = self.started.take() else {
            return;
        };
        if let Some(pid) = s.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), s.child.wait())
            .await
            .is_err()
        {
            let _ = s.child.kill().await;
        }
        if let Ok(admin) = PgPoolOptions::new()
            .max_connections(1)
            .connect(&s.admin_url)
            .await
        {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", s.database);
            if let Err(e) = admin.execute(sql.as_str()).await {
                eprintln!("warning: could not drop {}: {e}", s.database);
            }
            admin.close().await;
        }
    }
}

/// `postgres://u@h:p/olddb?x` with the database replaced.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .ok_or_else(|| anyhow!("bad database URL"))?
        + 3;
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Clients in rooms: client `i` is user `users[i]`, in room `i / room_size`, whose
/// entry is owned by the room's first client; the others are editors.
#[derive(Debug, Clone)]
pub struct Rooms {
    pub users: Vec<Uuid>,
    pub entries: Vec<Uuid>,
    pub room_size: usize,
}

impl Rooms {
    pub fn room_of(&self, client: usize) -> usize {
        client / self.room_size
    }

    /// The clients of a room.
    pub fn members(&self, room: usize) -> std::ops::Range<usize> {
        let start = room * self.room_size;
        start..(start + self.room_size).min(self.users.len())
    }
}

/// Inserts `clients` users and their rooms' entries and collaborator rows.
pub async fn seed_rooms(db: &PgPool, clients: usize, room_size: usize) -> anyhow::Result<Rooms> {
    let room_size = room_size.max(1);
    let users: Vec<Uuid> = (0..clients).map(|_| Uuid::new_v4()).collect();
    let rooms = clients.div_ceil(room_size);
    let entries: Vec<Uuid> = (0..rooms).map(|_| Uuid::new_v4()).collect();
    let names: Vec<String> = users.iter().map(|u| format!("lg_{}", u.simple())).collect();
    sqlx::query("INSERT INTO users (id, username) SELECT * FROM UNNEST($1::uuid[], $2::text[])")
        .bind(&users)
        .bind(&names)
        .execute(db)
        .await?;
    let owners: Vec<Uuid> = (0..rooms).map(|r| users[r * room_size]).collect();
    sqlx::query("INSERT INTO entries (id, owner_id) SELECT * FROM UNNEST($1::uuid[], $2::uuid[])")
        .bind(&entries)
        .bind(&owners)
        .execute(db)
        .await?;
    let (collab_entries, collab_users): (Vec<Uuid>, Vec<Uuid>) = (0..clients)
        .filter(|i| i % room_size != 0)
        .map(|i| (entries[i / room_size], users[i]))
        .unzip();
    sqlx::query(
        "INSERT INTO entry_collaborators (entry_id, user_id, role)
         SELECT e, u, 'editor' FROM UNNEST($1::uuid[], $2::uuid[]) AS t(e, u)",
    )
    .bind(&collab_entries)
    .bind(&collab_users)
    .execute(db)
    .await?;
    Ok(Rooms {
        users,
        entries,
        room_size,
    })
}

/// Appends `payloads` to an entry's update log as rows 1..=n (one version each).
pub async fn seed_log(db: &PgPool, entry: Uuid, payloads: &[Vec<u8>]) -> anyhow::Result<()> {
    for (chunk_no, chunk) in payloads.chunks(5000).enumerate() {
        let first = (chunk_no * 5000) as i64 + 1;
        let seqs: Vec<i64> = (0..chunk.len() as i64).map(|i| first + i).collect();
        let ids: Vec<Uuid> = vec![entry; chunk.len()];
        let payloads: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        sqlx::query(
            "INSERT INTO entry_updates (entry_id, seq, version, payload)
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $2::bigint[], $3::bytea[])",
        )
        .bind(&ids)
        .bind(&seqs)
        .bind(&payloads)
        .execute(db)
        .await?;
    }
    Ok(())
}

/// Gives every entry of `entries` the same log `payloads`: written once, then copied
/// inside Postgres (a storm of 500 entries of 5,000 rows seeds in seconds).
pub async fn seed_log_copies(
    db: &PgPool,
    entries: &[Uuid],
    payloads: &[Vec<u8>],
) -> anyhow::Result<()> {
    let Some((first, rest)) = entries.split_first() else {
        return Ok(());
    };
    seed_log(db, *first, payloads).await?;
    sqlx::query(
        "INSERT INTO entry_updates (entry_id, seq, version, payload)
         SELECT e, u.seq, u.version, u.payload
         FROM entry_updates u, UNNEST($1::uuid[]) AS t(e) WHERE u.entry_id = $2",
    )
    .bind(rest)
    .bind(first)
    .execute(db)
    .await?;
    Ok(())
}

/// Whether a server on `port` answers `GET /health` (with any status) within a second.
async fn answers_http(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut first)).await,
        Ok(Ok(1))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://h?sslmode=disable", "x").unwrap(),
            "postgres://h/x?sslmode=disable"
        );
    }
}
