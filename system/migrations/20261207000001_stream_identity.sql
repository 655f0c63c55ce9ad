-- The server's own receive time of each message (the sender's clock stays in sent_at_us).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS received_at_us BIGINT NOT NULL DEFAULT 0;

-- The id each message stream keeps for its deployment, named in login_ok's `stream.id`.
CREATE TABLE IF NOT EXISTS stream_identity (
    stream TEXT PRIMARY KEY,
    id     TEXT NOT NULL
);
