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
    // Each run starts its own server and database, so they can run side by side.
    let (cursors, edits, ratelimit, fair) = std::thread::scope(|s| {
        let cursors = s.spawn(|| loadgen(&["cursors", "20", "--secs", "2"]));
        let edits = s.spawn(|| loadgen(&["edits", "20", "--secs", "2"]));
        let ratelimit = s.spawn(|| loadgen(&["ratelimit", "10", "--secs", "2"]));
        let fair = s.spawn(|| loadgen(&["fair", "50", "--secs", "2"]));
        (
            cursors.join().expect("cursors run"),
            edits.join().expect("edits run"),
            ratelimit.join().expect("ratelimit run"),
            fair.join().expect("fair run"),
        )
    });

    assert_clean(&cursors, "cursors n=20");
    assert!(cursors.contains("ready=20 failed=0"), "{cursors}");
    // Every move reached the 9 others in its room: 2 s at 8/s from 20 clients.
    assert!(cursors.contains("delivered=2880 "), "{cursors}");
    assert!(cursors.contains("merged=0"), "{cursors}");
    assert!(cursors.contains("latest_position p50="), "{cursors}");
    assert!(cursors.contains("rss_mib="), "{cursors}");

    assert_clean(&edits, "edits n=20");
    assert!(
        edits.contains("sent=200 acked_ok=200 refused=0 unacked=0"),
        "{edits}"
    );
    // Both rooms' docs hold every update sent.
    assert!(edits.contains("rooms_converged=2/2"), "{edits}");

    // Five rooms: room 0 light (1/s, 2 updates per socket), four hot (5/s, 10 each).
    assert_clean(&fair, "fair n=50");
    assert!(
        fair.contains("sent=420 acked_ok=420 refused=0 unacked=0"),
        "{fair}"
    );
    assert!(fair.contains("light_rooms=1 "), "{fair}");
    assert!(fair.contains("ack_light p50="), "{fair}");
    assert!(fair.contains("rooms_converged=5/5"), "{fair}");
    // A fresh socket joined a light room every 200 ms of the 2 s run.
    assert!(fair.contains("probe_connect_join n=10 failed=0"), "{fair}");

    assert_clean(&ratelimit, "ratelimit n=10");
    // 20/s against a limit of 10/s: some moves were refused, none of them relayed.
    assert!(!ratelimit.contains(" refused=0 deliveries"), "{ratelimit}");
}

#[test]
fn storm_syncs_every_socket_and_follows_memory_back() {
    // Two entries of 20,000 characters in 5,000 logged updates, ten sockets each.
    let storm = loadgen(&["storm", "20", "--give-back-secs", "1"]);
    assert!(storm.starts_with("storm n=20 docs=2 "), "{storm}");
    assert!(storm.contains("synced=20 failed=0"), "{storm}");
    assert!(!storm.contains("errors=["), "client errors: {storm}");
    assert!(storm.contains(" storm_end="), "{storm}");
    assert!(storm.contains("1s_after_leaving="), "{storm}");
    assert!(!storm.contains("DOCS_STILL_LOADED"), "{storm}");
}
