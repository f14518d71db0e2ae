//! Entry history (PROTOCOL.md 5.5) on both backends: the store's checkpoints (claimed
//! authors, exact content, paging, thinning and retention, untouched by compaction),
//! and the server's checkpoints as REST and the socket events show them.

mod common;

use std::time::Duration;

use bytes::Bytes;
use chrono::{Timelike, Utc};
use common::{spawn_app_with, test_settings, Backend, TestApp, TestDb, TestSocket};
use diary_realtime::ids::{CheckpointId, EntryId, UserId};
use diary_realtime::store::history::{HistoryPage, NewCheckpoint, PageError, Pruning, Taken};
use diary_realtime::store::{self, EntryRole, Folded, LoggedUpdate, NewEntry, NewUser, Visibility};
use rust_socketio::TransportType;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);

fn content(text: &str) -> Bytes {
    Bytes::from(serde_json::to_vec(&json!({ "ops": [{ "insert": text }] })).unwrap())
}

fn checkpoint(entry: EntryId, text: &str, authors: Vec<UserId>) -> NewCheckpoint {
    NewCheckpoint {
        entry,
        version: text.len() as i64,
        chars: text.encode_utf16().count() as i64,
        content: content(text),
        authors,
    }
}

fn page(before: Option<CheckpointId>, limit: u32) -> HistoryPage {
    HistoryPage { before, limit }
}

async fn store_checkpoints(backend: Backend) {
    let (db, target) = TestDb::create(backend).await;
    let store = store::open(&test_settings(target)).await.unwrap();
    let (entry, other_entry) = (EntryId::new_random(), EntryId::new_random());
    let (alice, bob) = (UserId::new_random(), UserId::new_random());
    let mut sorted = vec![alice, bob];
    sorted.sort();

    // The log records who sent each update; the next checkpoint claims them.
    store
        .append_updates(&[LoggedUpdate {
            entry,
            seq: 1,
            version: 1,
            payload: Bytes::from_static(b"\x00\x00"),
            author: Some(alice),
        }])
        .await
        .unwrap();
    let Taken::New(first) = store
        .take_checkpoint(&checkpoint(entry, "one", vec![bob]))
        .await
        .unwrap()
    else {
        panic!("the first checkpoint is new");
    };
    let mut authors = first.authors.clone();
    authors.sort();
    assert_eq!(authors, sorted);
    // The same content again (another process, or nothing changed): nothing stored.
    match store
        .take_checkpoint(&checkpoint(entry, "one", vec![]))
        .await
        .unwrap()
    {
        Taken::Unchanged(meta) => assert_eq!(meta.id, first.id),
        Taken::New(_) => panic!("an unchanged content was stored twice"),
    }
    let Taken::New(second) = store
        .take_checkpoint(&checkpoint(entry, "two", vec![]))
        .await
        .unwrap()
    else {
        panic!("a changed content is new");
    };
    assert!(second.authors.is_empty(), "authors are claimed once");
    // Exact content, U+0000 and astral characters included.
    let odd = "nul \u{0} and 🦀 end";
    let Taken::New(third) = store
        .take_checkpoint(&checkpoint(entry, odd, vec![bob]))
        .await
        .unwrap()
    else {
        panic!("new");
    };
    store
        .take_checkpoint(&checkpoint(other_entry, "elsewhere", vec![]))
        .await
        .unwrap();
    let read = store
        .read_checkpoint(entry, third.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.content, content(odd));
    assert_eq!(read.meta.chars, odd.encode_utf16().count() as i64);
    assert_eq!(read.meta.authors, vec![bob]);
    assert!(store
        .read_checkpoint(other_entry, third.id)
        .await
        .unwrap()
        .is_none());

    // Newest first, paging backwards.
    let ids = |metas: Vec<diary_realtime::store::history::CheckpointMeta>| {
        metas.into_iter().map(|m| m.id).collect::<Vec<_>>()
    };
    let newest = store
        .list_checkpoints(entry, page(None, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(newest), vec![third.id, second.id]);
    let older = store
        .list_checkpoints(entry, page(Some(second.id), 20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(older), vec![first.id]);
    for unknown in [CheckpointId::new_random(), third.id] {
        let entry = if unknown == third.id {
            other_entry
        } else {
            entry
        };
        assert_eq!(
            store
                .list_checkpoints(entry, page(Some(unknown), 20))
                .await
                .unwrap()
                .unwrap_err(),
            PageError::UnknownBefore
        );
    }

    // Compaction folds the log, never the history.
    let folded = store
        .compact(entry, &|_| {
            Ok(Folded {
                state: Bytes::from_static(b"\x00\x00"),
                version: 1,
                text: String::new(),
            })
        })
        .await
        .unwrap();
    assert_eq!(folded, store::Compaction::Done);
    let all = store
        .list_checkpoints(entry, page(None, 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.len(), 3);

    // Seen two days later: one checkpoint per entry and hour is kept, the newest.
    let hours: std::collections::HashSet<u32> = all.iter().map(|m| m.at.hour()).collect();
    let rules = Pruning::with_retention(chrono::Duration::days(90));
    let pruned = store
        .prune_checkpoints(Utc::now() + chrono::Duration::days(2), rules)
        .await
        .unwrap();
    assert_eq!(pruned.thinned as usize, all.len() - hours.len());
    assert_eq!(pruned.expired, 0);
    let kept = store
        .list_checkpoints(entry, page(None, 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept[0].id, third.id, "the newest of its hour stays");
    assert_eq!(kept.len(), hours.len());
    // Past the retention, everything goes, authors with it.
    let pruned = store
        .prune_checkpoints(Utc::now() + chrono::Duration::days(91), rules)
        .await
        .unwrap();
    assert_eq!(pruned.expired as usize, hours.len() + 1);
    assert!(store
        .read_checkpoint(entry, third.id)
        .await
        .unwrap()
        .is_none());
    drop(store);
    db.drop_database().await;
}

#[tokio::test]
async fn postgres_store_checkpoints() {
    store_checkpoints(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_store_checkpoints() {
    store_checkpoints(Backend::Sqlite).await;
}

struct People {
    entry: EntryId,
    owner: UserId,
    editor: UserId,
    viewer: UserId,
    stranger: UserId,
}

async fn seed(app: &TestApp) -> People {
    let store = &app.state.store;
    let people = People {
        entry: EntryId::new_random(),
        owner: UserId::new_random(),
        editor: UserId::new_random(),
        viewer: UserId::new_random(),
        stranger: UserId::new_random(),
    };
    for (id, name) in [
        (people.owner, "Olive"),
        (people.editor, "Eddie"),
        (people.viewer, "Vera"),
        (people.stranger, "Stan"),
    ] {
        store
            .upsert_user(&NewUser {
                id,
                username: name.to_lowercase(),
                display_name: Some(name.into()),
            })
            .await
            .unwrap();
    }
    store
        .upsert_entry(&NewEntry {
            id: people.entry,
            owner: people.owner,
            title: "t".into(),
            visibility: Visibility::Private,
        })
        .await
        .unwrap();
    store
        .set_collaborator(people.entry, people.editor, EntryRole::Editor)
        .await
        .unwrap();
    store
        .set_collaborator(people.entry, people.viewer, EntryRole::Viewer)
        .await
        .unwrap();
    people
}

async fn get(app: &TestApp, path: &str, user: Option<UserId>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(app.url(path));
    if let Some(user) = user {
        req = req.bearer_auth(app.token(user));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn joined(app: &TestApp, user: UserId, entry: EntryId) -> TestSocket {
    let mut socket = app
        .socket("/", Some(&app.token(user)), TransportType::Websocket)
        .await;
    socket
        .next("authenticated", WAIT)
        .await
        .expect("authenticated");
    let ack = socket
        .ask("join_entry_room", json!({ "entryId": entry }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    socket
}

/// The entry's checkpoints once there are at least `count` (checkpoints are taken in
/// the background: on the interval, or when the entry unloads).
async fn checkpoints_when(app: &TestApp, people: &People, count: usize) -> Vec<Value> {
    let path = format!("/api/entries/{}/history", people.entry);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(app, &path, Some(people.owner)).await;
        assert_eq!(status, 200, "{body}");
        let list = body["checkpoints"].as_array().cloned().unwrap_or_default();
        if list.len() >= count {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} checkpoints",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn server_history(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.history_interval = Duration::from_secs(1)).await;
    let people = seed(&app).await;
    let entry = people.entry;
    let owner = joined(&app, people.owner, entry).await;
    let editor = joined(&app, people.editor, entry).await;
    let text = "Dear diary 🦀";
    let ack = owner
        .ask(
            "entry_edit",
            json!({ "entryId": entry, "delta": { "ops": [{ "insert": text }] } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = editor
        .ask(
            "entry_edit",
            json!({ "entryId": entry, "delta": { "ops": [{ "retain": 5 }, { "insert": "X", "attributes": { "bold": true } }] } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let expected = "Dear Xdiary 🦀";

    // The interval checkpoint: exact content, both authors by name.
    let list = checkpoints_when(&app, &people, 1).await;
    let newest = &list[0];
    let mut names: Vec<&str> = newest["authors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["displayName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["Eddie", "Olive"]);
    assert_eq!(newest["chars"], expected.encode_utf16().count());
    let id = newest["id"].as_str().unwrap().to_string();
    let (status, read) = get(
        &app,
        &format!("/api/entries/{entry}/history/{id}"),
        Some(people.viewer),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["content"], expected);
    assert_eq!(
        read["delta"]["ops"][1],
        json!({ "insert": "X", "attributes": { "bold": true } })
    );
    assert_eq!(read["checkpoint"], *newest);

    // Socket and REST agree; a viewer who joined may list and read.
    let (_, rest) = get(
        &app,
        &format!("/api/entries/{entry}/history?limit=5"),
        Some(people.viewer),
    )
    .await;
    let viewer = joined(&app, people.viewer, entry).await;
    let mut listed = viewer
        .ask("entry_history", json!({ "entryId": entry, "limit": 5 }))
        .await;
    assert_eq!(
        listed.as_object_mut().unwrap().remove("ok"),
        Some(json!(true))
    );
    assert_eq!(listed, rest);
    let mut read_ack = viewer
        .ask("entry_checkpoint", json!({ "entryId": entry, "id": id }))
        .await;
    assert_eq!(
        read_ack.as_object_mut().unwrap().remove("ok"),
        Some(json!(true))
    );
    assert_eq!(read_ack, read);

    // Bad requests change nothing and say why.
    for bad in [
        json!({ "limit": 0 }),
        json!({ "limit": 101 }),
        json!({ "limit": "5" }),
        json!({ "before": 7 }),
        json!({ "before": CheckpointId::new_random() }),
    ] {
        let mut request = bad.clone();
        request["entryId"] = json!(entry);
        let ack = viewer.ask("entry_history", request).await;
        assert_eq!(ack["error"]["code"], "VALIDATION_ERROR", "{bad}: {ack}");
    }
    let ack = viewer
        .ask(
            "entry_checkpoint",
            json!({ "entryId": entry, "id": CheckpointId::new_random() }),
        )
        .await;
    assert_eq!(ack["error"]["code"], "VALIDATION_ERROR");
    for query in [
        "limit=0",
        "limit=abc",
        "before=nope",
        &format!("before={}", CheckpointId::new_random()),
    ] {
        let (status, body) = get(
            &app,
            &format!("/api/entries/{entry}/history?{query}"),
            Some(people.owner),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{query}"
        );
    }
    let (status, _) = get(
        &app,
        &format!(
            "/api/entries/{entry}/history/{}",
            CheckpointId::new_random()
        ),
        Some(people.owner),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(
        &app,
        &format!("/api/entries/{entry}/history/not-an-id"),
        Some(people.owner),
    )
    .await;
    assert_eq!(status, 404);

    // Strangers learn nothing.
    let (status, body) = get(
        &app,
        &format!("/api/entries/{entry}/history"),
        Some(people.stranger),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ACCESS_DENIED"))
    );
    let (status, _) = get(
        &app,
        &format!("/api/entries/{entry}/history/{id}"),
        Some(people.stranger),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(&app, &format!("/api/entries/{entry}/history"), None).await;
    assert_eq!(status, 401);
    let mut stranger = app
        .socket(
            "/",
            Some(&app.token(people.stranger)),
            TransportType::Websocket,
        )
        .await;
    stranger
        .next("authenticated", WAIT)
        .await
        .expect("authenticated");
    let ack = stranger
        .ask("entry_history", json!({ "entryId": entry }))
        .await;
    assert_eq!(ack["error"]["code"], "ACCESS_DENIED");
    let ack = stranger
        .ask("entry_checkpoint", json!({ "entryId": entry, "id": id }))
        .await;
    assert_eq!(ack["error"]["code"], "ACCESS_DENIED");

    // A change, then everyone leaves: the unload takes a checkpoint of it at once.
    let ack = owner
        .ask(
            "entry_edit",
            json!({ "entryId": entry, "delta": { "ops": [{ "delete": 5 }] } }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    for socket in [&owner, &editor, &viewer] {
        socket.client.disconnect().await.unwrap();
    }
    let list = checkpoints_when(&app, &people, 2).await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    let (_, read) = get(
        &app,
        &format!("/api/entries/{entry}/history/{id}"),
        Some(people.owner),
    )
    .await;
    assert_eq!(read["content"], "Xdiary 🦀");

    // History survives a restart.
    let mut app = app;
    app.shutdown().await;
    let settings = app.state.settings.clone();
    let again = common::spawn_settings(settings, None).await;
    let (status, body) = get(
        &again,
        &format!("/api/entries/{entry}/history"),
        Some(people.owner),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["checkpoints"].as_array().unwrap().len(), list.len());
    again.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn postgres_server_history() {
    server_history(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_server_history() {
    server_history(Backend::Sqlite).await;
}
