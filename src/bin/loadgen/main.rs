//! Load generator for diary-realtime: speaks Engine.IO v4 / Socket.IO v5 over raw
//! WebSockets, many thousands of clients in one single-threaded process, open loop
//! (latency counts from each message's intended send time). See BENCHMARKS.md.
//!
//! `cargo run --release --bin loadgen -- <scenario> [sizes]`, e.g. `cursors 1000,5000`.
//! Without `--url` it starts the release server itself on a fresh database (dropped
//! afterwards), pinned to another core; each run prints one summary line.

mod client;
mod cursors;
mod docs;
mod edits;
mod fair;
mod harness;
mod idle;
mod join;
mod metrics;
mod proto;
mod ratelimit;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use target::TargetOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Idle,
    Cursors,
    Edits,
    /// Most rooms editing at 5/s per socket, every fifth room at `--light-rate`.
    Fair,
    Join,
    /// Issue 14's memory storm: 20k-char docs in 5,000 updates, RSS until it comes back.
    Storm,
    Ratelimit,
    Hot,
    Load,
    Docmem,
    /// Every scenario at the sizes BENCHMARKS.md reports.
    All,
}

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Load generator for diary-realtime")]
struct Args {
    scenario: Scenario,
    /// Client counts, comma-separated (for `hot`: editors; `docmem`: docs).
    #[arg(value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Seconds each run sends for.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Seconds `storm` waits after every socket has left and every doc unloaded before
    /// it reads the server's memory again.
    #[arg(long, default_value_t = 60)]
    give_back_secs: u64,
    /// Seconds `idle` and `storm` hold every socket once all are joined (or synced)
    /// before reading the server's memory.
    #[arg(long, default_value_t = 3)]
    hold_secs: u64,
    /// Updates per second per editor in `hot`.
    #[arg(long, default_value_t = 100.0)]
    hot_rate: f64,
    /// Updates per second per socket in `edits` and in `fair`'s hot rooms.
    #[arg(long, default_value_t = 5.0)]
    edit_rate: f64,
    /// Updates per second per socket in `fair`'s light rooms.
    #[arg(long, default_value_t = 1.0)]
    light_rate: f64,
    /// Cursor moves per second per socket in `cursors`.
    #[arg(long, default_value_t = 8.0)]
    cursor_rate: f64,
    /// Servers to load instead of starting one (`http://host:port`, comma-separated;
    /// clients are spread round-robin). Needs `--database-url` of their database.
    #[arg(long, value_delimiter = ',')]
    url: Vec<String>,
    /// Postgres to create run databases in, or the given servers' database.
    #[arg(
        long,
        env = "LOADGEN_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    #[arg(
        long,
        env = "JWT_SECRET",
        default_value = "loadgen-secret-0123456789abcdef0123456789"
    )]
    jwt_secret: String,
    /// The server binary to start (default: `diary-realtime` next to this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Pid of a server given by `--url`, to read its memory and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// CPUs for the started server (`taskset -c`); empty: no pinning.
    #[arg(long, default_value = "1")]
    server_cpus: String,
    /// CPUs for this process; empty: no pinning.
    #[arg(long, default_value = "0")]
    loadgen_cpus: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.loadgen_cpus.is_empty() {
        pin_self(&args.loadgen_cpus);
    }
    // One thread: the whole load generator shares one core, and histograms and
    // counters are never contended.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn pin_self(cpus: &str) {
    let pid = std::process::id().to_string();
    let pinned = std::process::Command::new("taskset")
        .args(["-a", "-cp", cpus, &pid])
        .stdout(std::process::Stdio::null())
        .status();
    if !matches!(pinned, Ok(s) if s.success()) {
        eprintln!("warning: could not pin the load generator to CPUs {cpus}");
    }
}

/// Runs what was asked; false when a run failed or saw lost/duplicated/reordered messages.
async fn run(args: Args) -> anyhow::Result<bool> {
    let server_bin = match &args.server_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("diary-realtime"),
    };
    let opts = TargetOptions {
        urls: args.url.clone(),
        database_url: args.database_url.clone(),
        jwt_secret: args.jwt_secret.clone(),
        server_bin,
        server_pid: args.server_pid,
        server_cpus: if args.url.is_empty() {
            args.server_cpus.clone()
        } else {
            String::new()
        },
    };
    let plan: Vec<(Scenario, Vec<usize>)> = match args.scenario {
        Scenario::All => vec![
            (Scenario::Idle, vec![1000, 5000, 10000]),
            (Scenario::Cursors, vec![1000, 5000, 10000]),
            (Scenario::Edits, vec![1000, 5000, 10000]),
            (Scenario::Fair, vec![5000]),
            (Scenario::Join, vec![1000, 5000, 10000]),
            (Scenario::Storm, vec![2000, 5000]),
            (Scenario::Ratelimit, vec![100]),
            (Scenario::Hot, vec![50]),
            (Scenario::Load, vec![1]),
            (Scenario::Docmem, vec![1000]),
        ],
        s => {
            let default = match s {
                Scenario::Ratelimit => 100,
                Scenario::Hot => 50,
                Scenario::Docmem => 1000,
                Scenario::Load => 1,
                Scenario::Storm => 2000,
                Scenario::Fair => 5000,
                _ => 1000,
            };
            let sizes = if args.sizes.is_empty() {
                vec![default]
            } else {
                args.sizes.clone()
            };
            vec![(s, sizes)]
        }
    };
    let mut all_ok = true;
    for (scenario, sizes) in plan {
        for n in sizes {
            let line = one(&opts, &args, scenario, n).await;
            match line {
                Ok(line) => {
                    if line.contains("errors=[") || dirty(&line) {
                        all_ok = false;
                    }
                    println!("{line}");
                }
                Err(e) => {
                    all_ok = false;
                    println!("{scenario:?} n={n} FAILED: {e:#}");
                }
            }
        }
    }
    Ok(all_ok)
}

/// True when a summary line reports any lost, duplicated, reordered or unexpected message.
fn dirty(line: &str) -> bool {
    ["lost=", "dup=", "reordered=", "unexpected="]
        .iter()
        .any(|key| {
            line.match_indices(key).any(|(at, _)| {
                let digits: String = line[at + key.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse::<u64>().map(|v| v > 0).unwrap_or(false)
            })
        })
}

async fn one(
    opts: &TargetOptions,
    args: &Args,
    scenario: Scenario,
    n: usize,
) -> anyhow::Result<String> {
    let secs = args.secs;
    match scenario {
        Scenario::Idle => idle::run(opts, n, Duration::from_secs(args.hold_secs)).await,
        Scenario::Cursors => cursors::run(opts, n, args.cursor_rate, secs).await,
        Scenario::Edits | Scenario::Fair => {
            let fair = scenario == Scenario::Fair;
            let load = edits::EditLoad {
                clients: n,
                room_size: 10,
                per_second: args.edit_rate,
                secs,
                light: fair.then_some(edits::Light {
                    every: 5,
                    per_second: args.light_rate,
                }),
            };
            let name = if fair { "fair" } else { "edits" };
            edits::run(opts, name, load, &[]).await
        }
        Scenario::Hot => {
            let load = edits::EditLoad {
                clients: n,
                room_size: n,
                per_second: args.hot_rate,
                secs,
                light: None,
            };
            // The per-user limit would hold each editor to 10/s.
            let env = [("RATE_LIMIT_PER_SECOND", "1000000".to_string())];
            edits::run(opts, "hot", load, &env).await
        }
        Scenario::Join => join::run(opts, n, join::JOIN).await,
        Scenario::Storm => {
            let shape = join::Shape {
                hold: Duration::from_secs(args.hold_secs),
                give_back: Some(Duration::from_secs(args.give_back_secs)),
                ..join::STORM
            };
            join::run(opts, n, shape).await
        }
        Scenario::Ratelimit => ratelimit::run(opts, n, secs).await,
        Scenario::Load => docs::load(opts).await,
        Scenario::Docmem => docs::docmem(opts, n).await,
        Scenario::All => anyhow::bail!("`all` is expanded into its scenarios"),
    }
}
