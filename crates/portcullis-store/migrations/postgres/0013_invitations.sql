-- Mail waiting to be sent. A message is queued in the transaction of the
-- change that causes it and sent after commit by the mail worker, so a crash
-- delays it but never loses it (it may be sent twice: at-least-once). The
-- message is sealed with the master key: its links are secrets.
CREATE TABLE queued_mails (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    sealed TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    -- When a worker may (next) try it; a claim moves it past the lease.
    due_at BIGINT NOT NULL,
    inserted_at BIGINT NOT NULL
);
CREATE INDEX queued_mails_due ON queued_mails (due_at);

-- Invitations to join an organization, answered through an emailed link
-- (only the link token's SHA-256 is kept). At most one pending invitation
-- per address and organization; they go with their organization.
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role_ids TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    inviter_type TEXT,
    inviter_id TEXT,
    inviter_name TEXT,
    -- Who accepted or declined, and when (accepted, declined or revoked).
    user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    responded_at BIGINT,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX invitations_pending_key ON invitations (environment_id, organization_id, email)
    WHERE status = 'pending';
CREATE UNIQUE INDEX invitations_token_key ON invitations (token_hash);
CREATE INDEX invitations_organization ON invitations (organization_id);
CREATE INDEX invitations_environment_inserted ON invitations (environment_id, inserted_at, id);

-- How long an invitation link lives (seconds; 7 days by default).
ALTER TABLE environments ADD COLUMN invitation_ttl BIGINT NOT NULL DEFAULT 604800;
