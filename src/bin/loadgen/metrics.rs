//! What a run measures: latency histograms, message accounting (lost, duplicated,
//! reordered), and the server's resident memory and CPU time from /proc.

use std::collections::HashMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Latencies in microseconds, 1 us to 10 min, 2 significant digits (1 %).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("constant bounds are valid")
}

/// One histogram shared by a run's clients (the load generator is single-threaded, so
/// the lock is never contended; one per client would cost megabytes at 10k clients).
pub type SharedHistogram = std::sync::Arc<std::sync::Mutex<Histogram<u64>>>;

pub fn shared_histogram() -> SharedHistogram {
    std::sync::Arc::new(std::sync::Mutex::new(histogram()))
}

pub fn record_shared(h: &SharedHistogram, latency: Duration) {
    if let Ok(mut h) = h.lock() {
        record(&mut h, latency);
    }
}

pub fn snapshot(h: &SharedHistogram) -> Histogram<u64> {
    h.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram())
}

pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let _ = h.record(latency.as_micros().clamp(1, 600_000_000) as u64);
}

/// `p50=..ms p99=..ms p99.9=..ms` from a histogram in microseconds.
pub fn percentiles(h: &Histogram<u64>, qs: &[f64]) -> String {
    if h.is_empty() {
        return "n/a".into();
    }
    qs.iter()
        .map(|q| {
            format!(
                "p{}={:.1}ms",
                q * 100.0,
                h.value_at_quantile(*q) as f64 / 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Per receiver: what it got from each sender, by sender sequence number.
#[derive(Default)]
pub struct Arrivals {
    by_sender: HashMap<usize, SenderArrivals>,
}

#[derive(Default)]
struct SenderArrivals {
    seen: Vec<bool>,
    max: Option<u64>,
}

/// Totals of message accounting over a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Accounting {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Arrived although never expected (e.g. a refused event that was relayed anyway).
    pub extra: u64,
}

impl Accounting {
    pub fn add(&mut self, other: &Accounting) {
        self.expected += other.expected;
        self.received += other.received;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.extra += other.extra;
    }

    /// Once every sender is settled: what arrived beyond what was expected.
    pub fn finish(&mut self) {
        let unique = self.received - self.duplicated;
        self.extra = unique.saturating_sub(self.expected - self.lost);
    }

    pub fn summary(&self) -> String {
        format!(
            "lost={} dup={} reordered={} unexpected={}",
            self.lost, self.duplicated, self.reordered, self.extra
        )
    }
}

impl Arrivals {
    /// Records message `seq` from `sender`.
    pub fn note(&mut self, sender: usize, seq: u64, acc: &mut Accounting) {
        let s = self.by_sender.entry(sender).or_default();
        let i = seq as usize;
        if s.seen.len() <= i {
            s.seen.resize(i + 1, false);
        }
        acc.received += 1;
        if s.seen[i] {
            acc.duplicated += 1;
            return;
        }
        s.seen[i] = true;
        match s.max {
            Some(max) if seq < max => acc.reordered += 1,
            _ => s.max = Some(seq),
        }
    }

    /// Counts as lost what `sender` sent (the sequence numbers `expected` says it
    /// should have delivered here) that never arrived.
    pub fn settle(&self, sender: usize, expected: impl Iterator<Item = u64>, acc: &mut Accounting) {
        let seen = self
            .by_sender
            .get(&sender)
            .map(|s| s.seen.as_slice())
            .unwrap_or(&[]);
        for seq in expected {
            acc.expected += 1;
            if !seen.get(seq as usize).copied().unwrap_or(false) {
                acc.lost += 1;
            }
        }
    }
}

/// The server process we can observe (only when we started it, or were given its pid).
#[derive(Debug, Clone, Copy)]
pub struct ServerProc {
    pub pid: u32,
}

impl ServerProc {
    /// Resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// The largest resident set size so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// User + system CPU time of all its threads so far.
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the command name, which may hold spaces, in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        // USER_HZ is 100 on every Linux this runs on.
        Some(Duration::from_millis((utime + stime) * 10))
    }
}

/// Reads a counter or summary count from the server's `/metrics` (plain HTTP/1.0).
pub async fn server_metric(base_http: &str, names: &[&str]) -> Vec<f64> {
    let fetched = async {
        let host = base_http
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let mut stream = tokio::net::TcpStream::connect(&host).await.ok()?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        Some(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(5), fetched)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    names
        .iter()
        .map(|name| {
            body.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (key, value) = l.rsplit_once(' ')?;
                    let bare = key.split('{').next()?;
                    (bare == *name).then(|| value.parse::<f64>().ok()).flatten()
                })
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_finds_loss_duplicates_and_reordering() {
        let mut a = Arrivals::default();
        let mut acc = Accounting::default();
        for seq in [0, 1, 3, 2, 3] {
            a.note(7, seq, &mut acc);
        }
        a.settle(7, 0..5, &mut acc);
        assert_eq!(
            (acc.received, acc.duplicated, acc.reordered, acc.lost),
            (5, 1, 1, 1)
        );
    }
}
