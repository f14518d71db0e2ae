//! `join`: a reconnect storm. N sockets connect at once, join rooms of 10 and sync a
//! doc with 100k characters of history (100 logged updates of 1000 characters).
//! Reports the time until every socket holds the whole doc, and failures.

use std::sync::Arc;
use std::time::Duration;

use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Text, Transact, Update};

use crate::harness::{self, sync_step1};
use crate::idle::errors_suffix;
use crate::metrics;
use crate::target::{seed_log, seed_rooms, Target, TargetOptions};

/// Characters of history per doc, and how they are split into logged updates.
pub const HISTORY_CHARS: usize = 100_000;
const HISTORY_ROWS: usize = 100;

/// `rows` updates of `chars_per_row` characters each, written by one Yjs client.
pub fn history(rows: usize, chars_per_row: usize) -> Vec<Vec<u8>> {
    let doc = Doc::with_client_id(0x5eed);
    let text = doc.get_or_insert_text("content");
    let chunk = "x".repeat(chars_per_row);
    (0..rows)
        .map(|_| {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            text.insert(&mut txn, len, &chunk);
            txn.encode_update_v1()
        })
        .collect()
}

pub async fn run(opts: &TargetOptions, n: usize) -> anyhow::Result<String> {
    let target = Target::start(opts, &[]).await?;
    let result = storm(&target, n).await;
    target.stop().await;
    result
}

async fn storm(target: &Target, n: usize) -> anyhow::Result<String> {
    let rooms = Arc::new(seed_rooms(&target.db, n, 10).await?);
    let rows = history(HISTORY_ROWS, HISTORY_CHARS / HISTORY_ROWS);
    for entry in &rooms.entries {
        seed_log(&target.db, *entry, &rows).await?;
    }
    let times = metrics::shared_histogram();
    let began = tokio::time::Instant::now();
    let started = harness::spawn_clients(n, n, Duration::from_secs(120), |i, mut gate| {
        let url = target.ws_for(i).to_string();
        let token = target.token(rooms.users[i]);
        let entry = rooms.entries[rooms.room_of(i)];
        let times = times.clone();
        async move {
            let mut conn = harness::connect_joined(&url, &token, entry).await?;
            let synced = sync_step1(&mut conn, entry, 2, harness::SETUP_DEADLINE).await?;
            let chars = synced.bins.first().map(|b| doc_chars(b)).unwrap_or(0);
            if chars != HISTORY_CHARS {
                anyhow::bail!("synced doc has {chars} characters, not {HISTORY_CHARS}");
            }
            metrics::record_shared(&times, began.elapsed());
            let plan = gate.plan(&mut conn).await?;
            tokio::time::sleep_until(plan.end).await;
            conn.close().await;
            anyhow::Ok(())
        }
    })
    .await;
    let (ready, failed, setup) = (started.ready, started.failed, started.setup);
    started.go(Duration::ZERO, Duration::ZERO, Duration::from_millis(200));
    let (_, errors) = started.reports().await;
    let times = metrics::snapshot(&times);
    Ok(format!(
        "join n={n} docs={} history={}k chars synced={ready} failed={failed} all_synced_in={:.2}s per-socket {}{}",
        rooms.entries.len(),
        HISTORY_CHARS / 1000,
        setup.as_secs_f64(),
        metrics::percentiles(&times, &[0.5, 0.99, 1.0]),
        errors_suffix(&errors)
    ))
}

/// Characters in the doc a full-state update builds (0 if it does not decode).
pub fn doc_chars(update: &[u8]) -> usize {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("content");
    let Ok(update) = Update::decode_v1(update) else {
        return 0;
    };
    let mut txn = doc.transact_mut();
    if txn.apply_update(update).is_err() {
        return 0;
    }
    text.get_string(&txn).chars().count()
}
