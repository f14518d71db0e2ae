//! `idle`: N sockets connected and joined (rooms of 10), doing nothing. Reports the
//! server's resident memory per socket above its baseline before any connected.

use std::sync::Arc;
use std::time::Duration;

use crate::harness;
use crate::target::{seed_rooms, Target, TargetOptions};

pub async fn run(opts: &TargetOptions, n: usize, hold: Duration) -> anyhow::Result<String> {
    let target = Target::start(opts, &[]).await?;
    let result = measure(&target, n, hold).await;
    target.stop().await;
    result
}

async fn measure(target: &Target, n: usize, hold: Duration) -> anyhow::Result<String> {
    let rooms = Arc::new(seed_rooms(&target.db, n, 10).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = target.proc.and_then(|p| p.rss_kib());
    let started = harness::spawn_clients(n, 256, Duration::from_secs(180), |i, mut gate| {
        let url = target.ws_for(i).to_string();
        let token = target.token(rooms.users[i]);
        let entry = rooms.entries[rooms.room_of(i)];
        async move {
            let mut conn = gate
                .connecting(async { harness::connect_joined(&url, &token, entry).await })
                .await?;
            let plan = gate.plan(&mut conn).await?;
            let mut disconnected = false;
            while tokio::time::Instant::now() < plan.end {
                tokio::select! {
                    msg = conn.next() => match msg {
                        Ok(msg) => harness::answer_server_requests(&mut conn, &msg).await?,
                        Err(_) => { disconnected = true; break; }
                    },
                    _ = tokio::time::sleep_until(plan.end) => break,
                }
            }
            conn.close().await;
            anyhow::Ok(disconnected)
        }
    })
    .await;
    // Let joins' broadcasts and allocator churn settle before reading memory.
    tokio::time::sleep(hold).await;
    let loaded = target.proc.and_then(|p| p.rss_kib());
    let setup = started.setup;
    let (ready, failed) = (started.ready, started.failed);
    started.go(Duration::ZERO, Duration::ZERO, Duration::from_secs(2));
    let (reports, errors) = started.reports().await;
    let dropped = reports.iter().filter(|d| **d).count();
    let per_socket = match (baseline, loaded) {
        (Some(b), Some(l)) if ready > 0 => format!(
            "{:.1}KiB/socket (rss {:.0}MiB -> {:.0}MiB)",
            (l.saturating_sub(b)) as f64 / ready as f64,
            b as f64 / 1024.0,
            l as f64 / 1024.0
        ),
        _ => "rss n/a".into(),
    };
    Ok(format!(
        "idle n={n} connected+joined={ready} failed={failed} dropped={dropped} setup={:.1}s {per_socket}{}",
        setup.as_secs_f64(),
        errors_suffix(&errors)
    ))
}

pub fn errors_suffix(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(" errors=[{}]", harness::error_digest(errors))
    }
}
