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
    /// Never arrived but superseded by a later one that did (volatile events only:
    /// the server may merge cursor moves, latest wins).
    pub merged: u64,
}

impl Accounting {
    pub fn add(&mut self, other: &Accounting) {
        self.expected += other.expected;
        self.received += other.received;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.extra += other.extra;
        self.merged += other.merged;
    }

    /// Once every sender is settled: what arrived beyond what was expected.
    pub fn finish(&mut self) {
        let unique = self.received - self.duplicated;
        self.extra = unique.saturating_sub(self.expected - self.lost - self.merged);
    }

    pub fn summary(&self) -> String {
        format!(
            "lost={} dup={} reordered={} unexpected={} merged={}",
            self.lost, self.duplicated, self.reordered, self.extra, self.merged
        )
    }
}

impl Arrivals {
    /// Records message `seq` from `sender`. Returns the sequence numbers this arrival
    /// makes current for the first time (`seq` and any skipped ones before it; empty for
    /// a repeat or a late one), for latest-position latency.
    pub fn note(
        &mut self,
        sender: usize,
        seq: u64,
        acc: &mut Accounting,
    ) -> std::ops::RangeInclusive<u64> {
        let s = self.by_sender.entry(sender).or_default();
        let i = seq as usize;
        if s.seen.len() <= i {
            s.seen.resize(i + 1, false);
        }
        acc.received += 1;
        #[allow(clippy::reversed_empty_ranges)]
        let nothing_new = 1..=0;
        if s.seen[i] {
            acc.duplicated += 1;
            return nothing_new;
        }
        s.seen[i] = true;
        match s.max {
            Some(max) if seq < max => {
                acc.reordered += 1;
                nothing_new
            }
            previous => {
                s.max = Some(seq);
                previous.map_or(0, |m| m + 1)..=seq
            }
        }
    }

    /// Counts as lost what `sender` sent (the sequence numbers `expected` says it
    /// should have delivered here) that never arrived. With `latest_wins` (volatile
    /// events) one that a later arrival superseded counts as merged, not lost.
    pub fn settle(
        &self,
        sender: usize,
        expected: impl Iterator<Item = u64>,
        latest_wins: bool,
        acc: &mut Accounting,
    ) {
        let (seen, max) = self
            .by_sender
            .get(&sender)
            .map(|s| (s.seen.as_slice(), s.max))
            .unwrap_or((&[], None));
        for seq in expected {
            acc.expected += 1;
            if seen.get(seq as usize).copied().unwrap_or(false) {
                continue;
            }
            match max {
                Some(max) if latest_wins && seq < max => acc.merged += 1,
                _ => acc.lost += 1,
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

/// The server's resident memory over a run: sampled every 250 ms until stopped.
pub struct RssWatch {
    peak_kib: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    proc: ServerProc,
    start_kib: u64,
}

impl RssWatch {
    pub fn start(proc: Option<ServerProc>) -> Option<RssWatch> {
        use std::sync::atomic::Ordering;
        let proc = proc?;
        let start_kib = proc.rss_kib()?;
        let peak_kib = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(start_kib));
        let peak = peak_kib.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(250));
            loop {
                ticks.tick().await;
                if let Some(kib) = proc.rss_kib() {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        Some(RssWatch {
            peak_kib,
            task,
            proc,
            start_kib,
        })
    }

    /// `rss=<start>-><peak>(peak)-><now>MiB`.
    pub fn finish(watch: Option<RssWatch>) -> String {
        let Some(w) = watch else {
            return "rss=n/a".into();
        };
        w.task.abort();
        let now = w.proc.rss_kib().unwrap_or(0);
        let peak = w
            .peak_kib
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(now);
        let mib = |kib: u64| kib as f64 / 1024.0;
        format!(
            "rss_mib={:.0}->peak {:.0}->end {:.0}",
            mib(w.start_kib),
            mib(peak),
            mib(now)
        )
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
        a.settle(7, 0..5, false, &mut acc);
        assert_eq!(
            (acc.received, acc.duplicated, acc.reordered, acc.lost),
            (5, 1, 1, 1)
        );
    }

    #[test]
    fn latest_wins_counts_superseded_moves_as_merged() {
        let mut a = Arrivals::default();
        let mut acc = Accounting::default();
        assert_eq!(a.note(1, 0, &mut acc), 0..=0);
        assert_eq!(a.note(1, 3, &mut acc), 1..=3);
        assert!(a.note(1, 2, &mut acc).is_empty());
        assert!(a.note(1, 3, &mut acc).is_empty());
        a.settle(1, 0..6, true, &mut acc);
        // 1 was superseded by 3; 4 and 5 never arrived and nothing later did.
        assert_eq!((acc.merged, acc.lost, acc.reordered), (1, 2, 1));
    }
}
