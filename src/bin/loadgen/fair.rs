//! `fair`: while most rooms edit past the server's knee, are the others still served?
//! Every fifth room is light (1 update/s per socket) and the rest hot (5/s each): with N
//! clients the hot rooms offer 4 x N updates/s, so `fair 5000` puts them at 4x the knee
//! of `edits 1000`. The ack latency of light rooms is reported apart (see `edits`), and
//! a fresh socket connects and joins a light room every 200 ms during the run.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::Conn;
use crate::harness::{join_room, Plan};
use crate::metrics;

/// How often a fresh socket connects and joins while the load runs.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// A probe slower than this counts as failed (and its time as this).
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// Connects and joins one of `rooms` (entry, token) every [`PROBE_EVERY`] from the
/// plan's start to its stop, each on a fresh socket, spreading probes over the
/// servers; returns `probe_connect_join n=.. failed=.. p50=.. p99=..`.
pub async fn probe(ws: Vec<String>, plan: Plan, rooms: Vec<(Uuid, String)>) -> String {
    if rooms.is_empty() || ws.is_empty() {
        return "probe_connect_join n=0".into();
    }
    let latency = metrics::shared_histogram();
    let mut probes = JoinSet::new();
    let mut ticks = tokio::time::interval_at(plan.start, PROBE_EVERY);
    for k in 0.. {
        let intended = ticks.tick().await;
        if intended >= plan.stop {
            break;
        }
        let (entry, token) = rooms[k % rooms.len()].clone();
        let url = ws[k % ws.len()].clone();
        let latency = latency.clone();
        probes.spawn(async move {
            let joined =
                tokio::time::timeout(PROBE_DEADLINE, connect_and_join(&url, &token, entry))
                    .await
                    .ok()
                    .and_then(Result::ok);
            let took = Instant::now().saturating_duration_since(intended);
            metrics::record_shared(&latency, took.min(PROBE_DEADLINE));
            if let Some(conn) = joined {
                conn.close().await;
                true
            } else {
                false
            }
        });
    }
    let (mut n, mut failed) = (0, 0);
    while let Some(done) = probes.join_next().await {
        n += 1;
        if !matches!(done, Ok(true)) {
            failed += 1;
        }
    }
    format!(
        "probe_connect_join n={n} failed={failed} {}",
        metrics::percentiles(&metrics::snapshot(&latency), &[0.5, 0.99])
    )
}

async fn connect_and_join(url: &str, token: &str, entry: Uuid) -> anyhow::Result<Conn> {
    let mut conn = Conn::connect(url, token, PROBE_DEADLINE).await?;
    join_room(&mut conn, entry, 1, PROBE_DEADLINE).await?;
    Ok(conn)
}
