-- Rooms besides the lobby (which is implicit and has no row): their kind and creator.
CREATE TABLE IF NOT EXISTS rooms (
    room_id    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('public', 'private', 'direct')),
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Who is in which room, with their role.
CREATE TABLE IF NOT EXISTS room_members (
    room_id   TEXT NOT NULL REFERENCES rooms (room_id),
    user_id   TEXT NOT NULL,
    role      TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_members_user_id ON room_members (user_id);

-- Every accepted room message, copied from the shard streams by the sync worker;
-- seq is the room's own gap-free sequence.
CREATE TABLE IF NOT EXISTS room_messages (
    room_id        TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    message_id     TEXT NOT NULL,
    sender         TEXT NOT NULL,
    body           TEXT NOT NULL,
    sent_at_us     BIGINT NOT NULL DEFAULT 0,
    received_at_us BIGINT NOT NULL DEFAULT 0,
    stored_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq),
    UNIQUE (room_id, message_id)
);
