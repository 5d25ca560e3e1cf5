-- Push: one registration per device (a token on one device at most),
-- conversation mutes per user, quiet hours per user. Conversations are
-- not referenced: with a cassandra+ store they live elsewhere.
CREATE TABLE push_tokens (
    device_id  TEXT PRIMARY KEY REFERENCES devices (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    platform   TEXT NOT NULL CHECK (platform IN ('ios', 'android')),
    token      TEXT NOT NULL UNIQUE,
    updated_at INTEGER NOT NULL
);
CREATE INDEX push_tokens_by_user ON push_tokens (user_id);

CREATE TABLE mutes (
    user_id         TEXT NOT NULL REFERENCES users (id),
    conversation_id TEXT NOT NULL,
    until           INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;

CREATE TABLE quiet_hours (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    start   TEXT NOT NULL,
    "end"   TEXT NOT NULL,
    tz      TEXT NOT NULL
);
