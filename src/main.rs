use std::process::ExitCode;

use clap::Parser;
use diary_realtime::config::{Cli, Command};
use diary_realtime::{auth::JwtKeys, demo, ids::UserId, store, telemetry, Application};

/// Stack of each runtime worker thread: 8 MiB (tokio's default is 2 MiB), the usual
/// main-thread size. yrs decodes and integrates recursively in places; the gate in
/// front of it (src/collab/gate) bounds nesting, and this leaves a wide margin over
/// what it admits. A stack overflow aborts the whole process whichever thread it is
/// on, so the bound on input, not the stack, is the defence; this is the second line.
const WORKER_STACK_BYTES: usize = 8 << 20;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(serve()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line naming the variable, not clap's usage block; hints such as
            // `[possible values: json, pretty]` are kept on that line.
            let rendered = e.to_string();
            let line = rendered
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    let settings = match cli.config.into_settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(&settings);

    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match Application::build(settings).await {
            Ok(app) => app.run_until(diary_realtime::shutdown_signal()).await,
            Err(e) => Err(e),
        },
        Command::Migrate => store::open(&settings)
            .await
            .map(|_| {
                println!("migrations applied");
            })
            .map_err(Into::into),
        Command::Token { user, ttl, role } => match &settings.jwt_secret {
            Some(secret) => {
                println!(
                    "{}",
                    JwtKeys::new(secret).mint(UserId(user), ttl, role.as_deref())
                );
                Ok(())
            }
            None => Err(anyhow::anyhow!(
                "JWT_SECRET must be set (env or --jwt-secret) to mint a token the server accepts"
            )),
        },
        Command::SeedDemo => demo::seed(&settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
