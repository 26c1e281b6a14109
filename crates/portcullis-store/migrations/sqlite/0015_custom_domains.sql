-- Custom domains: an environment served at a customer's own host name once
-- DNS proves the customer controls it. A domain belongs to one environment
-- across the whole installation, and an environment has at most one.
-- `checks` counts the checks since the status last changed (the backoff
-- of the background re-check); `next_check_at` is when it is due.
CREATE TABLE custom_domains (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    status TEXT NOT NULL,
    verification_token TEXT NOT NULL,
    verified_at INTEGER,
    last_checked_at INTEGER,
    next_check_at INTEGER NOT NULL,
    checks INTEGER NOT NULL DEFAULT 0,
    failure TEXT,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX custom_domains_domain_key ON custom_domains (domain);
CREATE UNIQUE INDEX custom_domains_environment_key ON custom_domains (environment_id);
CREATE INDEX custom_domains_due ON custom_domains (next_check_at);
CREATE INDEX custom_domains_environment_inserted ON custom_domains (environment_id, inserted_at, id);
