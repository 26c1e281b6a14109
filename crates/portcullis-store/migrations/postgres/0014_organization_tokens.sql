-- Organization context in tokens: whether a client signs users in to an
-- organization (`deny`, `allow` or `require`), and the organization a code,
-- a refresh token and an opaque access token were issued for (no foreign
-- key: a grant outliving its organization or membership is refused when
-- used, by the membership check).
ALTER TABLE clients ADD COLUMN organization_usage TEXT NOT NULL DEFAULT 'deny';
ALTER TABLE authorization_codes ADD COLUMN organization_id TEXT;
ALTER TABLE refresh_tokens ADD COLUMN organization_id TEXT;
ALTER TABLE access_tokens ADD COLUMN organization_id TEXT;
