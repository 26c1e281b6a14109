-- A sign-in flow issues one code: the code remembers its flow, and a second
-- code for the same flow is refused by this index. Codes are kept, so the
-- flow stays spent for as long as it could be replayed (its sealed form
-- lives an hour).
ALTER TABLE authorization_codes ADD COLUMN flow_id TEXT;
CREATE UNIQUE INDEX authorization_codes_flow_key ON authorization_codes (environment_id, flow_id);
