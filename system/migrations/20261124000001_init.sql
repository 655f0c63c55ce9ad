-- Users who may log in, with their presence.
CREATE TABLE IF NOT EXISTS users (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'away', 'offline')),
    last_seen     TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every accepted message, copied from the Redis stream by the sync worker.
CREATE TABLE IF NOT EXISTS messages (
    seq        BIGINT PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    sender     TEXT NOT NULL,
    body       TEXT NOT NULL,
    sent_at_us BIGINT NOT NULL,
    stored_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Where the sync worker is in each stream; updated in the same transaction as the rows.
CREATE TABLE IF NOT EXISTS sync_cursor (
    stream   TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
