//! `ratelimit`: rooms of 10, every client moves its cursor at 20/s with an ack, over a
//! limit of 10/s per user. Checks each user is held to the limit, that exactly the
//! accepted moves reach the room, and what the refused excess costs the server: a run
//! at 5/s (nothing refused) prices an accepted move, the rest of the 20/s run's CPU
//! is put down to the refusals.

use crate::cursors::{self, CursorLoad};
use crate::idle::errors_suffix;
use crate::target::{Target, TargetOptions};

pub async fn run(opts: &TargetOptions, n: usize, secs: f64) -> anyhow::Result<String> {
    let calm = CursorLoad {
        clients: n,
        room_size: 10,
        per_second: 5.0,
        secs,
        acks: true,
    };
    let flood = CursorLoad {
        per_second: 20.0,
        ..calm
    };
    let env = [("RATE_LIMIT_PER_SECOND", "10".to_string())];
    let target = Target::start(opts, &env).await?;
    let base = cursors::drive(&target, calm).await;
    target.stop().await;
    let target = Target::start(opts, &env).await?;
    let over = cursors::drive(&target, flood).await;
    target.stop().await;
    let (base, over) = (base?, over?);
    let per_accepted = base
        .server_cpu
        .map(|c| c.as_secs_f64() / base.accepted.max(1) as f64);
    let excess = match (per_accepted, over.server_cpu) {
        (Some(per), Some(cpu)) if over.refused > 0 => {
            let spent = (cpu.as_secs_f64() - per * over.accepted as f64).max(0.0);
            format!("{:.1}", spent * 1e6 / over.refused as f64)
        }
        _ => "n/a".into(),
    };
    let clients = over.ready.max(1) as f64;
    let window = over.send_window.as_secs_f64();
    Ok(format!(
        "ratelimit n={n} limit=10/s sent_rate=20/s secs={secs} accepted/user/s={:.2} (burst 10 included) refused={} deliveries={} cpu_us/accepted_move={} cpu_us/refused_move={excess} {} | calm 5/s: accepted={} refused={} {}{}",
        over.accepted as f64 / clients / window,
        over.refused,
        over.accounting.received,
        per_accepted.map(|p| format!("{:.1}", p * 1e6)).unwrap_or_else(|| "n/a".into()),
        over.accounting.summary(),
        base.accepted,
        base.refused,
        base.accounting.summary(),
        errors_suffix(&over.errors),
    ))
}
