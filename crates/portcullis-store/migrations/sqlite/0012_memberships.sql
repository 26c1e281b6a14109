-- Memberships: a user in an organization, at most once, and the member's
-- organization-level roles. They go with their user, organization or role
-- (ON DELETE CASCADE, in the deleting statement).
CREATE TABLE memberships (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    metadata TEXT NOT NULL DEFAULT '{}',
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX memberships_pair_key ON memberships (environment_id, organization_id, user_id);
CREATE INDEX memberships_user ON memberships (user_id);
CREATE INDEX memberships_environment_inserted ON memberships (environment_id, inserted_at, id);

CREATE TABLE membership_roles (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    membership_id TEXT NOT NULL REFERENCES memberships (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    inserted_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX membership_roles_pair_key ON membership_roles (environment_id, membership_id, role_id);
CREATE INDEX membership_roles_role ON membership_roles (role_id);
CREATE INDEX membership_roles_environment_inserted ON membership_roles (environment_id, inserted_at, id);
