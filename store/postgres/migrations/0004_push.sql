-- Push: one registration per device (a token on one device at most),
-- conversation mutes per user, quiet hours per user. Conversations are
-- not referenced: with a cassandra+ store they live elsewhere.
CREATE TABLE push_tokens (
    device_id  text COLLATE "C" PRIMARY KEY REFERENCES devices (id),
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id),
    platform   text NOT NULL CHECK (platform IN ('ios', 'android')),
    token      text COLLATE "C" NOT NULL UNIQUE,
    updated_at bigint NOT NULL
);
CREATE INDEX push_tokens_by_user ON push_tokens (user_id);

CREATE TABLE mutes (
    user_id         text COLLATE "C" NOT NULL REFERENCES users (id),
    conversation_id text COLLATE "C" NOT NULL,
    until           bigint NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);

CREATE TABLE quiet_hours (
    user_id text COLLATE "C" PRIMARY KEY REFERENCES users (id),
    start   text NOT NULL,
    "end"   text NOT NULL,
    tz      text NOT NULL
);
