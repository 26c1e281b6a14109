//! Integration tests: real HTTP over loopback against a real server, on
//! SQLite and (with PORTCULLIS_TEST_DATABASE_URL) PostgreSQL.

mod harness;

mod quick_start;
