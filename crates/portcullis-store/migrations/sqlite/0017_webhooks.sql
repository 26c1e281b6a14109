-- Webhooks: customers' endpoints that hear of committed changes, signed per
-- Standard Webhooks. The signing secret is sealed with the master key (it
-- must be read back to sign); after a rotation the previous one signs too
-- until `previous_secret_expires_at`.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT,
    events TEXT NOT NULL,
    active INTEGER NOT NULL,
    signing_secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_expires_at INTEGER,
    disabled_reason TEXT,
    failing_since INTEGER,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX webhooks_environment_inserted ON webhooks (environment_id, inserted_at, id);
CREATE INDEX webhooks_active ON webhooks (environment_id) WHERE active;

-- One message to one webhook. Written in the transaction of the change
-- (so a committed change always has its deliveries, a rolled-back one
-- none), sent after commit by the delivery worker. `message_id` is the
-- outbox event's id, the `webhook-id` receivers deduplicate on. A claim
-- moves `next_attempt_at` past the lease, so one column says when a
-- pending delivery is due, for its first attempt, a retry, or a takeover.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    message_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    attempts_left INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    response_status INTEGER,
    response_excerpt TEXT,
    latency_ms INTEGER,
    last_error TEXT,
    last_attempt_at INTEGER,
    delivered_at INTEGER,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- Per webhook: the worker claims from each webhook's own range, so a
-- backlog of one (a dead endpoint's) costs the others nothing.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_environment_inserted ON webhook_deliveries (environment_id, inserted_at, id);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, inserted_at, id);
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (updated_at) WHERE status <> 'pending';

-- Old outbox rows are pruned by age.
CREATE INDEX outbox_events_created ON outbox_events (created_at);
