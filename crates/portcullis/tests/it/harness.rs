//! Test harness: a real Portcullis server on a loopback port, backed by a
//! fresh SQLite file or a fresh PostgreSQL schema, with an environment
//! `acme-test` and its admin client ready.

use std::net::SocketAddr;
use std::sync::{Arc, Once};

use portcullis_core::mail::{MailSettings, MailTransport};
use portcullis_core::services::environments;
use portcullis_core::services::signing_keys::NewSigningKey;
use portcullis_core::{Core, CoreConfig};
use portcullis_crypto::aead::MasterKey;
use portcullis_store::Db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const PG_ENV: &str = "PORTCULLIS_TEST_DATABASE_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A client's credentials.
#[derive(Debug, Clone)]
pub struct Creds {
    pub client_id: String,
    pub client_secret: String,
}

pub struct TestServer {
    pub backend: Backend,
    pub port: u16,
    pub http: reqwest::Client,
    pub core: Arc<Core>,
    pub admin: Creds,
    pub database_url: String,
    pub master_key: String,
    database: FreshDatabase,
    server: tokio::task::JoinHandle<()>,
    /// The lifecycle hub's relay and workers, when the test turned them on.
    _hub: portcullis_provision::Hub,
}

static SKIP_NOTE: Once = Once::new();

/// Says once per test binary, on the real stderr (not captured), that the
/// PostgreSQL variants are not running.
fn note_postgres_skipped() {
    SKIP_NOTE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: PostgreSQL variants of the integration tests are SKIPPED: set {PG_ENV} \
             (e.g. postgres://postgres@127.0.0.1:5432/test) to run them"
        );
    });
}

impl TestServer {
    /// Starts a server on `backend` with the test settings changed by
    /// `configure` (e.g. tighter rate limits); `None` when PostgreSQL is not
    /// configured.
    pub async fn start_configured(
        backend: Backend,
        configure: impl FnOnce(&mut CoreConfig),
    ) -> Option<TestServer> {
        let database = FreshDatabase::create(backend).await?;
        let master_key = MasterKey::generate_base64();
        Some(Self::start_with(backend, database, master_key, configure).await)
    }

    async fn start_with(
        backend: Backend,
        database: FreshDatabase,
        master_key: String,
        configure: impl FnOnce(&mut CoreConfig),
    ) -> TestServer {
        let database_url = database.url.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let db = Db::connect(&database_url).await.expect("connect");
        db.migrate().await.expect("migrate");
        let mut config = core_config(port, database.dir.path());
        configure(&mut config);
        let core =
            Core::start(db, MasterKey::from_base64(&master_key).expect("key"), config).expect("start core");
        let app = portcullis_server::app(core.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        let hub = portcullis_provision::Hub::start(core.clone());
        let created = environments::create(&core, "acme-test", Some("Acme Test"), es256())
            .await
            .expect("create environment");
        TestServer {
            backend,
            port,
            http: http_client(port),
            core,
            admin: Creds { client_id: created.client_id, client_secret: created.client_secret },
            database_url,
            master_key,
            database,
            server,
            _hub: hub,
        }
    }

    /// `http://{handle}.localhost:{port}`.
    pub fn issuer(&self, handle: &str) -> String {
        format!("http://{handle}.localhost:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer("acme-test"))
    }

    /// The Management API identifier: the issuer as configured (a test may
    /// name a TLS proxy's scheme and port), where `url` is how to reach it.
    pub fn management_api(&self) -> String {
        format!("{}/api", self.core.issuer_for("acme-test"))
    }

    /// Creates another environment (ES256 key, fast to generate).
    pub async fn create_environment(&self, handle: &str) -> Creds {
        let created =
            environments::create(&self.core, handle, None, es256()).await.expect("create environment");
        Creds { client_id: created.client_id, client_secret: created.client_secret }
    }

    /// POSTs a form to the token endpoint with Basic client authentication.
    pub async fn token_request(
        &self,
        handle: &str,
        creds: &Creds,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/oauth/token", self.issuer(handle)))
            .basic_auth(&creds.client_id, Some(&creds.client_secret))
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A Management API token for `handle` with `scope` (all granted when `None`).
    pub async fn management_token(&self, handle: &str, creds: &Creds, scope: Option<&str>) -> String {
        let resource = format!("{}/api", self.core.issuer_for(handle));
        let mut form = vec![("grant_type", "client_credentials"), ("resource", resource.as_str())];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let (status, body) = self.token_request(handle, creds, &form).await;
        assert_eq!(status, StatusCode::OK, "token request failed: {body}");
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    /// The admin token of `acme-test`, with every management scope.
    pub async fn admin_token(&self) -> String {
        self.management_token("acme-test", &self.admin, None).await
    }

    /// A JSON:API call against `acme-test`; returns status and parsed body.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.api_at("acme-test", method, path, token, body).await
    }

    pub async fn api_at(
        &self,
        handle: &str,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request =
            self.http.request(method, format!("{}{path}", self.issuer(handle))).bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/vnd.api+json")
                .body(serde_json::to_vec(&body).expect("json"));
        }
        let response = request.send().await.expect("api request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") })
    }

    /// Creates a resource and returns its `data`; panics unless 201.
    pub async fn create(
        &self,
        token: &str,
        path: &str,
        kind: &str,
        attributes: Value,
        relationships: Value,
    ) -> Value {
        let mut data = json!({"type": kind, "attributes": attributes});
        if !relationships.is_null() {
            data["relationships"] = relationships;
        }
        let (status, body) = self.api(Method::POST, path, token, Some(json!({"data": data}))).await;
        assert_eq!(status, StatusCode::CREATED, "creating {kind} failed: {body}");
        body
    }

    /// Starts a second server process on the same database (another `Core`
    /// with its own caches, as a second instance behind a load balancer
    /// would have). Only meaningful on PostgreSQL, where caches are kept
    /// coherent across processes by LISTEN/NOTIFY.
    pub async fn start_peer(&self) -> Peer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let db = Db::connect(&self.database_url).await.expect("connect");
        // Issuers name the port, so the peer must claim to be the same host.
        let core = Core::start(
            db,
            MasterKey::from_base64(&self.master_key).expect("key"),
            core_config(self.port, self.database.dir.path()),
        )
        .expect("start core");
        let app = portcullis_server::app(core).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Peer { port, server }
    }

    /// The dev outbox this server writes mail to (one JSON file per message).
    pub fn outbox_dir(&self) -> std::path::PathBuf {
        self.database.dir.path().join("outbox")
    }

    /// Runs a SQL statement that returns one integer (for white-box checks).
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(self.core.db.pool())
            .await
            .expect("count query");
        row.try_get::<i64, _>(0).expect("integer")
    }
}

/// A second server process sharing a [`TestServer`]'s database.
pub struct Peer {
    pub port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// The peer's address for `handle`; send the `Host` of the main server
    /// (see [`Peer::request`]) so issuers match.
    pub fn request(
        &self,
        server: &TestServer,
        method: Method,
        handle: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        server
            .http
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .header("host", format!("{handle}.localhost:{}", server.port))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A test's own database: a SQLite file in a temporary directory, or a
/// fresh PostgreSQL schema (dropped with this) when [`PG_ENV`] is set. The
/// directory also holds the test's outbox and data files.
pub struct FreshDatabase {
    pub url: String,
    pub dir: tempfile::TempDir,
    schema: Option<(String, String)>,
}

impl FreshDatabase {
    /// `None` (and a note, once) when PostgreSQL is not configured.
    pub async fn create(backend: Backend) -> Option<FreshDatabase> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, schema) = match backend {
            Backend::Sqlite => (format!("sqlite:{}", dir.path().join("test.db").display()), None),
            Backend::Postgres => {
                let Ok(base) = std::env::var(PG_ENV) else {
                    note_postgres_skipped();
                    return None;
                };
                let schema = format!("t_{}", uuid_hex());
                let admin = Db::connect(&base).await.expect("connect to PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(admin.pool())
                    .await
                    .expect("create schema");
                admin.pool().close().await;
                let separator = if base.contains('?') { '&' } else { '?' };
                (format!("{base}{separator}options=-c%20search_path%3D{schema}"), Some((base, schema)))
            }
        };
        Some(FreshDatabase { url, dir, schema })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.schema.take() {
            // Drop the test's schema from a helper thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async {
                    if let Ok(db) = Db::connect(&base).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(db.pool())
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The test servers' settings: mail goes to `{dir}/outbox`.
pub fn core_config(port: u16, dir: &std::path::Path) -> CoreConfig {
    CoreConfig {
        public_port: Some(port),
        mail: MailSettings {
            from: "Acme Test <no-reply@acme-test.localhost>".into(),
            transport: MailTransport::Outbox(dir.join("outbox")),
            lease: portcullis_core::mail::DEFAULT_LEASE,
        },
        // Off unless a test turns it on. Tests wait on the hub: poll often,
        // back off briefly, give up on a silent app quickly.
        hub: portcullis_core::HubSettings {
            enabled: false,
            poll_interval: std::time::Duration::from_millis(50),
            lease: std::time::Duration::from_secs(5),
            max_attempts: 6,
            backoff_base: std::time::Duration::from_millis(100),
            backoff_cap: std::time::Duration::from_secs(2),
            request_timeout: std::time::Duration::from_secs(2),
        },
        // The simulators and receivers listen on loopback; the tests of
        // the rule itself turn this off.
        allow_private_targets: true,
        ..CoreConfig::default()
    }
}

pub fn es256() -> NewSigningKey {
    NewSigningKey { algorithm: Some("es256".into()), key_size: None }
}

/// A loopback port free right now, for a child process (the RP, the
/// binary, Caddy, pebble) to bind moments later.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// An HTTP client that sends every `*.localhost` name to loopback.
pub fn http_client(_port: u16) -> reqwest::Client {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut builder = reqwest::Client::builder().no_proxy();
    for handle in ["acme-test", "acme-prod", "other", "beta", "gamma"] {
        builder = builder.resolve(&format!("{handle}.localhost"), loopback);
    }
    builder.build().expect("http client")
}

fn uuid_hex() -> String {
    portcullis_crypto::secret::random_base62(16).to_ascii_lowercase()
}

/// Runs a test body on SQLite and (when configured) PostgreSQL.
#[macro_export]
macro_rules! db_test {
    ($name:ident, |$server:ident| $body:block) => {
        $crate::db_test!($name, config = |_| {}, |$server| $body);
    };
    ($name:ident, config = $configure:expr, |$server:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $server = $crate::harness::TestServer::start_configured(
                    $crate::harness::Backend::Sqlite,
                    $configure,
                )
                .await
                .unwrap();
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($server) = $crate::harness::TestServer::start_configured(
                    $crate::harness::Backend::Postgres,
                    $configure,
                )
                .await
                else {
                    return;
                };
                $body
            }
        }
    };
}
