-- natter's initial PostgreSQL schema: the same model as store/sqlite's.
-- Times are ms since the epoch (bigint). Free text a client chooses
-- (message content and its preview, client_message_id, device names) is
-- bytea: PostgreSQL's text cannot hold U+0000, which the contract allows.
-- Text columns collate "C": keys order and compare byte by byte, as in
-- SQLite, whatever the database's default collation.

CREATE TABLE users (
    id                text COLLATE "C" PRIMARY KEY,
    username          text COLLATE "C" NOT NULL UNIQUE,
    password_hash     text COLLATE "C" NOT NULL,
    created_at        bigint NOT NULL,
    last_seen_privacy text COLLATE "C" NOT NULL DEFAULT ''
);

CREATE TABLE devices (
    id         text COLLATE "C" PRIMARY KEY,
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id),
    name       bytea NOT NULL DEFAULT '',
    created_at bigint NOT NULL,
    revoked_at bigint -- NULL while active
);
CREATE INDEX devices_by_user ON devices (user_id, created_at, id);

-- Rotated tokens are kept (used_at set) so that presenting one again is
-- recognised as reuse and revokes the device.
CREATE TABLE refresh_tokens (
    hash      text COLLATE "C" PRIMARY KEY,
    device_id text COLLATE "C" NOT NULL REFERENCES devices (id),
    used_at   bigint -- NULL while current
);
CREATE INDEX refresh_tokens_by_device ON refresh_tokens (device_id);

CREATE TABLE blocks (
    blocker text COLLATE "C" NOT NULL REFERENCES users (id),
    blocked text COLLATE "C" NOT NULL REFERENCES users (id),
    PRIMARY KEY (blocker, blocked)
);

CREATE TABLE conversations (
    id                   text COLLATE "C" PRIMARY KEY,
    type                 text COLLATE "C" NOT NULL CHECK (type IN ('user', 'group')),
    group_id             text COLLATE "C" NOT NULL DEFAULT '',
    created_at           bigint NOT NULL,
    last_seq             bigint NOT NULL DEFAULT 0,
    last_message_at      bigint NOT NULL DEFAULT 0,
    last_message_preview bytea NOT NULL DEFAULT ''
);

-- Receipts live here: how far each participant has received and read.
CREATE TABLE participants (
    conversation_id text COLLATE "C" NOT NULL REFERENCES conversations (id),
    user_id         text COLLATE "C" NOT NULL REFERENCES users (id),
    delivered_seq   bigint NOT NULL DEFAULT 0,
    read_seq        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX participants_by_user ON participants (user_id, conversation_id);

CREATE TABLE messages (
    conversation_id   text COLLATE "C" NOT NULL REFERENCES conversations (id),
    seq               bigint NOT NULL,
    id                text COLLATE "C" NOT NULL,
    sender_id         text COLLATE "C" NOT NULL,
    recipient_id      text COLLATE "C" NOT NULL,
    message_type      text COLLATE "C" NOT NULL,
    content           bytea NOT NULL,
    client_message_id bytea NOT NULL,
    server_ts         bigint NOT NULL,
    deleted           boolean NOT NULL DEFAULT false, -- deleted for everyone
    PRIMARY KEY (conversation_id, seq)
);
-- Not unique: a retry that raced past deduplication got a second seq, and
-- the lowest one is the answer.
CREATE INDEX messages_by_client_id ON messages (sender_id, client_message_id, seq);

-- Messages deleted "for me": hidden from one viewer's history.
CREATE TABLE hidden_messages (
    user_id         text COLLATE "C" NOT NULL REFERENCES users (id),
    conversation_id text COLLATE "C" NOT NULL,
    seq             bigint NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq)
);
