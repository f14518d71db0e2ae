//! `cursors`: rooms of 10; every client moves its cursor at a fixed rate (open loop).
//! The cursor index carries the sender's sequence number, so each receiver can tell
//! the latency from the intended send time and spot lost, repeated or reordered moves.
//! With acks (the `ratelimit` scenario) a receiver expects exactly the moves the server
//! accepted.
//!
//! Cursor moves are volatile: a server behind may merge them (latest wins). Besides
//! each delivered move's latency, a receiver measures how long each move took until it
//! (or a later one of the same user) was the position shown: the latest-position
//! latency. Moves superseded without arriving count as merged, not lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use crate::harness::{self, Plan};
use crate::idle::errors_suffix;
use crate::metrics::{self, Accounting, Arrivals, ServerProc, SharedHistogram};
use crate::proto;
use crate::target::{seed_rooms, Rooms, Target, TargetOptions};

/// What one cursor run does.
#[derive(Debug, Clone, Copy)]
pub struct CursorLoad {
    pub clients: usize,
    pub room_size: usize,
    pub per_second: f64,
    pub secs: f64,
    /// Ask for an ack on every move (to learn which were refused).
    pub acks: bool,
}

/// Totals of one cursor run.
pub struct CursorOutcome {
    pub ready: usize,
    pub failed: usize,
    pub sent: u64,
    pub accepted: u64,
    pub refused: u64,
    pub accounting: Accounting,
    pub latency: hdrhistogram::Histogram<u64>,
    /// Per move: until it or a later move of its user reached the receiver.
    pub latest: hdrhistogram::Histogram<u64>,
    /// The server's memory over the run.
    pub rss: String,
    pub server_cpu: Option<Duration>,
    pub errors: Vec<String>,
    pub send_window: Duration,
    /// Share of one core the load generator used while sending and draining.
    pub loadgen_busy: Option<f64>,
}

impl CursorOutcome {
    pub fn cpu_us_per(&self, count: u64) -> String {
        match self.server_cpu {
            Some(cpu) if count > 0 => format!("{:.2}", cpu.as_secs_f64() * 1e6 / count as f64),
            _ => "n/a".into(),
        }
    }
}

struct ClientReport {
    index: usize,
    sent: u64,
    accepted_seqs: Vec<u64>,
    refused: u64,
    arrivals: Arrivals,
    /// Received, duplicated and reordered moves (loss is settled at the end).
    arrived: Accounting,
    dup_acks: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Relay {
    user_id: Uuid,
    position: RelayPosition,
}

#[derive(Deserialize)]
struct RelayPosition {
    index: u64,
}

/// First ack id of the moves (lower ids are for set-up requests).
const ACK_BASE: u64 = 1000;

pub async fn run(
    opts: &TargetOptions,
    n: usize,
    per_second: f64,
    secs: f64,
) -> anyhow::Result<String> {
    let load = CursorLoad {
        clients: n,
        room_size: 10,
        per_second,
        secs,
        acks: false,
    };
    let target = Target::start(opts, &[]).await?;
    let outcome = drive(&target, load).await;
    target.stop().await;
    let o = outcome?;
    let offered = o.sent * (load.room_size as u64 - 1);
    let delivered = o.accounting.received;
    Ok(format!(
        "cursors n={n} rooms_of=10 rate={per_second}/s secs={secs} ready={} failed={} sent={} offered_deliveries={offered} delivered={delivered} delivered/s={:.0} latency {} latest_position {} cpu_us/delivery={} {} loadgen_cpu={} {}{}",
        o.ready,
        o.failed,
        o.sent,
        delivered as f64 / o.send_window.as_secs_f64(),
        metrics::percentiles(&o.latency, &[0.5, 0.99, 0.999]),
        metrics::percentiles(&o.latest, &[0.5, 0.99, 0.999]),
        o.cpu_us_per(delivered),
        o.rss,
        o.loadgen_busy
            .map(|b| format!("{:.0}%", b * 100.0))
            .unwrap_or_default(),
        o.accounting.summary(),
        errors_suffix(&o.errors)
    ))
}

/// Runs one cursor load against a started target.
pub async fn drive(target: &Target, load: CursorLoad) -> anyhow::Result<CursorOutcome> {
    let rooms = Arc::new(seed_rooms(&target.db, load.clients, load.room_size).await?);
    let index_of: Arc<HashMap<Uuid, usize>> = Arc::new(
        rooms
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (*u, i))
            .collect(),
    );
    let period = Duration::from_secs_f64(1.0 / load.per_second);
    let latency = metrics::shared_histogram();
    let latest = metrics::shared_histogram();
    let started = harness::spawn_clients(load.clients, 256, Duration::from_secs(180), |i, gate| {
        client(
            i,
            gate,
            target.ws_for(i).to_string(),
            target.token(rooms.users[i]),
            rooms.clone(),
            index_of.clone(),
            (latency.clone(), latest.clone()),
            period,
            load,
        )
    })
    .await;
    let (ready, failed) = (started.ready, started.failed);
    let send = Duration::from_secs_f64(load.secs);
    let plan = started.go(Duration::from_millis(500), send, Duration::from_secs(3));
    tokio::time::sleep_until(plan.start).await;
    let rss = metrics::RssWatch::start(target.proc);
    let cpu_before = target.proc.and_then(|p| p.cpu());
    let me = ServerProc {
        pid: std::process::id(),
    };
    let own_before = me.cpu();
    tokio::time::sleep_until(plan.end).await;
    let cpu_after = target.proc.and_then(|p| p.cpu());
    let own = own_before
        .zip(me.cpu())
        .map(|(b, a)| a.saturating_sub(b).as_secs_f64() / (plan.end - plan.start).as_secs_f64());
    let (reports, errors) = started.reports().await;
    let rss = metrics::RssWatch::finish(rss);
    // Who sent what, then what each receiver should have had.
    let mut expected: HashMap<usize, Vec<u64>> = HashMap::new();
    let (mut sent, mut accepted, mut refused, mut dup_acks) = (0, 0, 0, 0);
    for r in &reports {
        sent += r.sent;
        accepted += r.accepted_seqs.len() as u64;
        refused += r.refused;
        dup_acks += r.dup_acks;
        expected.insert(r.index, r.accepted_seqs.clone());
    }
    let mut accounting = Accounting::default();
    for r in &reports {
        accounting.add(&r.arrived);
        for peer in rooms
            .members(rooms.room_of(r.index))
            .filter(|p| *p != r.index)
        {
            let seqs = expected.get(&peer).map(Vec::as_slice).unwrap_or(&[]);
            r.arrivals
                .settle(peer, seqs.iter().copied(), true, &mut accounting);
        }
    }
    accounting.duplicated += dup_acks;
    accounting.finish();
    Ok(CursorOutcome {
        ready,
        failed,
        sent,
        accepted,
        refused,
        accounting,
        latency: metrics::snapshot(&latency),
        latest: metrics::snapshot(&latest),
        rss,
        server_cpu: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
        errors,
        send_window: send,
        loadgen_busy: own,
    })
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    mut gate: harness::Gate,
    url: String,
    token: String,
    rooms: Arc<Rooms>,
    index_of: Arc<HashMap<Uuid, usize>>,
    (latency, latest): (SharedHistogram, SharedHistogram),
    period: Duration,
    load: CursorLoad,
) -> anyhow::Result<ClientReport> {
    let room = rooms.room_of(i);
    let entry = rooms.entries[room];
    let mut conn = gate
        .connecting(async { harness::connect_joined(&url, &token, entry).await })
        .await?;
    let plan: Plan = gate.plan(&mut conn).await?;
    let phase_of = |c: usize| harness::phase(c, load.clients, period);
    let my_phase = phase_of(i);
    let mut report = ClientReport {
        index: i,
        sent: 0,
        accepted_seqs: Vec::new(),
        refused: 0,
        arrivals: Arrivals::default(),
        arrived: Accounting::default(),
        dup_acks: 0,
    };
    let mut acked: Vec<bool> = Vec::new();
    let mut ticks = tokio::time::interval_at(plan.start + my_phase, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let prefix = format!("{{\"entryId\":\"{entry}\",");
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(plan.end) => break,
            _ = ticks.tick(), if harness::intended(&plan, my_phase, period, report.sent) < plan.stop => {
                let seq = report.sent;
                let payload = format!(
                    "{prefix}\"position\":{{\"index\":{seq},\"length\":0}},\"selection\":{{\"start\":{seq},\"end\":{seq}}}}}"
                );
                let ack = load.acks.then_some(ACK_BASE + seq);
                conn.send_text(proto::event("entry_cursor_move", &payload, ack)).await?;
                report.sent += 1;
                if !load.acks {
                    report.accepted_seqs.push(seq);
                }
            }
            msg = conn.next() => {
                let msg = msg?;
                let Some(p) = msg.packet() else { continue };
                match p.kind {
                    2 if proto::event_name(p.json) == Some("entry_cursor_move") => {
                        let Some(relay) = proto::event_payload(p.json)
                            .and_then(|j| serde_json::from_str::<Relay>(j).ok()) else { continue };
                        let Some(&sender) = index_of.get(&relay.user_id) else { continue };
                        let seq = relay.position.index;
                        let now = tokio::time::Instant::now();
                        let intended = |k| harness::intended(&plan, phase_of(sender), period, k);
                        metrics::record_shared(&latency, now.saturating_duration_since(intended(seq)));
                        for shown in report.arrivals.note(sender, seq, &mut report.arrived) {
                            metrics::record_shared(&latest, now.saturating_duration_since(intended(shown)));
                        }
                    }
                    3 => {
                        let Some(seq) = p.id.and_then(|id| id.checked_sub(ACK_BASE)) else { continue };
                        let s = seq as usize;
                        if acked.len() <= s {
                            acked.resize(s + 1, false);
                        }
                        if acked[s] {
                            report.dup_acks += 1;
                            continue;
                        }
                        acked[s] = true;
                        if p.json.contains("\"ok\":true") {
                            report.accepted_seqs.push(seq);
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
    report.accepted_seqs.sort_unstable();
    Ok(report)
}
