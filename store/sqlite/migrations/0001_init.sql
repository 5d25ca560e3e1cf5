-- natter's initial SQLite schema. Times are ms since the epoch.

CREATE TABLE users (
    id                TEXT PRIMARY KEY,
    username          TEXT NOT NULL UNIQUE,
    password_hash     TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    last_seen_privacy TEXT NOT NULL DEFAULT ''
);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    name       TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    revoked_at INTEGER -- NULL while active
);
CREATE INDEX devices_by_user ON devices (user_id, created_at);

-- Rotated tokens are kept (used_at set) so that presenting one again is
-- recognised as reuse and revokes the device.
CREATE TABLE refresh_tokens (
    hash      TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id),
    used_at   INTEGER -- NULL while current
);
CREATE INDEX refresh_tokens_by_device ON refresh_tokens (device_id);

CREATE TABLE blocks (
    blocker TEXT NOT NULL REFERENCES users (id),
    blocked TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;

CREATE TABLE conversations (
    id                   TEXT PRIMARY KEY,
    type                 TEXT NOT NULL CHECK (type IN ('user', 'group')),
    group_id             TEXT NOT NULL DEFAULT '',
    created_at           INTEGER NOT NULL,
    last_seq             INTEGER NOT NULL DEFAULT 0,
    last_message_at      INTEGER NOT NULL DEFAULT 0,
    last_message_preview TEXT NOT NULL DEFAULT ''
);

-- Receipts live here: how far each participant has received and read.
CREATE TABLE participants (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL REFERENCES users (id),
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX participants_by_user ON participants (user_id);

-- A rowid table rather than WITHOUT ROWID: content can be up to 64 KiB.
CREATE TABLE messages (
    conversation_id   TEXT NOT NULL REFERENCES conversations (id),
    seq               INTEGER NOT NULL,
    id                TEXT NOT NULL,
    sender_id         TEXT NOT NULL,
    recipient_id      TEXT NOT NULL,
    message_type      TEXT NOT NULL,
    content           TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    server_ts         INTEGER NOT NULL,
    deleted           INTEGER NOT NULL DEFAULT 0, -- deleted for everyone
    PRIMARY KEY (conversation_id, seq)
);
-- Not unique: a retry that raced past deduplication got a second seq, and
-- the lowest one is the answer.
CREATE INDEX messages_by_client_id ON messages (sender_id, client_message_id, seq);

-- Messages deleted "for me": hidden from one viewer's history.
CREATE TABLE hidden_messages (
    user_id         TEXT NOT NULL REFERENCES users (id),
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq)
) WITHOUT ROWID;
