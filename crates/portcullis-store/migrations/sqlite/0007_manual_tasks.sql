-- Apps whose accounts people change by hand: either the app has no API
-- (kind 'manual') or the hub may read it but not write it. Their steps
-- become manual tasks instead of calls.
ALTER TABLE apps ADD COLUMN provisioning TEXT NOT NULL DEFAULT 'automatic';

-- One task per step handed to a person: what to do, who and by when, who
-- did it, and what a later reconciliation found.
CREATE TABLE manual_tasks (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    plan_id TEXT NOT NULL REFERENCES provisioning_plans (id) ON DELETE CASCADE,
    step_id TEXT NOT NULL REFERENCES provisioning_steps (id) ON DELETE CASCADE,
    -- No foreign key, as on app_accounts: the task outlives a deleted user.
    user_id TEXT,
    action TEXT NOT NULL,
    title TEXT NOT NULL,
    -- JSON array of the concrete steps, in order.
    instructions TEXT NOT NULL,
    assignee TEXT,
    due_at INTEGER NOT NULL,
    -- open, done, verified, verification_failed, cancelled
    status TEXT NOT NULL,
    -- Who said it was done: the actor's name, else id (as plans' decided_by).
    completed_by TEXT,
    completed_at INTEGER,
    note TEXT,
    verified_at INTEGER,
    verification TEXT,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX manual_tasks_step_key ON manual_tasks (step_id);
CREATE INDEX manual_tasks_app_status ON manual_tasks (app_id, status);
CREATE INDEX manual_tasks_environment_inserted ON manual_tasks (environment_id, inserted_at, id);
