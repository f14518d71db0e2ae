//! Configuration: the command line and the environment, read once at start-up into
//! typed [`Settings`]. Nothing else in the crate reads the environment.
//!
//! Every flag has an environment variable of the same name in upper case (clap's
//! `value_name` is that name too), so a bad value stops start-up with one line that
//! names the variable, e.g. `invalid value 'x' for '--port <PORT>'`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `diary-realtime [OPTIONS] [COMMAND]`.
#[derive(Debug, Parser)]
#[command(name = "diary-realtime", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Mint a JWT signed with JWT_SECRET, for local use.
    Token {
        /// The user id (`sub` claim).
        #[arg(long)]
        user: uuid::Uuid,
        /// Lifetime, e.g. `1h`, `30m`, `7d`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// `service` for tokens that may call `POST /api/notifications`.
        #[arg(long)]
        role: Option<String>,
    },
    /// Create demo users, a shared entry and a friendship; print their tokens.
    SeedDemo,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Raw flags and environment, as clap parses them. Turned into [`Settings`] by
/// [`ConfigArgs::into_settings`].
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Address to listen on: an IP address, or `localhost`.
    #[arg(long, env = "HOST", default_value = "0.0.0.0", global = true, value_parser = parse_host)]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8003, global = true)]
    pub port: u16,
    /// `postgres://...` for PostgreSQL, `sqlite://path` or unset for the embedded
    /// SQLite file `./data/diary-realtime.db`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// `redis://...`: run as one node of a cluster sharing this Redis (PostgreSQL only).
    /// Unset: a single node, no Redis needed.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis channel and key, so several clusters can share one Redis.
    #[arg(
        long,
        env = "REDIS_PREFIX",
        default_value = "diary-realtime",
        global = true
    )]
    pub redis_prefix: String,
    /// HS256 secret. Unset: a random one is generated (local use only).
    #[arg(long, env = "JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Engine.IO path.
    #[arg(long, env = "SOCKET_PATH", default_value = "/realtime/ws", global = true, value_parser = parse_socket_path)]
    pub socket_path: String,
    /// Comma-separated allowed origins, or `*` to allow any.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*", global = true)]
    pub cors_origins: String,
    /// Events per second per user, over all sockets and namespaces (also the burst).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 10, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_per_second: u32,
    #[arg(long, env = "HEARTBEAT_INTERVAL_SECS", default_value_t = 30, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_interval_secs: u64,
    /// A socket silent for this long is disconnected.
    #[arg(long, env = "STALE_TIMEOUT_SECS", default_value_t = 120, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub stale_timeout_secs: u64,
    /// Largest accepted event, on both transports.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = 1 << 20, global = true, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_payload_bytes: u64,
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER", default_value_t = 10, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_user: u32,
    /// How long a user's last socket may be gone before friends see `offline`.
    #[arg(long, env = "PRESENCE_GRACE_MS", default_value_t = 5000, global = true)]
    pub presence_grace_ms: u64,
    /// An entry being edited gets a history checkpoint at least this often.
    #[arg(long, env = "HISTORY_INTERVAL_SECS", default_value_t = 300, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_interval_secs: u64,
    /// History checkpoints older than this are dropped.
    #[arg(long, env = "HISTORY_RETENTION_DAYS", default_value_t = 90, global = true, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub history_retention_days: u32,
    /// Packets each socket may have waiting to be written (see `realtime::outgoing`).
    #[arg(long, env = "SOCKET_BUFFER_PACKETS", default_value_t = 1024, global = true, value_parser = clap::value_parser!(u32).range(4..))]
    pub socket_buffer_packets: u32,
    /// Event-loop lag at which the process reports itself past capacity (`/ready` 503).
    #[arg(long, env = "OVERLOAD_LAG_MS", default_value_t = 250, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub overload_lag_ms: u64,
    /// Events waiting in sockets' queues (all sockets) at which the process is past capacity.
    #[arg(long, env = "OVERLOAD_QUEUED_EVENTS", default_value_t = 20_000, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub overload_queued_events: u64,
    /// Updates waiting for the group committer at which the process is past capacity.
    #[arg(long, env = "OVERLOAD_COMMIT_BACKLOG", default_value_t = 10_000, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub overload_commit_backlog: u64,
    /// Seconds between handing freed heap back to the OS (glibc `malloc_trim`); 0: never.
    #[arg(long, env = "MALLOC_TRIM_SECS", default_value_t = 30, global = true)]
    pub malloc_trim_secs: u64,
    /// Log filter, `tracing_subscriber::EnvFilter` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub rust_log: String,
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", global = true)]
    pub log_format: LogFormat,
}

/// `HOST=localhost` is common in `.env` files; anything else must be an IP address
/// (no name resolution at start-up).
fn parse_host(raw: &str) -> Result<IpAddr, String> {
    match raw.trim() {
        "localhost" => Ok(IpAddr::from([127, 0, 0, 1])),
        other => other
            .parse()
            .map_err(|_| "expected an IP address or 'localhost'".to_string()),
    }
}

fn parse_socket_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') || raw.len() < 2 {
        return Err("must start with '/' and name a path".into());
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Postgres(String),
    Sqlite(PathBuf),
}

/// Allowed CORS origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

/// Typed, validated settings. Built once; shared read-only.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    pub database: DatabaseTarget,
    /// Set: this process is one node of a cluster (see [`crate::cluster`]).
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// `None` means "generate one": see [`crate::auth::JwtKeys::from_settings`].
    pub jwt_secret: Option<String>,
    pub socket_path: String,
    pub cors_origins: CorsOrigins,
    pub rate_limit_per_second: u32,
    pub heartbeat_interval: Duration,
    pub stale_timeout: Duration,
    pub max_payload_bytes: usize,
    pub max_connections_per_user: u32,
    pub presence_grace: Duration,
    pub history_interval: Duration,
    pub history_retention: Duration,
    /// Packets a socket may have waiting to be written (socketioxide's default is 128). A
    /// burst of edits produces one ack per edit for its sender and one relay per edit for
    /// everyone else; while a polling client is between requests these pile up. Past it
    /// see `realtime::outgoing`. The channel grows on demand, so the bound costs nothing
    /// until used, and bounds what a socket far behind holds (~1024 x a few hundred bytes).
    pub socket_buffer_packets: usize,
    pub overload: OverloadThresholds,
    /// How often freed heap is handed back to the OS (`None`: never); see `memory`.
    pub malloc_trim_every: Option<Duration>,
    pub rust_log: String,
    pub log_format: LogFormat,
}

/// When the process counts as past capacity (see [`crate::capacity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadThresholds {
    pub lag: Duration,
    pub queued_events: usize,
    pub commit_backlog: usize,
}

/// A configuration value that parsed but makes no sense; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigArgs {
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let database = match self.database_url.as_deref().map(str::trim) {
            None | Some("") => DatabaseTarget::Sqlite(PathBuf::from("./data/diary-realtime.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseTarget::Postgres(url.to_string())
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                DatabaseTarget::Sqlite(PathBuf::from(path))
            }
            Some(_) => {
                return Err(ConfigError {
                    var: "DATABASE_URL",
                    reason: "expected postgres://..., sqlite://path, or unset".into(),
                })
            }
        };
        let redis_url = match self.redis_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => {
                if let Err(e) = redis::Client::open(url) {
                    return Err(ConfigError {
                        var: "REDIS_URL",
                        reason: e.to_string(),
                    });
                }
                if !matches!(database, DatabaseTarget::Postgres(_)) {
                    return Err(ConfigError {
                        var: "REDIS_URL",
                        reason: "a cluster shares one PostgreSQL database: set DATABASE_URL to postgres://...".into(),
                    });
                }
                Some(url.to_string())
            }
        };
        // `JWT_SECRET=` (the seed's own `.env` template) means "not set", not "the
        // empty secret". A short secret is accepted (it is the diary app's, whatever its
        // length) and warned about at start-up by `JwtKeys::from_settings`.
        let jwt_secret = self.jwt_secret.filter(|s| !s.trim().is_empty());
        let cors_origins = parse_cors(&self.cors_origins)?;
        // A typo here would otherwise silently fall back to the default filter.
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.rust_log) {
            return Err(ConfigError {
                var: "RUST_LOG",
                reason: e.to_string(),
            });
        }
        if usize::try_from(self.max_payload_bytes).is_err() {
            return Err(ConfigError {
                var: "MAX_PAYLOAD_BYTES",
                reason: "too large for this platform".into(),
            });
        }
        Ok(Settings {
            host: self.host,
            port: self.port,
            database,
            redis_url,
            redis_prefix: self.redis_prefix,
            jwt_secret,
            socket_path: self.socket_path,
            cors_origins,
            rate_limit_per_second: self.rate_limit_per_second,
            heartbeat_interval: Duration::from_secs(self.heartbeat_interval_secs),
            stale_timeout: Duration::from_secs(self.stale_timeout_secs),
            max_payload_bytes: self.max_payload_bytes as usize,
            max_connections_per_user: self.max_connections_per_user,
            presence_grace: Duration::from_millis(self.presence_grace_ms),
            history_interval: Duration::from_secs(self.history_interval_secs),
            history_retention: Duration::from_secs(
                u64::from(self.history_retention_days) * 24 * 3600,
            ),
            socket_buffer_packets: self.socket_buffer_packets as usize,
            overload: OverloadThresholds {
                lag: Duration::from_millis(self.overload_lag_ms),
                queued_events: usize::try_from(self.overload_queued_events).unwrap_or(usize::MAX),
                commit_backlog: usize::try_from(self.overload_commit_backlog).unwrap_or(usize::MAX),
            },
            malloc_trim_every: (self.malloc_trim_secs > 0)
                .then(|| Duration::from_secs(self.malloc_trim_secs)),
            rust_log: self.rust_log,
            log_format: self.log_format,
        })
    }
}

fn parse_cors(raw: &str) -> Result<CorsOrigins, ConfigError> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(CorsOrigins::Any);
    }
    let origins: Vec<String> = raw
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty()
        || origins
            .iter()
            .any(|o| !(o.starts_with("http://") || o.starts_with("https://")))
    {
        return Err(ConfigError {
            var: "CORS_ORIGINS",
            reason: "expected '*' or a comma-separated list of http(s) origins".into(),
        });
    }
    Ok(CorsOrigins::List(origins))
}

impl Settings {
    /// Settings for tests and embedding: defaults, with the given database and secret.
    pub fn for_tests(database: DatabaseTarget, jwt_secret: &str) -> Settings {
        let mut args = ConfigArgs::parse_from(["diary-realtime"]);
        args.port = 0;
        args.host = IpAddr::from([127, 0, 0, 1]);
        args.jwt_secret = Some(jwt_secret.to_string());
        let mut settings = args.into_settings().unwrap_or_else(|e| panic!("{e}"));
        settings.database = database;
        settings
    }
}

#[derive(Parser)]
struct ConfigOnly {
    #[command(flatten)]
    config: ConfigArgs,
}

impl ConfigArgs {
    fn parse_from<I, T>(args: I) -> ConfigArgs
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        ConfigOnly::parse_from(args).config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_lists_are_parsed_and_checked() {
        assert_eq!(parse_cors("*").ok(), Some(CorsOrigins::Any));
        assert_eq!(
            parse_cors("http://a.test, https://b.test/").ok(),
            Some(CorsOrigins::List(vec![
                "http://a.test".into(),
                "https://b.test".into()
            ]))
        );
        assert!(parse_cors("ftp://x").is_err());
    }

    #[test]
    fn empty_secret_is_unset_and_localhost_is_a_host() {
        let mut args = ConfigArgs::parse_from(["diary-realtime", "--host", "localhost"]);
        assert_eq!(args.host, IpAddr::from([127, 0, 0, 1]));
        args.jwt_secret = Some("  ".into());
        assert_eq!(args.clone().into_settings().unwrap().jwt_secret, None);
        args.jwt_secret = Some("short".into());
        assert_eq!(
            args.into_settings().unwrap().jwt_secret.as_deref(),
            Some("short")
        );
    }

    #[test]
    fn a_bad_log_filter_is_refused() {
        let mut args = ConfigArgs::parse_from(["diary-realtime"]);
        args.rust_log = "diary=loud".into();
        assert_eq!(args.into_settings().unwrap_err().var, "RUST_LOG");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = Cli::try_parse_from(["diary-realtime", "--port", "abc"]).unwrap_err();
        assert!(err.to_string().contains("<PORT>"), "{err}");
        let err =
            Cli::try_parse_from(["diary-realtime", "--rate-limit-per-second", "0"]).unwrap_err();
        assert!(err.to_string().contains("<RATE_LIMIT_PER_SECOND>"), "{err}");
    }
}
