-- Whether a participant opened the conversation (POST /v1/conversations,
-- or a send): an empty direct conversation is listed only for those who
-- opened it, so a stranger cannot put one into anyone's list. Existing
-- rows: not opened (who opened them is not known); a conversation with
-- a message is listed for both anyway.
ALTER TABLE participants ADD COLUMN opened INTEGER NOT NULL DEFAULT 0;
