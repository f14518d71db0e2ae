//! History SQL both backends run: the statements are the same text (`$n` parameters
//! work on both), only how ids and times are bound differs (`UUID`/`TIMESTAMPTZ` on
//! PostgreSQL, hyphenated and fixed-width RFC 3339 text on SQLite), and thinning's
//! time buckets, which [`thin`] takes from the backend.

/// The newest checkpoint of an entry (`$1`), with its content.
pub(super) const NEWEST: &str = "SELECT id, at, version, chars, content FROM entry_checkpoints
     WHERE entry_id = $1 ORDER BY at DESC, id DESC LIMIT 1";

pub(super) const INSERT: &str =
    "INSERT INTO entry_checkpoints (id, entry_id, at, version, chars, content)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Takes the entry's (`$1`) recorded authors: the new checkpoint now holds them.
pub(super) const CLAIM_AUTHORS: &str =
    "DELETE FROM entry_history_authors WHERE entry_id = $1 RETURNING user_id";

pub(super) const INSERT_AUTHOR: &str =
    "INSERT INTO entry_checkpoint_authors (checkpoint_id, user_id) VALUES ($1, $2)
     ON CONFLICT DO NOTHING";

/// Records that `$2` sent an update of entry `$1` since its last checkpoint.
pub(super) const RECORD_AUTHOR: &str =
    "INSERT INTO entry_history_authors (entry_id, user_id) VALUES ($1, $2)
     ON CONFLICT DO NOTHING";

/// Where `before` (`$1`) sits, if it is a checkpoint of entry `$2`.
pub(super) const POSITION: &str =
    "SELECT at FROM entry_checkpoints WHERE id = $1 AND entry_id = $2";

/// The newest `$2` checkpoints of entry `$1`.
pub(super) const PAGE: &str = "SELECT id, at, version, chars FROM entry_checkpoints
     WHERE entry_id = $1 ORDER BY at DESC, id DESC LIMIT $2";

/// The newest `$2` checkpoints of entry `$1` older than the one at (`$3`, `$4`).
pub(super) const PAGE_BEFORE: &str = "SELECT id, at, version, chars FROM entry_checkpoints
     WHERE entry_id = $1 AND (at < $3 OR (at = $3 AND id < $4))
     ORDER BY at DESC, id DESC LIMIT $2";

pub(super) const READ: &str = "SELECT id, at, version, chars, content FROM entry_checkpoints
     WHERE id = $1 AND entry_id = $2";

/// Drops every checkpoint older than `$1`; their authors go with them (cascade).
pub(super) const EXPIRE: &str = "DELETE FROM entry_checkpoints WHERE at < $1";

/// `(checkpoint_id, user_id)` of the checkpoints bound as `$1..=$count`.
pub(super) fn authors_of(count: usize) -> String {
    let params: Vec<String> = (1..=count).map(|i| format!("${i}")).collect();
    format!(
        "SELECT checkpoint_id, user_id FROM entry_checkpoint_authors WHERE checkpoint_id IN ({})",
        params.join(", ")
    )
}

/// Keeps, among checkpoints older than `$1`, the newest of each entry and hour, and
/// among those older than `$2`, the newest of each entry and day. `bucket` is the
/// backend's expression for the hour (or, when `at < $2`, the day) of `at`.
pub(super) fn thin(bucket: &str) -> String {
    format!(
        "DELETE FROM entry_checkpoints WHERE id IN (
             SELECT id FROM (
                 SELECT id, row_number() OVER (
                     PARTITION BY entry_id, at < $2, {bucket}
                     ORDER BY at DESC, id DESC) AS rank
                 FROM entry_checkpoints WHERE at < $1
             ) ranked WHERE rank > 1)"
    )
}
