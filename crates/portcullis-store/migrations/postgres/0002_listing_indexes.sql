-- Indexes for the users listing's sort orders, so each page reads an index
-- range instead of sorting the environment's whole table. `email` sorts are
-- case-insensitive and use users_email_key on lower(email).
CREATE INDEX users_environment_updated ON users (environment_id, updated_at, id);
CREATE INDEX users_environment_first_name ON users (environment_id, (COALESCE(first_name, '')), id);
CREATE INDEX users_environment_last_name ON users (environment_id, (COALESCE(last_name, '')), id);
-- Audit events are filtered by action and target, newest first.
CREATE INDEX audit_events_environment_action ON audit_events (environment_id, action, occurred_at);
CREATE INDEX audit_events_environment_target ON audit_events (environment_id, target_id, occurred_at);
