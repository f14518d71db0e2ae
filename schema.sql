-- diary-realtime: full PostgreSQL schema (also at the repo root as schema.sql).
-- Tables the diary app writes: users, entries, entry_collaborators, friends, notifications.
-- Tables the server owns: ws_connections, active_sessions, entry_updates, entry_snapshots,
-- entry_documents, notification_preferences.

CREATE TABLE IF NOT EXISTS users (
    id UUID PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS entries (
    id UUID PRIMARY KEY,
    owner_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title TEXT NOT NULL DEFAULT '',
    visibility TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'friends')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS entries_owner_idx ON entries (owner_id);

CREATE TABLE IF NOT EXISTS entry_collaborators (
    entry_id UUID NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('editor', 'viewer')),
    PRIMARY KEY (entry_id, user_id)
);

-- A friendship is a row (a, b) or (b, a); lookups go both ways.
CREATE TABLE IF NOT EXISTS friends (
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    friend_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, friend_id)
);
CREATE INDEX IF NOT EXISTS friends_friend_idx ON friends (friend_id);

CREATE TABLE IF NOT EXISTS notifications (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    type VARCHAR(50) NOT NULL,
    title TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    data JSONB,
    is_read BOOLEAN NOT NULL DEFAULT false,
    is_archived BOOLEAN NOT NULL DEFAULT false,
    priority VARCHAR(20) NOT NULL DEFAULT 'normal'
        CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Listing (newest first, per user) and the unread count.
CREATE INDEX IF NOT EXISTS notifications_user_created_idx
    ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS notifications_user_unread_idx
    ON notifications (user_id) WHERE NOT is_read AND NOT is_archived;
-- The listener's catch-up after a lost LISTEN connection: rows created since a time.
CREATE INDEX IF NOT EXISTS notifications_created_idx ON notifications (created_at, id);

CREATE TABLE IF NOT EXISTS notification_preferences (
    user_id UUID NOT NULL,
    type VARCHAR(50) NOT NULL,
    enabled BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, type)
);

-- Every committed notification is announced, whoever inserted it; the server
-- LISTENs and pushes it to the user's sockets.
CREATE OR REPLACE FUNCTION diary_realtime_notify_notification() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('diary_notifications', NEW.id::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS notifications_notify ON notifications;
CREATE TRIGGER notifications_notify AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION diary_realtime_notify_notification();

-- Friendship changes take effect on live sockets.
CREATE OR REPLACE FUNCTION diary_realtime_notify_friends() RETURNS trigger AS $$
DECLARE
    row_data friends;
BEGIN
    IF TG_OP = 'DELETE' THEN row_data := OLD; ELSE row_data := NEW; END IF;
    PERFORM pg_notify('diary_friends',
        lower(TG_OP) || ':' || row_data.user_id::text || ':' || row_data.friend_id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS friends_notify ON friends;
CREATE TRIGGER friends_notify AFTER INSERT OR DELETE ON friends
    FOR EACH ROW EXECUTE FUNCTION diary_realtime_notify_friends();

-- Server-owned: one row per user, current presence.
CREATE TABLE IF NOT EXISTS ws_connections (
    user_id UUID PRIMARY KEY,
    socket_id VARCHAR(255),
    is_online BOOLEAN NOT NULL DEFAULT false,
    status TEXT NOT NULL DEFAULT 'offline',
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ws_connections_online_idx ON ws_connections (user_id) WHERE is_online;

-- Server-owned: one row per socket in an entry room.
CREATE TABLE IF NOT EXISTS active_sessions (
    id BIGSERIAL PRIMARY KEY,
    user_id UUID NOT NULL,
    entry_id UUID NOT NULL,
    socket_id VARCHAR(255) NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS active_sessions_entry_idx ON active_sessions (entry_id);
-- One row per (socket, entry): joining again refreshes it; also serves lookups by socket.
CREATE UNIQUE INDEX IF NOT EXISTS active_sessions_socket_entry_idx
    ON active_sessions (socket_id, entry_id);
CREATE INDEX IF NOT EXISTS active_sessions_last_seen_idx ON active_sessions (last_seen);

-- Server-owned: the collaborative document of each entry. `seq` orders the log;
-- `version` is the entry's version after the update was applied (a Yjs update kept
-- pending by yrs is logged without a version bump). The log is append-only until compaction
-- folds a prefix of it into a snapshot.
CREATE TABLE IF NOT EXISTS entry_updates (
    entry_id UUID NOT NULL,
    seq BIGINT NOT NULL,
    version BIGINT NOT NULL,
    payload BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (entry_id, seq)
);

CREATE TABLE IF NOT EXISTS entry_snapshots (
    entry_id UUID NOT NULL,
    upto_seq BIGINT NOT NULL,
    version BIGINT NOT NULL,
    state BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (entry_id, upto_seq)
);

-- The entry's plain text, readable by the main app.
CREATE TABLE IF NOT EXISTS entry_documents (
    entry_id UUID PRIMARY KEY,
    content TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Several processes append to one entry's log: `seq` comes from one sequence, so rows
-- never collide whoever writes them. It starts above every seq already used (log rows
-- and snapshots' upto_seq), so existing logs keep their order.
CREATE SEQUENCE IF NOT EXISTS entry_updates_seq AS BIGINT OWNED BY entry_updates.seq;
SELECT setval('entry_updates_seq',
    GREATEST((SELECT max(seq) FROM entry_updates), (SELECT max(upto_seq) FROM entry_snapshots), 1));
ALTER TABLE entry_updates ALTER COLUMN seq SET DEFAULT nextval('entry_updates_seq');
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
