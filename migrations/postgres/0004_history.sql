-- Entry history (PROTOCOL.md 5.5). A checkpoint holds the entry's whole content as the
-- Quill delta JSON (`{ops}` as UTF-8 bytes: PostgreSQL text and jsonb refuse U+0000,
-- which a diary text may hold), so it depends on neither the update log nor the
-- snapshots: compaction can never fold one away.
CREATE TABLE IF NOT EXISTS entry_checkpoints (
    id UUID PRIMARY KEY,
    entry_id UUID NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    version BIGINT NOT NULL,
    chars BIGINT NOT NULL,
    content BYTEA NOT NULL
);
-- Listing newest first, paging backwards.
CREATE INDEX IF NOT EXISTS entry_checkpoints_entry_at_idx
    ON entry_checkpoints (entry_id, at DESC, id DESC);
-- Thinning and retention.
CREATE INDEX IF NOT EXISTS entry_checkpoints_at_idx ON entry_checkpoints (at);

-- Who changed the text between the previous checkpoint and this one.
CREATE TABLE IF NOT EXISTS entry_checkpoint_authors (
    checkpoint_id UUID NOT NULL REFERENCES entry_checkpoints(id) ON DELETE CASCADE,
    user_id UUID NOT NULL,
    PRIMARY KEY (checkpoint_id, user_id)
);

-- Who sent updates since the entry's last checkpoint, whichever process logged them;
-- the next checkpoint claims (moves) these rows.
CREATE TABLE IF NOT EXISTS entry_history_authors (
    entry_id UUID NOT NULL,
    user_id UUID NOT NULL,
    PRIMARY KEY (entry_id, user_id)
);

-- The sender of each logged update (NULL for rows logged before this migration).
ALTER TABLE entry_updates ADD COLUMN IF NOT EXISTS author UUID;
