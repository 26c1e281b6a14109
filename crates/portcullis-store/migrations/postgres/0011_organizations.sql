-- Organizations: the customer companies of a B2B app. The slug is their
-- URL-safe handle, unique in the environment.
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    inserted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX organizations_slug_key ON organizations (environment_id, slug);
CREATE INDEX organizations_environment_inserted ON organizations (environment_id, inserted_at, id);
