-- PKCE is required of every client (OAuth 2.1); a legacy confidential
-- client may be exempted. Existing clients are required to use it too.
ALTER TABLE clients ADD COLUMN require_pkce BOOLEAN NOT NULL DEFAULT TRUE;
-- When set, a user's token for the API carries only the API scopes the
-- user holds as permissions through their roles.
ALTER TABLE resource_servers ADD COLUMN enforce_rbac BOOLEAN NOT NULL DEFAULT FALSE;
-- When set, password sign-in waits until the address is confirmed.
ALTER TABLE environments ADD COLUMN require_email_verification BOOLEAN NOT NULL DEFAULT FALSE;
