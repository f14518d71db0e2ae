//! The load generator must not rot: each message-checking scenario, at a tiny size
//! against the (debug) server it starts itself, reports zero lost, duplicated,
//! reordered or unexpected messages and no errors.

use std::process::Command;

fn loadgen(args: &[&str]) -> String {
    let admin = std::env::var("PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args([
            "--server-bin",
            env!("CARGO_BIN_EXE_diary-realtime"),
            "--server-cpus",
            "",
            "--loadgen-cpus",
            "",
            "--database-url",
            &admin,
        ])
        .output()
        .expect("the loadgen binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loadgen {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_clean(line: &str, scenario: &str) {
    assert!(line.starts_with(scenario), "unexpected output: {line}");
    assert!(
        line.contains("lost=0 dup=0 reordered=0 unexpected=0"),
        "messages went astray: {line}"
    );
    assert!(!line.contains("errors=["), "client errors: {line}");
}

#[test]
fn cursors_edits_and_ratelimit_account_for_every_message() {
    let out = loadgen(&["cursors", "20", "--secs", "2"]);
    assert_clean(&out, "cursors n=20");
    assert!(out.contains("ready=20 failed=0"), "{out}");
    // Every move reached the 9 others in its room: 2 s at 8/s from 20 clients.
    assert!(out.contains("delivered=2880 "), "{out}");

    let out = loadgen(&["edits", "20", "--secs", "2"]);
    assert_clean(&out, "edits n=20");
    assert!(
        out.contains("sent=200 acked_ok=200 refused=0 unacked=0"),
        "{out}"
    );

    let out = loadgen(&["ratelimit", "10", "--secs", "2"]);
    assert_clean(&out, "ratelimit n=10");
}
