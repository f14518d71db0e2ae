//! `edits` (rooms of 10, 5 updates/s each), `hot` (one entry, 50 editors) and `fair`
//! (most rooms hot, every fifth light): every client is a Yjs socket replaying
//! pre-encoded one-character updates, open loop, each with an ack. The update's Yjs
//! client id is the sender's index + 1 and its clock the sequence number, so receivers
//! identify every relay without a lookup. At the end each room's first client asks the
//! server for the whole doc: a room has converged when it holds every update sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use yrs::{Doc, Text, Transact};

use crate::fair;
use crate::harness::{self, sync_step1, Plan};
use crate::idle::errors_suffix;
use crate::join::doc_chars;
use crate::metrics::{self, Accounting, Arrivals, SharedHistogram};
use crate::proto;
use crate::target::{seed_rooms, Rooms, Target, TargetOptions};

#[derive(Debug, Clone, Copy)]
pub struct EditLoad {
    pub clients: usize,
    pub room_size: usize,
    pub per_second: f64,
    pub secs: f64,
    /// Light rooms among the hot ones (the fairness scenario).
    pub light: Option<Light>,
}

/// Rooms 0, `every`, 2 x `every`, ... send at `per_second` per socket instead.
#[derive(Debug, Clone, Copy)]
pub struct Light {
    pub every: usize,
    pub per_second: f64,
}

impl EditLoad {
    pub fn is_light(&self, room: usize) -> bool {
        self.light
            .is_some_and(|l| room.is_multiple_of(l.every.max(1)))
    }

    fn rate_of_room(&self, room: usize) -> f64 {
        match self.light {
            Some(l) if self.is_light(room) => l.per_second,
            _ => self.per_second,
        }
    }

    /// Client `i`'s send period and phase (spread over its period).
    fn schedule(&self, i: usize) -> (Duration, Duration) {
        let period = Duration::from_secs_f64(1.0 / self.rate_of_room(i / self.room_size.max(1)));
        (period, harness::phase(i, self.clients, period))
    }

    fn updates_per_client(&self, i: usize) -> usize {
        (self.secs * self.rate_of_room(i / self.room_size.max(1))).ceil() as usize + 2
    }
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
    /// Characters of the room's doc at the end, as the server sends it (room's first
    /// client only; `None` if it did not answer).
    doc_chars: Option<usize>,
}

/// Ack latencies, hot and light rooms apart.
#[derive(Clone)]
struct AckLatency {
    hot: SharedHistogram,
    light: SharedHistogram,
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
    let acks = AckLatency {
        hot: metrics::shared_histogram(),
        light: metrics::shared_histogram(),
    };
    let relay_latency = metrics::shared_histogram();
    let started = harness::spawn_clients(load.clients, 256, Duration::from_secs(180), |i, gate| {
        client(
            i,
            gate,
            target.ws_for(i).to_string(),
            target.token(rooms.users[i]),
            rooms.clone(),
            (acks.clone(), relay_latency.clone()),
            load,
        )
    })
    .await;
    let (ready, failed) = (started.ready, started.failed);
    let send = Duration::from_secs_f64(load.secs);
    let plan = started.go(Duration::from_millis(500), send, Duration::from_secs(5));
    let probes = load.light.map(|_| {
        tokio::spawn(fair::probe(
            target.ws.clone(),
            plan,
            tokens(target, &rooms, load),
        ))
    });
    let names = [
        "diary_updates_persisted_total",
        "diary_persist_latency_seconds_count",
    ];
    tokio::time::sleep_until(plan.start).await;
    let rss = metrics::RssWatch::start(target.proc);
    let cpu_before = target.proc.and_then(|p| p.cpu());
    let m_before = metrics::server_metric(&target.http[0], &names).await;
    let x_before = xact_commit(target).await;
    tokio::time::sleep_until(plan.stop).await;
    let m_stop = metrics::server_metric(&target.http[0], &names).await;
    tokio::time::sleep_until(plan.end).await;
    let cpu_after = target.proc.and_then(|p| p.cpu());
    let m_after = metrics::server_metric(&target.http[0], &names).await;
    let (reports, errors) = started.reports().await;
    let rss = metrics::RssWatch::finish(rss);
    let probes = match probes {
        Some(task) => format!(
            " {}",
            task.await.unwrap_or_else(|e| format!("probes failed: {e}"))
        ),
        None => String::new(),
    };
    // Postgres publishes its counters up to a second late.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let x_after = xact_commit(target).await;

    let sent_by: std::collections::HashMap<usize, u64> =
        reports.iter().map(|r| (r.index, r.sent)).collect();
    let mut acc = Accounting::default();
    let (mut sent, mut ok, mut refused) = (0, 0, 0);
    let mut converged = 0;
    for r in &reports {
        sent += r.sent;
        ok += r.acked_ok;
        refused += r.refused;
        acc.add(&r.arrived);
        acc.duplicated += r.dup_acks;
        let room = rooms.room_of(r.index);
        for peer in rooms.members(room).filter(|p| *p != r.index) {
            let n = sent_by.get(&peer).copied().unwrap_or(0);
            r.arrivals.settle(peer, 0..n, false, &mut acc);
        }
        let room_sent: u64 = rooms
            .members(room)
            .map(|m| sent_by.get(&m).copied().unwrap_or(0))
            .sum();
        if r.doc_chars.is_some_and(|chars| chars as u64 == room_sent) {
            converged += 1;
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
    let ack = match load.light {
        None => format!(
            "ack {}",
            metrics::percentiles(&metrics::snapshot(&acks.hot), &[0.5, 0.99])
        ),
        Some(l) => format!(
            "light_rate={}/s light_rooms={} ack_hot {} ack_light {}",
            l.per_second,
            (0..rooms.entries.len())
                .filter(|r| load.is_light(*r))
                .count(),
            metrics::percentiles(&metrics::snapshot(&acks.hot), &[0.5, 0.99]),
            metrics::percentiles(&metrics::snapshot(&acks.light), &[0.5, 0.99]),
        ),
    };
    Ok(format!(
        "{name} n={} rooms_of={} rate={}/s secs={} ready={ready} failed={failed} sent={sent} acked_ok={ok} refused={refused} unacked={} committed/s={:.0} (in window {:.0}) {ack} relay {} rows={rows:.0} rows/tx={:.1} tx/s={:.0} pg_xact/s={xacts} cpu_us/update={cpu} {rss} rooms_converged={converged}/{}{probes} {}{}",
        load.clients,
        load.room_size,
        load.per_second,
        load.secs,
        sent.saturating_sub(ok + refused),
        ok as f64 / secs,
        rows_in_window / secs,
        metrics::percentiles(&metrics::snapshot(&relay_latency), &[0.5, 0.99]),
        rows / batches.max(1.0),
        batches / (secs + 5.0),
        rooms.entries.len(),
        acc.summary(),
        errors_suffix(&errors)
    ))
}

/// A token per light room's owner, for the fairness probes.
fn tokens(target: &Target, rooms: &Rooms, load: EditLoad) -> Vec<(uuid::Uuid, String)> {
    (0..rooms.entries.len())
        .filter(|r| load.is_light(*r))
        .map(|r| {
            (
                rooms.entries[r],
                target.token(rooms.users[r * rooms.room_size]),
            )
        })
        .collect()
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

async fn client(
    i: usize,
    mut gate: harness::Gate,
    url: String,
    token: String,
    rooms: Arc<Rooms>,
    (acks, relay_latency): (AckLatency, SharedHistogram),
    load: EditLoad,
) -> anyhow::Result<ClientReport> {
    let room = rooms.room_of(i);
    let entry = rooms.entries[room];
    let count = load.updates_per_client(i);
    let updates = encode_updates(i as u64 + 1, count);
    let ack_latency = if load.is_light(room) {
        acks.light
    } else {
        acks.hot
    };
    let mut conn = gate
        .connecting(async {
            let mut conn = harness::connect_joined(&url, &token, entry).await?;
            sync_step1(&mut conn, entry, 2, harness::SETUP_DEADLINE).await?;
            anyhow::Ok(conn)
        })
        .await?;
    let plan: Plan = gate.plan(&mut conn).await?;
    let (period, my_phase) = load.schedule(i);
    let mut report = ClientReport {
        index: i,
        sent: 0,
        acked_ok: 0,
        refused: 0,
        dup_acks: 0,
        arrivals: Arrivals::default(),
        arrived: Accounting::default(),
        doc_chars: None,
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
                        let (sender_period, sender_phase) = load.schedule(sender);
                        let intended = harness::intended(&plan, sender_phase, sender_period, clock);
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
    if i.is_multiple_of(rooms.room_size) {
        // After the drain: the doc as the server holds it, every update applied or not.
        report.doc_chars = sync_step1(&mut conn, entry, 3, Duration::from_secs(30))
            .await
            .ok()
            .and_then(|reply| reply.bins.first().map(|b| doc_chars(b)));
    }
    conn.close().await;
    Ok(report)
}
