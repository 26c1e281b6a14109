-- The lifecycle hub: apps the hub provisions, the identity graph of accounts
-- found or created in them, and provisioning plans with their steps.

-- Who a user reports to (sent to apps as the manager / approver).
ALTER TABLE users ADD COLUMN manager_id TEXT REFERENCES users (id) ON DELETE SET NULL;
-- A planning pass with more deprovisioning steps than this waits for approval.
ALTER TABLE environments ADD COLUMN mass_change_threshold INTEGER NOT NULL DEFAULT 10;

CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    base_url TEXT NOT NULL,
    -- AES-256-GCM sealed JSON under the master key, bound to the row id.
    credentials TEXT,
    settings TEXT NOT NULL DEFAULT '{}',
    access_role_ids TEXT NOT NULL DEFAULT '[]',
    attribute_mappings TEXT NOT NULL DEFAULT '{}',
    deprovision_mode TEXT NOT NULL DEFAULT 'soft',
    enabled INTEGER NOT NULL DEFAULT 1,
    last_reconciled_at INTEGER,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX apps_name_key ON apps (environment_id, lower(name));
CREATE INDEX apps_environment_inserted ON apps (environment_id, inserted_at, id);

CREATE TABLE app_accounts (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- No foreign key: the link must outlive a deleted user so that the
    -- hub can still find and deprovision the account.
    user_id TEXT,
    external_id TEXT NOT NULL,
    login TEXT,
    status TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}',
    last_seen_at INTEGER,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX app_accounts_external_key ON app_accounts (app_id, external_id);
CREATE INDEX app_accounts_user ON app_accounts (app_id, user_id);
CREATE INDEX app_accounts_by_user ON app_accounts (environment_id, user_id);
CREATE INDEX app_accounts_environment_inserted ON app_accounts (environment_id, inserted_at, id);

CREATE TABLE provisioning_plans (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    approval_reason TEXT,
    summary TEXT NOT NULL DEFAULT '{}',
    decided_by TEXT,
    decided_at INTEGER,
    finished_at INTEGER,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX provisioning_plans_environment_inserted ON provisioning_plans (environment_id, inserted_at, id);
CREATE INDEX provisioning_plans_active ON provisioning_plans (status);

CREATE TABLE provisioning_steps (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    plan_id TEXT NOT NULL REFERENCES provisioning_plans (id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id TEXT,
    app_account_id TEXT,
    action TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    changes TEXT NOT NULL DEFAULT '{}',
    request TEXT,
    result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    last_error TEXT,
    completed_at INTEGER,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX provisioning_steps_plan ON provisioning_steps (plan_id, position, id);
CREATE INDEX provisioning_steps_open ON provisioning_steps (app_id, user_id, status);
CREATE INDEX provisioning_steps_due ON provisioning_steps (status, next_attempt_at);
CREATE INDEX provisioning_steps_environment_inserted ON provisioning_steps (environment_id, inserted_at, id);

-- The hub reads the outbox for the event types it plans from; this index
-- skips the far more numerous token.issued rows.
CREATE INDEX outbox_events_pending ON outbox_events (event_type, id) WHERE published_at IS NULL;
