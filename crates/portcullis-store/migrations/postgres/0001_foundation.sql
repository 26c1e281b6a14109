-- Portable column types: ids and JSON as TEXT, timestamps as BIGINT
-- microseconds since the Unix epoch (UTC). See docs/ARCHITECTURE.md.

CREATE TABLE environments (
    id TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    name TEXT NOT NULL,
    session_ttl BIGINT NOT NULL DEFAULT 2592000,
    registration_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    default_audience TEXT,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX environments_handle_key ON environments (handle);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    first_name TEXT,
    last_name TEXT,
    password_hash TEXT,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    metadata TEXT NOT NULL DEFAULT '{}',
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (environment_id, lower(email));
CREATE INDEX users_environment_inserted ON users (environment_id, inserted_at, id);

CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX roles_name_key ON roles (environment_id, name);

CREATE TABLE permissions (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX permissions_name_key ON permissions (environment_id, name);

CREATE TABLE role_permissions (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission_id TEXT NOT NULL REFERENCES permissions (id) ON DELETE CASCADE,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX role_permissions_pair_key ON role_permissions (role_id, permission_id);
CREATE INDEX role_permissions_permission ON role_permissions (permission_id);

CREATE TABLE user_roles (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX user_roles_pair_key ON user_roles (user_id, role_id);
CREATE INDEX user_roles_role ON user_roles (role_id);

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    name TEXT NOT NULL,
    client_type TEXT NOT NULL,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    token_format TEXT NOT NULL,
    first_party BOOLEAN NOT NULL,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX clients_client_id_key ON clients (client_id);
CREATE INDEX clients_environment ON clients (environment_id, inserted_at, id);

CREATE TABLE resource_servers (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    identifier TEXT NOT NULL,
    token_ttl BIGINT NOT NULL,
    allow_offline_access BOOLEAN NOT NULL,
    system BOOLEAN NOT NULL,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX resource_servers_identifier_key ON resource_servers (environment_id, identifier);

CREATE TABLE scopes (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    resource_server_id TEXT NOT NULL REFERENCES resource_servers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX scopes_name_key ON scopes (resource_server_id, name);

CREATE TABLE client_resource_server_grants (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    resource_server_id TEXT NOT NULL REFERENCES resource_servers (id) ON DELETE CASCADE,
    allowed_scopes TEXT NOT NULL,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX grants_pair_key ON client_resource_server_grants (client_id, resource_server_id);
CREATE INDEX grants_resource_server ON client_resource_server_grants (resource_server_id);

CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    kid TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_size BIGINT,
    status TEXT NOT NULL,
    is_primary BOOLEAN NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    deactivated_at BIGINT,
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX signing_keys_kid_key ON signing_keys (kid);
CREATE UNIQUE INDEX signing_keys_one_primary ON signing_keys (environment_id) WHERE is_primary;

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    target_type TEXT,
    target_id TEXT,
    targets TEXT NOT NULL,
    changes TEXT NOT NULL,
    ip_address TEXT,
    user_agent TEXT,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX audit_events_environment_occurred ON audit_events (environment_id, occurred_at, id);

CREATE TABLE outbox_events (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_events_unpublished ON outbox_events (published_at, id);

CREATE TABLE access_tokens (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    jti TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    audience TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    inserted_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX access_tokens_hash_key ON access_tokens (token_hash);

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_environment ON revoked_tokens (environment_id, expires_at);
