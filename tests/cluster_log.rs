//! The entry log with several writers (PostgreSQL): rows never collide whatever tickets
//! the writers use, a load returns every row, and a compaction runs on one process at a
//! time and deletes exactly the rows it read.

mod common;

use bytes::Bytes;
use common::{test_settings, Backend, TestDb};
use diary_realtime::ids::EntryId;
use diary_realtime::store::{self, Compaction, Folded, LoggedUpdate, StoredDoc};

fn row(entry: EntryId, seq: i64, payload: &'static [u8]) -> LoggedUpdate {
    LoggedUpdate {
        entry,
        seq,
        version: seq,
        payload: Bytes::from_static(payload),
        author: None,
    }
}

/// A fold that records what it was given and stores the payloads concatenated.
fn concat(stored: &StoredDoc) -> Result<Folded, String> {
    let mut state = stored
        .snapshot
        .as_ref()
        .map(|s| s.state.to_vec())
        .unwrap_or_default();
    for u in &stored.updates {
        state.extend_from_slice(&u.payload);
    }
    Ok(Folded {
        text: String::from_utf8_lossy(&state).into_owned(),
        state: Bytes::from(state),
        version: 7,
    })
}

#[tokio::test]
async fn two_writers_share_one_log_and_compaction_keeps_rows_it_did_not_read() {
    let (db, target) = TestDb::create(Backend::Postgres).await;
    let settings = test_settings(target.clone());
    let store = store::open(&settings).await.unwrap();
    let entry = EntryId::new_random();

    // Two writers, each numbering its own tickets from 1: no collision.
    store
        .append_updates(&[row(entry, 1, b"a"), row(entry, 2, b"b")])
        .await
        .unwrap();
    store.append_updates(&[row(entry, 1, b"c")]).await.unwrap();
    let loaded = store.load_doc(entry).await.unwrap();
    assert_eq!(loaded.updates.len(), 3);

    // While another process holds the entry's compaction lock, a compaction is skipped.
    let diary_realtime::config::DatabaseTarget::Postgres(url) = &target else {
        unreachable!()
    };
    let other = sqlx::PgPool::connect(url).await.unwrap();
    let mut holder = other.begin().await.unwrap();
    let (high, low) = entry.0.as_u64_pair();
    let key = i64::from_ne_bytes((high ^ low).to_ne_bytes());
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(key)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert!(locked);
    assert_eq!(
        store.compact(entry, &concat).await.unwrap(),
        Compaction::Busy
    );
    holder.rollback().await.unwrap();
    assert_eq!(store.load_doc(entry).await.unwrap().updates.len(), 3);

    assert_eq!(
        store.compact(entry, &concat).await.unwrap(),
        Compaction::Done
    );
    let compacted = store.load_doc(entry).await.unwrap();
    assert!(compacted.updates.is_empty());
    let snapshot = compacted.snapshot.clone().unwrap();
    assert_eq!(snapshot.state.len(), 3);
    assert_eq!(snapshot.version, 7);
    assert_eq!(
        store.load_text(entry).await.unwrap().unwrap().content.len(),
        3
    );

    // A row committed after the compaction read the log (whatever its seq) is loaded,
    // and the next compaction folds it in.
    store.append_updates(&[row(entry, 1, b"d")]).await.unwrap();
    let after = store.load_doc(entry).await.unwrap();
    assert_eq!(after.updates.len(), 1);
    assert_eq!(after.updates[0].payload.as_ref(), b"d");
    assert_eq!(
        store.compact(entry, &concat).await.unwrap(),
        Compaction::Done
    );
    let again = store.load_doc(entry).await.unwrap();
    assert!(again.updates.is_empty());
    assert_eq!(again.snapshot.unwrap().state.len(), 4);

    other.close().await;
    db.drop_database().await;
}
