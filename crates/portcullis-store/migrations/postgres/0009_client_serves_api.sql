-- The API a client is the backend of: it may introspect that API's tokens.
ALTER TABLE clients ADD COLUMN serves_resource_server_id TEXT REFERENCES resource_servers (id) ON DELETE SET NULL;
