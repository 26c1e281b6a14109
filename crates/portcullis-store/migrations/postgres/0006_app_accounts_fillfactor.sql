-- Every complete roster read sets last_seen_at on every account it saw:
-- 10,000 rows for a 10,000-person app, each reconciliation. last_seen_at is
-- in no index, so with room left on each page PostgreSQL updates the rows
-- in place (HOT) instead of writing a new entry into all five indexes.
-- (SQLite rewrites the row in its b-tree either way; nothing to do there.)
ALTER TABLE app_accounts SET (fillfactor = 70);
