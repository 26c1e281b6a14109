-- The built-in ACME client (`acme_directory`): what any instance needs to
-- obtain, renew and serve certificates for active custom domains.

-- One account per ACME directory; its credentials (with the account's
-- private key) sealed with the master key.
CREATE TABLE acme_accounts (
    directory_url TEXT PRIMARY KEY,
    credentials TEXT NOT NULL,
    inserted_at BIGINT NOT NULL
);

-- HTTP-01 challenge answers, so that whichever instance the CA reaches
-- answers `/.well-known/acme-challenge/{token}`.
CREATE TABLE acme_challenges (
    token TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    key_authorization TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- A custom domain's certificate and the state of getting the next one:
-- `certificate_chain` (PEM) and `private_key` (PEM sealed with the master
-- key) are null until the first order succeeds; `next_attempt_at` is when
-- the next order is due (renewal at two thirds of the lifetime, or the
-- backoff after `attempts` failures, the last one in `last_error`).
CREATE TABLE tls_certificates (
    custom_domain_id TEXT PRIMARY KEY REFERENCES custom_domains (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    certificate_chain TEXT,
    private_key TEXT,
    not_before BIGINT,
    not_after BIGINT,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX tls_certificates_domain_key ON tls_certificates (domain);
CREATE INDEX tls_certificates_due ON tls_certificates (next_attempt_at);

-- What the Management API shows of a domain's certificate (the built-in
-- ACME client writes both with the certificate row): when the certificate
-- served expires, and why the last order failed.
ALTER TABLE custom_domains ADD COLUMN certificate_expires_at BIGINT;
ALTER TABLE custom_domains ADD COLUMN certificate_error TEXT;
