//! Running many clients in step: every client connects and gets ready, then all are
//! given the same plan (when to start sending, stop, and stop listening).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use bytes::Bytes;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::client::{Conn, Incoming};
use crate::proto;

/// When the measured part of a run happens.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// First intended send.
    pub start: Instant,
    /// No intended send at or after this.
    pub stop: Instant,
    /// Clients stop listening and report.
    pub end: Instant,
}

/// A client's handle on the run: say it is ready, learn the plan.
pub struct Gate {
    ready: mpsc::UnboundedSender<bool>,
    plan: watch::Receiver<Option<Plan>>,
    connect: Arc<Semaphore>,
    told: bool,
}

impl Gate {
    /// Holds one of the limited connection slots while `f` connects.
    pub async fn connecting<T>(&self, f: impl Future<Output = T>) -> T {
        let _permit = self.connect.acquire().await;
        f.await
    }

    /// Reports ready (or failed) once.
    pub fn ready(&mut self, ok: bool) {
        if !self.told {
            self.told = true;
            let _ = self.ready.send(ok);
        }
    }

    /// Waits for the plan, keeping the connection served (pings, the server's sync
    /// step 1) meanwhile; other packets are dropped.
    pub async fn plan(&mut self, conn: &mut Conn) -> anyhow::Result<Plan> {
        self.ready(true);
        loop {
            if let Some(plan) = *self.plan.borrow() {
                return Ok(plan);
            }
            tokio::select! {
                changed = self.plan.changed() => changed.map_err(|_| anyhow!("run abandoned"))?,
                msg = conn.next() => answer_server_requests(conn, &msg?).await?,
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.ready(false);
    }
}

/// Answers what the server asks of a Yjs socket: its `entry_sync_step1` wants the
/// updates we have that it lacks (none: we only send what we already sent).
pub async fn answer_server_requests(conn: &mut Conn, msg: &Incoming) -> anyhow::Result<()> {
    if let Some(p) = msg.packet() {
        if p.kind == 5 && proto::event_name(p.json) == Some("entry_sync_step1") {
            if let Some(id) = p.id {
                conn.send_with_binary(proto::binary_ack(id), Bytes::from_static(&[0, 0]))
                    .await?;
            }
        }
    }
    Ok(())
}

/// Outcome of starting the clients.
pub struct Started<R> {
    pub handles: Vec<tokio::task::JoinHandle<anyhow::Result<R>>>,
    pub ready: usize,
    pub failed: usize,
    /// Time from spawning the first client until the last one was ready or failed.
    pub setup: Duration,
    plan: watch::Sender<Option<Plan>>,
}

/// Spawns `n` clients (`client(i, gate)`), at most `concurrency` connecting at once,
/// and waits until each has reported ready or failed (or `deadline` passes).
pub async fn spawn_clients<R, F, Fut>(
    n: usize,
    concurrency: usize,
    deadline: Duration,
    client: F,
) -> Started<R>
where
    R: Send + 'static,
    F: Fn(usize, Gate) -> Fut,
    Fut: Future<Output = anyhow::Result<R>> + Send + 'static,
{
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (plan_tx, plan_rx) = watch::channel(None);
    let connect = Arc::new(Semaphore::new(concurrency.max(1)));
    let began = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let gate = Gate {
                ready: ready_tx.clone(),
                plan: plan_rx.clone(),
                connect: connect.clone(),
                told: false,
            };
            tokio::spawn(client(i, gate))
        })
        .collect();
    drop(ready_tx);
    let (mut ready, mut failed) = (0, 0);
    let until = began + deadline;
    while ready + failed < n {
        match tokio::time::timeout_at(until, ready_rx.recv()).await {
            Ok(Some(true)) => ready += 1,
            Ok(Some(false)) => failed += 1,
            _ => break,
        }
    }
    failed = n - ready;
    Started {
        handles,
        ready,
        failed,
        setup: began.elapsed(),
        plan: plan_tx,
    }
}

impl<R> Started<R> {
    /// Starts the measured part: sending from `lead` from now for `send`, then
    /// listening for `drain` more. Returns the plan.
    pub fn go(&self, lead: Duration, send: Duration, drain: Duration) -> Plan {
        let start = Instant::now() + lead;
        let plan = Plan {
            start,
            stop: start + send,
            end: start + send + drain,
        };
        let _ = self.plan.send(Some(plan));
        plan
    }

    /// Collects every client's report (failures counted, not returned).
    pub async fn reports(self) -> (Vec<R>, Vec<String>) {
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for handle in self.handles {
            match handle.await {
                Ok(Ok(r)) => ok.push(r),
                Ok(Err(e)) => errors.push(format!("{e:#}")),
                Err(e) => errors.push(e.to_string()),
            }
        }
        (ok, errors)
    }
}

/// The intended send time of message `seq` of a client sending every `period` with
/// phase `phase` (open loop: latency counts from here, not from when we managed to send).
pub fn intended(plan: &Plan, phase: Duration, period: Duration, seq: u64) -> Instant {
    plan.start + phase + period * seq as u32
}

/// Spreads clients' phases evenly over one period.
pub fn phase(i: usize, n: usize, period: Duration) -> Duration {
    period.mul_f64((i % n.max(1)) as f64 / n.max(1) as f64)
}

/// Distinct error messages with counts, for the summary.
pub fn error_digest(errors: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in errors {
        *counts.entry(e.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .take(3)
        .map(|(e, n)| format!("{n}x {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// How long a client may take to connect, join or sync before the run counts it failed.
pub const SETUP_DEADLINE: Duration = Duration::from_secs(60);

/// A client connected with `token` and joined to `entry` (ack id 1).
pub async fn connect_joined(url: &str, token: &str, entry: uuid::Uuid) -> anyhow::Result<Conn> {
    let mut conn = Conn::connect(url, token, SETUP_DEADLINE).await?;
    join_room(&mut conn, entry, 1, SETUP_DEADLINE).await?;
    Ok(conn)
}

/// `join_entry_room` with an ack; returns when the ack arrives (an `ok:false` ack fails).
pub async fn join_room(
    conn: &mut Conn,
    entry: uuid::Uuid,
    ack: u64,
    deadline: Duration,
) -> anyhow::Result<Incoming> {
    let mut backlog = Vec::new();
    conn.send_text(proto::event(
        "join_entry_room",
        &format!("{{\"entryId\":\"{entry}\"}}"),
        Some(ack),
    ))
    .await?;
    let reply = conn.wait_ack(ack, deadline, &mut backlog).await?;
    if !reply.text.contains("\"ok\":true") {
        return Err(anyhow!("join refused: {}", truncate(&reply.text)));
    }
    for msg in backlog {
        answer_server_requests(conn, &msg).await?;
    }
    Ok(reply)
}

/// `entry_sync_step1` with an empty state vector: the socket becomes a Yjs socket and
/// gets the whole doc in the ack.
pub async fn sync_step1(
    conn: &mut Conn,
    entry: uuid::Uuid,
    ack: u64,
    deadline: Duration,
) -> anyhow::Result<Incoming> {
    let mut backlog = Vec::new();
    conn.send_with_binary(
        proto::binary_event(
            "entry_sync_step1",
            &format!(
                "{{\"entryId\":\"{entry}\",\"stateVector\":{}}}",
                proto::PLACEHOLDER0
            ),
            Some(ack),
        ),
        Bytes::from_static(&[0]),
    )
    .await?;
    let reply = conn.wait_ack(ack, deadline, &mut backlog).await?;
    for msg in backlog {
        answer_server_requests(conn, &msg).await?;
    }
    if reply.bins.is_empty() {
        return Err(anyhow!("sync step 1 refused: {}", truncate(&reply.text)));
    }
    Ok(reply)
}

pub fn truncate(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
