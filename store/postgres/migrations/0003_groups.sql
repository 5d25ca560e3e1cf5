-- Groups (store.Groups). A group's conversation has its current members
-- as participants; group_memberships keeps every membership interval, so
-- "who was a member at seq s" has one answer whatever happened later.

CREATE TABLE group_chats (
    id              text COLLATE "C" PRIMARY KEY,
    conversation_id text COLLATE "C" NOT NULL UNIQUE REFERENCES conversations (id),
    name            text COLLATE "C" NOT NULL,
    created_by      text COLLATE "C" NOT NULL,
    created_at      bigint NOT NULL,
    member_count    bigint NOT NULL DEFAULT 0
);

CREATE TABLE group_members (
    group_id   text COLLATE "C" NOT NULL REFERENCES group_chats (id),
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id),
    role       text COLLATE "C" NOT NULL CHECK (role IN ('admin', 'member')),
    joined_seq bigint NOT NULL,
    joined_at  bigint NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

-- left_seq is the first seq the member no longer sees; the maximum
-- integer while they are a member.
CREATE TABLE group_memberships (
    group_id   text COLLATE "C" NOT NULL REFERENCES group_chats (id),
    user_id    text COLLATE "C" NOT NULL,
    joined_seq bigint NOT NULL,
    left_seq   bigint NOT NULL DEFAULT 9223372036854775807,
    PRIMARY KEY (group_id, user_id, joined_seq)
);

-- A group message's aggregate status needs the lowest receipts of the
-- conversation, not all 500 of them.
CREATE INDEX participants_by_delivered ON participants (conversation_id, delivered_seq, user_id);
CREATE INDEX participants_by_read ON participants (conversation_id, read_seq, user_id);

-- When each status change happened, for "message info".
CREATE TABLE receipt_log (
    conversation_id text COLLATE "C" NOT NULL,
    seq             bigint NOT NULL,
    user_id         text COLLATE "C" NOT NULL,
    status          text COLLATE "C" NOT NULL,
    ts              bigint NOT NULL,
    PRIMARY KEY (conversation_id, seq, user_id, status)
);
