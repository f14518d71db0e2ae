//! Reconnect storms. N sockets connect at once, join rooms of 10 and sync a doc with a
//! logged history. Reports the time until every socket holds the whole doc, and failures.
//!
//! `join`: 100k characters of history in 100 logged updates of 1,000 characters.
//! `storm`: issue 14's memory storm, 20,000 characters written as 5,000 small updates,
//! with the server's RSS before the run, at the end of the storm (all synced), and 60 s
//! after every socket has left and every doc has unloaded.

use std::sync::Arc;
use std::time::Duration;

use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Text, Transact, Update};

use crate::harness::{self, sync_step1};
use crate::idle::errors_suffix;
use crate::metrics;
use crate::target::{seed_log_copies, seed_rooms, Target, TargetOptions};

/// The history every entry of a storm holds, and whether memory is followed to the end.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub name: &'static str,
    pub chars: usize,
    pub rows: usize,
    /// How long every socket is held once all are synced (memory is read at its end).
    pub hold: Duration,
    /// Follow the server's memory: at the end of the storm, then this long after every
    /// socket has left and every doc has unloaded.
    pub give_back: Option<Duration>,
}

pub const JOIN: Shape = Shape {
    name: "join",
    chars: 100_000,
    rows: 100,
    hold: Duration::ZERO,
    give_back: None,
};

pub const STORM: Shape = Shape {
    name: "storm",
    chars: 20_000,
    rows: 5_000,
    hold: Duration::from_secs(3),
    give_back: Some(Duration::from_secs(60)),
};

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

pub async fn run(opts: &TargetOptions, n: usize, shape: Shape) -> anyhow::Result<String> {
    let target = Target::start(opts, &[]).await?;
    let result = storm(&target, n, shape).await;
    target.stop().await;
    result
}

async fn storm(target: &Target, n: usize, shape: Shape) -> anyhow::Result<String> {
    let rooms = Arc::new(seed_rooms(&target.db, n, 10).await?);
    let rows = history(shape.rows, shape.chars / shape.rows);
    seed_log_copies(&target.db, &rooms.entries, &rows).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.proc.and_then(|p| p.rss_kib());
    let times = metrics::shared_histogram();
    let began = tokio::time::Instant::now();
    let started = harness::spawn_clients(n, n, Duration::from_secs(180), |i, mut gate| {
        let url = target.ws_for(i).to_string();
        let token = target.token(rooms.users[i]);
        let entry = rooms.entries[rooms.room_of(i)];
        let times = times.clone();
        async move {
            let mut conn = harness::connect_joined(&url, &token, entry).await?;
            let synced = sync_step1(&mut conn, entry, 2, harness::SETUP_DEADLINE).await?;
            let chars = synced.bins.first().map(|b| doc_chars(b)).unwrap_or(0);
            if chars != shape.chars {
                anyhow::bail!("synced doc has {chars} characters, not {}", shape.chars);
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
    // Let the last acks' buffers and the allocator settle before reading memory.
    tokio::time::sleep(shape.hold).await;
    let memory = match (shape.give_back, target.proc) {
        (Some(give_back), Some(proc)) => {
            Some((give_back, proc, proc.rss_kib(), proc.peak_rss_kib()))
        }
        _ => None,
    };
    started.go(Duration::ZERO, Duration::ZERO, Duration::from_millis(200));
    let (_, errors) = started.reports().await;
    let times = metrics::snapshot(&times);
    let memory = match memory {
        Some((give_back, proc, end, peak)) => {
            let unloaded = docs_unloaded(target).await;
            tokio::time::sleep(give_back).await;
            let after = proc.rss_kib();
            memory_summary(before, end, peak, (give_back, after), unloaded)
        }
        None => String::new(),
    };
    Ok(format!(
        "{} n={n} docs={} history={}k chars in {} updates synced={ready} failed={failed} all_synced_in={:.2}s per-socket {}{memory}{}",
        shape.name,
        rooms.entries.len(),
        shape.chars / 1000,
        shape.rows,
        setup.as_secs_f64(),
        metrics::percentiles(&times, &[0.5, 0.99, 1.0]),
        errors_suffix(&errors)
    ))
}

/// Waits (up to a minute) until the server reports no doc loaded; false if it never did.
async fn docs_unloaded(target: &Target) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let loaded = metrics::server_metric(&target.http[0], &["diary_docs_loaded"]).await;
        if loaded.first() == Some(&0.0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

fn memory_summary(
    before: Option<u64>,
    end: Option<u64>,
    peak: Option<u64>,
    (give_back, after): (Duration, Option<u64>),
    unloaded: bool,
) -> String {
    let mib = |kib: Option<u64>| {
        kib.map(|k| format!("{:.0}MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into())
    };
    let back = match (before, after) {
        (Some(b), Some(a)) if b > 0 => {
            format!(" ({:+.0}% of before)", (a as f64 / b as f64 - 1.0) * 100.0)
        }
        _ => String::new(),
    };
    format!(
        " rss before={} storm_end={} peak={} {}s_after_leaving={}{back}{}",
        mib(before),
        mib(end),
        mib(peak),
        give_back.as_secs(),
        mib(after),
        if unloaded { "" } else { " DOCS_STILL_LOADED" }
    )
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
