-- Entry history (PROTOCOL.md 5.5): the same tables as migrations/postgres/0004_history.sql.
-- `at` is RFC 3339 text of fixed width (microseconds, `Z`), so text order is time order.
CREATE TABLE IF NOT EXISTS entry_checkpoints (
    id TEXT PRIMARY KEY,
    entry_id TEXT NOT NULL,
    at TEXT NOT NULL,
    version INTEGER NOT NULL,
    chars INTEGER NOT NULL,
    content BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entry_checkpoints_entry_at_idx
    ON entry_checkpoints (entry_id, at DESC, id DESC);
CREATE INDEX IF NOT EXISTS entry_checkpoints_at_idx ON entry_checkpoints (at);

CREATE TABLE IF NOT EXISTS entry_checkpoint_authors (
    checkpoint_id TEXT NOT NULL REFERENCES entry_checkpoints(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    PRIMARY KEY (checkpoint_id, user_id)
);

CREATE TABLE IF NOT EXISTS entry_history_authors (
    entry_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (entry_id, user_id)
);

ALTER TABLE entry_updates ADD COLUMN author TEXT;
