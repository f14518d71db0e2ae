//! `edits` (rooms of 10, 5 updates/s each) and `hot` (one entry, 50 editors): every
//! client is a Yjs socket replaying pre-encoded one-character updates, open loop, each
//! with an ack. The update's Yjs client id is the sender's index + 1 and its clock the
//! sequence number, so receivers identify every relay without a lookup.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use yrs::{Doc, Text, Transact};

use crate::harness::{self, sync_step1, Plan};
use crate::idle::errors_suffix;
use crate::metrics::{self, Accounting, Arrivals, SharedHistogram};
use crate::proto;
use crate::target::{seed_rooms, Rooms, Target, TargetOptions};

#[derive(Debug, Clone, Copy)]
pub struct EditLoad {
    pub clients: usize,
    pub room_size: usize,
    pub per_second: f64,
    pub secs: f64,
}

const ACK_BASE: u64 = 1000;

struct ClientReport {
    index: usize,
    sent: u64,
    acked_ok: u64,
    refused: u64,
    dup_acks: u64,
    arrivals: Arrivals,
    arrived: Accounting,
}

/// `edits`: rooms of 10 at 5/s; `hot`: one room of `editors` at `rate`/s each.
pub async fn run(
    opts: &TargetOptions,
    name: &str,
    load: EditLoad,
    env: &[(&str, String)],
) -> anyhow::Result<String> {
    let target = Target::start(opts, env).await?;
    let result = drive(&target, name, load).await;
    target.stop().await;
    result
}

async fn drive(target: &Target, name: &str, load: EditLoad) -> anyhow::Result<String> {
    let rooms = Arc::new(seed_rooms(&target.db, load.clients, load.room_size).await?);
    let period = Duration::from_secs_f64(1.0 / load.per_second);
    let count = (load.secs * load.per_second).ceil() as usize + 2;
    let ack_latency = metrics::shared_histogram();
    let relay_latency = metrics::shared_histogram();
    let started = harness::spawn_clients(load.clients, 256, Duration::from_secs(180), |i, gate| {
        client(
            i,
            gate,
            target.ws_for(i).to_string(),
            target.token(rooms.users[i]),
            rooms.clone(),
            (ack_latency.clone(), relay_latency.clone()),
            period,
            load,
            count,
        )
    })
    .await;
    let (ready, failed) = (started.ready, started.failed);
    let send = Duration::from_secs_f64(load.secs);
    let plan = started.go(Duration::from_millis(500), send, Duration::from_secs(5));
    let names = [
        "diary_updates_persisted_total",
        "diary_persist_latency_seconds_count",
    ];
    tokio::time::sleep_until(plan.start).await;
    let cpu_before = target.proc.and_then(|p| p.cpu());
    let m_before = metrics::server_metric(&target.http[0], &names).await;
    let x_before = xact_commit(target).await;
    tokio::time::sleep_until(plan.stop).await;
    let m_stop = metrics::server_metric(&target.http[0], &names).await;
    tokio::time::sleep_until(plan.end).await;
    let cpu_after = target.proc.and_then(|p| p.cpu());
    let m_after = metrics::server_metric(&target.http[0], &names).await;
    let (reports, errors) = started.reports().await;
    // Postgres publishes its counters up to a second late.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let x_after = xact_commit(target).await;

    let sent_by: std::collections::HashMap<usize, u64> =
        reports.iter().map(|r| (r.index, r.sent)).collect();
    let mut acc = Accounting::default();
    let (mut sent, mut ok, mut refused) = (0, 0, 0);
    for r in &reports {
        sent += r.sent;
        ok += r.acked_ok;
        refused += r.refused;
        acc.add(&r.arrived);
        acc.duplicated += r.dup_acks;
        for peer in rooms
            .members(rooms.room_of(r.index))
            .filter(|p| *p != r.index)
        {
            let n = sent_by.get(&peer).copied().unwrap_or(0);
            r.arrivals.settle(peer, 0..n, &mut acc);
        }
    }
    acc.finish();
    let secs = send.as_secs_f64();
    let rows = m_after[0] - m_before[0];
    let batches = m_after[1] - m_before[1];
    let rows_in_window = m_stop[0] - m_before[0];
    let cpu = cpu_before
        .zip(cpu_after)
        .map(|(b, a)| {
            format!(
                "{:.1}",
                a.saturating_sub(b).as_secs_f64() * 1e6 / ok.max(1) as f64
            )
        })
        .unwrap_or_else(|| "n/a".into());
    let xacts = x_before
        .zip(x_after)
        .map(|(b, a)| format!("{:.0}", (a - b) as f64 / (secs + 5.0)))
        .unwrap_or_else(|| "n/a".into());
    Ok(format!(
        "{name} n={} rooms_of={} rate={}/s secs={} ready={ready} failed={failed} sent={sent} acked_ok={ok} refused={refused} unacked={} committed/s={:.0} (in window {:.0}) ack {} relay {} rows={rows:.0} rows/tx={:.1} tx/s={:.0} pg_xact/s={xacts} cpu_us/update={cpu} {}{}",
        load.clients,
        load.room_size,
        load.per_second,
        load.secs,
        sent.saturating_sub(ok + refused),
        ok as f64 / secs,
        rows_in_window / secs,
        metrics::percentiles(&metrics::snapshot(&ack_latency), &[0.5, 0.99]),
        metrics::percentiles(&metrics::snapshot(&relay_latency), &[0.5, 0.99]),
        rows / batches.max(1.0),
        batches / (secs + 5.0),
        acc.summary(),
        errors_suffix(&errors)
    ))
}

async fn xact_commit(target: &Target) -> Option<i64> {
    let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&target.db)
        .await;
    sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&target.db)
    .await
    .ok()
}

/// `count` one-character appends by Yjs client `client_id`, each encoded alone.
pub fn encode_updates(client_id: u64, count: usize) -> Vec<Bytes> {
    let doc = Doc::with_client_id(client_id);
    let text = doc.get_or_insert_text("content");
    (0..count)
        .map(|k| {
            let mut txn = doc.transact_mut();
            let c = char::from(b'a' + (k % 26) as u8).to_string();
            text.insert(&mut txn, k as u32, &c);
            Bytes::from(txn.encode_update_v1())
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    mut gate: harness::Gate,
    url: String,
    token: String,
    rooms: Arc<Rooms>,
    (ack_latency, relay_latency): (SharedHistogram, SharedHistogram),
    period: Duration,
    load: EditLoad,
    count: usize,
) -> anyhow::Result<ClientReport> {
    let entry = rooms.entries[rooms.room_of(i)];
    let updates = encode_updates(i as u64 + 1, count);
    let mut conn = gate
        .connecting(async {
            let mut conn = harness::connect_joined(&url, &token, entry).await?;
            sync_step1(&mut conn, entry, 2, harness::SETUP_DEADLINE).await?;
            anyhow::Ok(conn)
        })
        .await?;
    let plan: Plan = gate.plan(&mut conn).await?;
    let phase_of = |c: usize| harness::phase(c, load.clients, period);
    let my_phase = phase_of(i);
    let mut report = ClientReport {
        index: i,
        sent: 0,
        acked_ok: 0,
        refused: 0,
        dup_acks: 0,
        arrivals: Arrivals::default(),
        arrived: Accounting::default(),
    };
    let mut acked = vec![false; count];
    let mut ticks = tokio::time::interval_at(plan.start + my_phase, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let payload = format!(
        "{{\"entryId\":\"{entry}\",\"update\":{}}}",
        proto::PLACEHOLDER0
    );
    loop {
        let next_intended = harness::intended(&plan, my_phase, period, report.sent);
        tokio::select! {
            _ = tokio::time::sleep_until(plan.end) => break,
            _ = ticks.tick(), if next_intended < plan.stop && (report.sent as usize) < updates.len() => {
                let seq = report.sent;
                conn.send_with_binary(
                    proto::binary_event("entry_update", &payload, Some(ACK_BASE + seq)),
                    updates[seq as usize].clone(),
                ).await?;
                report.sent += 1;
            }
            msg = conn.next() => {
                let msg = msg?;
                let Some(p) = msg.packet() else { continue };
                match p.kind {
                    5 if proto::event_name(p.json) == Some("entry_update") => {
                        let Some((client, clock)) = msg.bins.first().and_then(|b| proto::yjs_update_id(b)) else { continue };
                        let Some(sender) = (client as usize).checked_sub(1) else { continue };
                        let intended = harness::intended(&plan, phase_of(sender), period, clock);
                        metrics::record_shared(&relay_latency, tokio::time::Instant::now().saturating_duration_since(intended));
                        report.arrivals.note(sender, clock, &mut report.arrived);
                    }
                    3 => {
                        let Some(seq) = p.id.and_then(|id| id.checked_sub(ACK_BASE)) else { continue };
                        let Some(seen) = acked.get_mut(seq as usize) else { continue };
                        if *seen {
                            report.dup_acks += 1;
                            continue;
                        }
                        *seen = true;
                        if p.json.contains("\"ok\":true") {
                            report.acked_ok += 1;
                            let intended = harness::intended(&plan, my_phase, period, seq);
                            metrics::record_shared(&ack_latency, tokio::time::Instant::now().saturating_duration_since(intended));
                        } else {
                            report.refused += 1;
                        }
                    }
                    _ => harness::answer_server_requests(&mut conn, &msg).await?,
                }
            }
        }
    }
    conn.close().await;
    Ok(report)
}
