//! The server foundation in-process (PROTOCOL.md sections 1, 2 and 8), on PostgreSQL
//! and on the embedded SQLite store, with `rust_socketio` as the client. The JavaScript
//! suite (`tests/js/foundation.test.mjs`) covers the same ground with the official
//! client, and more.

mod common;

use std::time::Duration;

use common::{spawn_app, spawn_app_with, Backend, TestApp};
use diary_realtime::config::{Cli, DatabaseTarget};
use diary_realtime::ids::UserId;
use rust_socketio::TransportType;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let res = reqwest::get(app.url(path)).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Connects, authenticates and answers on every namespace, over both transports, and
/// `/health` counts the sockets.
async fn connect_authenticate_and_health(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = UserId::new_random();
    let token = app.token(user);
    let cases = [
        ("/", TransportType::Polling),
        ("/realtime/ws", TransportType::Websocket),
        ("/notifications", TransportType::Any),
    ];
    let mut sockets = Vec::new();
    for (ns, transport) in cases {
        let mut socket = app.socket(ns, Some(&token), transport).await;
        let auth = socket
            .next("authenticated", WAIT)
            .await
            .unwrap_or_else(|| panic!("no authenticated on {ns}"));
        assert_eq!(auth["userId"], json!(user.to_string()));
        let stamp = auth["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
        assert_eq!(socket.ask("pong", json!({})).await, json!({ "ok": true }));
        sockets.push(socket);
    }

    let (status, health) = get_json(&app, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["connections"], 3);
    assert!(health["timestamp"].is_string());
    let (status, _) = get_json(&app, "/ready").await;
    assert_eq!(status, 200);

    for socket in &sockets {
        socket.client.disconnect().await.unwrap();
    }
    let mut connections = 3;
    for _ in 0..100 {
        connections = get_json(&app, "/health").await.1["connections"]
            .as_u64()
            .unwrap();
        if connections == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(connections, 0, "sockets still counted after disconnect");
    app.stop().await;
}

#[tokio::test]
async fn postgres_connect_authenticate_and_health() {
    connect_authenticate_and_health(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_connect_authenticate_and_health() {
    connect_authenticate_and_health(Backend::Sqlite).await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_auth_error() {
    let app = spawn_app(Backend::Postgres).await;
    let other_secret = diary_realtime::auth::JwtKeys::new("another-secret-0123456789abcdef-xyz");
    let forged = other_secret.mint(UserId::new_random(), Duration::from_secs(60), None);
    let cases = [
        (None, "AUTH_ERROR: missing token"),
        (Some("garbage"), "AUTH_ERROR: invalid token"),
        (Some(forged.as_str()), "AUTH_ERROR: invalid token"),
    ];
    for (token, expected) in cases {
        let mut socket = app.socket("/", token, TransportType::Websocket).await;
        let error = socket
            .next("connect_error", WAIT)
            .await
            .unwrap_or_else(|| panic!("no connect_error for {token:?}"));
        let text = error.as_str().unwrap();
        assert!(text.contains(expected), "{text}");
        assert!(socket
            .next("authenticated", Duration::from_millis(200))
            .await
            .is_none());
    }
    let (_, health) = get_json(&app, "/health").await;
    assert_eq!(health["connections"], 0);
    app.stop().await;
}

#[tokio::test]
async fn the_connection_cap_refuses_one_more_socket() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.max_connections_per_user = 1).await;
    let token = app.token(UserId::new_random());
    let mut first = app
        .socket("/", Some(&token), TransportType::Websocket)
        .await;
    assert!(first.next("authenticated", WAIT).await.is_some());
    let mut second = app
        .socket("/notifications", Some(&token), TransportType::Websocket)
        .await;
    let error = second.next("connect_error", WAIT).await.unwrap();
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("RATE_LIMIT_EXCEEDED: too many connections"),
        "{error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_expiring_token_gets_auth_error_then_disconnect() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app
        .state
        .keys
        .mint(UserId::new_random(), Duration::from_secs(1), None);
    let mut socket = app
        .socket("/", Some(&token), TransportType::Websocket)
        .await;
    assert!(socket.next("authenticated", WAIT).await.is_some());
    let error = socket.next("error", WAIT).await.expect("no error event");
    assert_eq!(error["code"], "AUTH_ERROR");
    assert_eq!(error["message"], "token expired");
    assert!(
        socket.next("close", WAIT).await.is_some(),
        "not disconnected"
    );
    app.stop().await;
}

#[tokio::test]
async fn stopping_with_clients_connected_is_prompt() {
    let mut app = spawn_app(Backend::Postgres).await;
    let token = app.token(UserId::new_random());
    let mut sockets = Vec::new();
    for transport in [
        TransportType::Websocket,
        TransportType::Polling,
        TransportType::Any,
    ] {
        let mut socket = app.socket("/", Some(&token), transport).await;
        assert!(socket.next("authenticated", WAIT).await.is_some());
        sockets.push(socket);
    }
    assert_eq!(app.state.connections.total(), 3);
    let took = app.shutdown().await;
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    // Every socket was disconnected server-side (rust_socketio reports no `close` when
    // the transport, rather than a DISCONNECT packet, ends the connection).
    assert_eq!(app.state.connections.total(), 0);
    drop(sockets);
    app.stop().await;
}

#[tokio::test]
async fn ready_turns_503_when_the_database_stops_answering() {
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(get_json(&app, "/ready").await.0, 200);
    // Its backends are terminated and its database is gone: the next ping fails.
    app.drop_database_now().await;
    let (status, body) = get_json(&app, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(get_json(&app, "/health").await.0, 200);
    app.stop().await;
}

#[test]
fn without_database_url_the_store_is_the_embedded_sqlite_file() {
    use clap::Parser;
    let mut cli = Cli::try_parse_from(["diary-realtime"]).unwrap();
    cli.config.database_url = None;
    let settings = cli.config.into_settings().unwrap();
    assert_eq!(
        settings.database,
        DatabaseTarget::Sqlite("./data/diary-realtime.db".into())
    );
}
