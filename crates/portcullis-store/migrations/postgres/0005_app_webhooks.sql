-- Inbound app webhooks (Stripe `customer.*` events) already processed, by
-- the app's event id: apps deliver at least once, so a redelivery must
-- change nothing. Rows older than the apps' retry horizon are pruned.
CREATE TABLE app_webhook_events (
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, event_id)
);
CREATE INDEX app_webhook_events_received ON app_webhook_events (app_id, received_at);
