//! `auth:refresh` (PROTOCOL.md section 2) on the main namespace and `/notifications`:
//! a refreshed socket outlives its first token; a refused refresh changes nothing.

mod common;

use std::time::Duration;

use common::{spawn_app, Backend, TestApp, TestSocket, SECRET};
use diary_realtime::auth::{unix_now, JwtKeys};
use diary_realtime::ids::UserId;
use rust_socketio::TransportType;
use serde_json::json;

/// A token of `user` that expires `secs` from now (in the past when negative).
fn token_expiring(user: UserId, secret: &str, secs: i64) -> String {
    let exp = unix_now() as i64 + secs;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": user.to_string(), "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn connected(app: &TestApp, ns: &str, token: &str) -> TestSocket {
    let mut socket = app.socket(ns, Some(token), TransportType::Websocket).await;
    socket
        .next("authenticated", Duration::from_secs(5))
        .await
        .expect("authenticated");
    socket
}

#[tokio::test]
async fn a_refreshed_socket_outlives_its_first_token() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = UserId::new_random();
    for ns in ["/", "/notifications"] {
        let mut socket = connected(&app, ns, &token_expiring(user, SECRET, 2)).await;
        let fresh = token_expiring(user, SECRET, 3600);
        let ack = socket.ask("auth:refresh", json!({ "token": fresh })).await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(ack["userId"], json!(user.to_string()));
        let exp = chrono::DateTime::parse_from_rfc3339(ack["exp"].as_str().unwrap()).unwrap();
        assert!(exp.timestamp() > unix_now() as i64 + 3000);
        // Past the first token's `exp` (2 s), with a margin: no expiry, still served.
        assert_eq!(
            socket.next("error", Duration::from_secs(4)).await,
            None,
            "{ns}"
        );
        assert_eq!(socket.ask("pong", json!({})).await, json!({ "ok": true }));
        socket.client.disconnect().await.unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn a_refused_refresh_changes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = UserId::new_random();
    let other = JwtKeys::new("another-secret-entirely-0123456789abcdef");
    let refusals = [
        (
            "another user",
            token_expiring(UserId::new_random(), SECRET, 3600),
        ),
        (
            "bad signature",
            other.mint(user, Duration::from_secs(3600), None),
        ),
        ("expired", token_expiring(user, SECRET, -10)),
        ("garbage", "not.a.jwt".to_string()),
    ];
    let mut socket = connected(&app, "/", &token_expiring(user, SECRET, 3)).await;
    for (why, token) in &refusals {
        let ack = socket.ask("auth:refresh", json!({ "token": token })).await;
        assert_eq!(ack["ok"], false, "{why}: {ack}");
        assert_eq!(ack["error"]["code"], "AUTH_ERROR", "{why}: {ack}");
    }
    let ack = socket.ask("auth:refresh", json!({ "token": 5 })).await;
    assert_eq!(ack["error"]["code"], "VALIDATION_ERROR", "{ack}");
    // The old expiry is still in force.
    let error = socket
        .next("error", Duration::from_secs(6))
        .await
        .expect("the first token's expiry still disconnects");
    assert_eq!(error["code"], "AUTH_ERROR");
    assert_eq!(error["message"], "token expired");
    app.stop().await;
}
