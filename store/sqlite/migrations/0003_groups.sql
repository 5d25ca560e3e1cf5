-- Groups (store.Groups). A group's conversation has its current members
-- as participants; group_memberships keeps every membership interval, so
-- "who was a member at seq s" has one answer whatever happened later.

CREATE TABLE group_chats (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL UNIQUE REFERENCES conversations (id),
    name            TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    member_count    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE group_members (
    group_id   TEXT NOT NULL REFERENCES group_chats (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    role       TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_seq INTEGER NOT NULL,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;

-- left_seq is the first seq the member no longer sees; the maximum
-- integer while they are a member.
CREATE TABLE group_memberships (
    group_id   TEXT NOT NULL REFERENCES group_chats (id),
    user_id    TEXT NOT NULL,
    joined_seq INTEGER NOT NULL,
    left_seq   INTEGER NOT NULL DEFAULT 9223372036854775807,
    PRIMARY KEY (group_id, user_id, joined_seq)
) WITHOUT ROWID;

-- A group message's aggregate status needs the lowest receipts of the
-- conversation, not all 500 of them.
CREATE INDEX participants_by_delivered ON participants (conversation_id, delivered_seq, user_id);
CREATE INDEX participants_by_read ON participants (conversation_id, read_seq, user_id);

-- When each status change happened, for "message info".
CREATE TABLE receipt_log (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    user_id         TEXT NOT NULL,
    status          TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, user_id, status)
) WITHOUT ROWID;
