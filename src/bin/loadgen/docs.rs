//! Issue 3's doc benchmarks. `load`: how long the first join of an entry whose log
//! holds 100k one-character updates takes (the doc is rebuilt from the log), and the
//! memory that doc holds. `docmem`: resident memory per loaded doc, for empty docs and
//! for docs of 1000 characters, with 10 sockets each joining many entries.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::client::Conn;
use crate::edits::encode_updates;
use crate::harness::{join_room, sync_step1};
use crate::join::{doc_chars, history};
use crate::target::{seed_log, seed_rooms, Target, TargetOptions};

const LOAD_UPDATES: usize = 100_000;

pub async fn load(opts: &TargetOptions) -> anyhow::Result<String> {
    let target = Target::start(opts, &[]).await?;
    let result = measure_load(&target).await;
    target.stop().await;
    result
}

async fn measure_load(target: &Target) -> anyhow::Result<String> {
    let rooms = seed_rooms(&target.db, 2, 2).await?;
    let entry = rooms.entries[0];
    let rows: Vec<Vec<u8>> = encode_updates(0x10ad, LOAD_UPDATES)
        .into_iter()
        .map(|b| b.to_vec())
        .collect();
    seed_log(&target.db, entry, &rows).await?;
    let deadline = Duration::from_secs(120);
    let mut first =
        Conn::connect(target.ws_for(0), &target.token(rooms.users[0]), deadline).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = target.proc.and_then(|p| p.rss_kib());
    let t = Instant::now();
    join_room(&mut first, entry, 1, deadline).await?;
    let first_join = t.elapsed();
    let t = Instant::now();
    let synced = sync_step1(&mut first, entry, 2, deadline).await?;
    let sync = t.elapsed();
    let chars = synced.bins.first().map(|b| doc_chars(b)).unwrap_or(0);
    let mut second =
        Conn::connect(target.ws_for(1), &target.token(rooms.users[1]), deadline).await?;
    let t = Instant::now();
    join_room(&mut second, entry, 1, deadline).await?;
    let warm_join = t.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = target.proc.and_then(|p| p.rss_kib());
    second.close().await;
    first.close().await;
    let mem = rss_before
        .zip(rss_after)
        .map(|(b, a)| format!("{:.1}MiB", a.saturating_sub(b) as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into());
    Ok(format!(
        "load logged_updates={LOAD_UPDATES} chars={chars} first_join={:.0}ms sync_step1={:.0}ms warm_join={:.1}ms doc_rss={mem}",
        first_join.as_secs_f64() * 1e3,
        sync.as_secs_f64() * 1e3,
        warm_join.as_secs_f64() * 1e3,
    ))
}

pub async fn docmem(opts: &TargetOptions, docs: usize) -> anyhow::Result<String> {
    let env = [("RATE_LIMIT_PER_SECOND", "1000000".to_string())];
    let target = Target::start(opts, &env).await?;
    let result = measure_docmem(&target, docs).await;
    target.stop().await;
    result
}

const SOCKETS: usize = 10;

async fn measure_docmem(target: &Target, docs: usize) -> anyhow::Result<String> {
    let rooms = seed_rooms(&target.db, SOCKETS, 1).await?;
    let empty = owned_entries(&target.db, &rooms.users, docs).await?;
    let filled = owned_entries(&target.db, &rooms.users, docs).await?;
    let payload = history(1, 1000).remove(0);
    for entry in &filled {
        seed_log(&target.db, *entry, std::slice::from_ref(&payload)).await?;
    }
    let mut conns = Vec::new();
    for (i, user) in rooms.users.iter().enumerate() {
        conns.push(
            Conn::connect(
                target.ws_for(i),
                &target.token(*user),
                Duration::from_secs(30),
            )
            .await?,
        );
    }
    let mut per_doc = Vec::new();
    for set in [&empty, &filled] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = target.proc.and_then(|p| p.rss_kib());
        let mut ack = 10;
        for (k, entry) in set.iter().enumerate() {
            ack += 1;
            join_room(
                &mut conns[k % SOCKETS],
                *entry,
                ack,
                Duration::from_secs(30),
            )
            .await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = target.proc.and_then(|p| p.rss_kib());
        per_doc.push(
            before
                .zip(after)
                .map(|(b, a)| format!("{:.1}KiB", a.saturating_sub(b) as f64 / set.len() as f64))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
    for conn in conns {
        conn.close().await;
    }
    Ok(format!(
        "docmem docs={docs} sockets={SOCKETS} rss_per_empty_doc={} rss_per_1k_char_doc={} (each includes one member and its room)",
        per_doc[0], per_doc[1]
    ))
}

/// `count` entries owned round-robin by `owners`.
async fn owned_entries(db: &PgPool, owners: &[Uuid], count: usize) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    let by: Vec<Uuid> = (0..count).map(|k| owners[k % owners.len()]).collect();
    sqlx::query("INSERT INTO entries (id, owner_id) SELECT * FROM UNNEST($1::uuid[], $2::uuid[])")
        .bind(&ids)
        .bind(&by)
        .execute(db)
        .await?;
    Ok(ids)
}
