-- Who may see that a user is online: '' or 'everyone' (the default), or
-- 'same_as_last_seen'.
ALTER TABLE users ADD COLUMN online_privacy TEXT NOT NULL DEFAULT '';
