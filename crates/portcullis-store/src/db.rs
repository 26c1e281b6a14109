//! The database handle: pools, migrations, write transactions and the change
//! hooks that keep per-process caches coherent.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::model::{AuditEvent, Event, Origin, OutboxEvent, QueuedMail};
use crate::types::JsonText;
use crate::{Result, StoreError, classify, new_id, now_micros, record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite connections kept for reads.
const READERS: usize = 8;

/// The PostgreSQL channel that carries cache invalidations between processes.
const CHANGE_CHANNEL: &str = "portcullis_changes";
/// The message on it (after the process tag) that announces new webhook
/// deliveries, so every process's worker may take them at once.
const DELIVERIES_QUEUED: &str = "webhook-deliveries";

/// Whether an event type is in the catalogue.
type KnownEvent = fn(&str) -> bool;

/// A function told which environment's cached state changed (`*`: any).
type ChangeHook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    url: Arc<str>,
    /// SQLite has one writer; serialising writes in-process avoids busy
    /// retries. PostgreSQL needs no gate.
    write_gate: Option<Arc<Mutex<()>>>,
    /// SQLite only: connections for reads (see [`Readers`]).
    readers: Option<Arc<Readers>>,
    change_hooks: Arc<std::sync::RwLock<Vec<ChangeHook>>>,
    /// Tags this process's change notifications, so its own listener can
    /// skip what its commits already reported.
    process_tag: Arc<str>,
    /// Woken by commits that queued mail, so the mail worker sends at once.
    mail_queued: Arc<tokio::sync::Notify>,
    /// Woken by commits that wrote webhook deliveries.
    webhooks_queued: Arc<tokio::sync::Notify>,
    /// Whether an event type is in the catalogue (set by the service
    /// layer, which owns it): recording another is a bug, which debug
    /// builds (every test) turn into a panic.
    event_catalogue: Arc<std::sync::OnceLock<KnownEvent>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).finish_non_exhaustive()
    }
}

/// Settings of every SQLite connection (WAL is a property of the file, set
/// once by the pool).
async fn sqlite_pragmas(conn: &mut AnyConnection) -> std::result::Result<(), sqlx::Error> {
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    conn.execute("PRAGMA busy_timeout = 5000").await?;
    // The commit that crosses this many WAL pages runs the
    // checkpoint (and its fsyncs) while writers wait. The
    // default 1,000 pages checkpointed several times a
    // second under refresh load: 10,000 (~40 MB) took
    // refresh grants from ~4,700/s to ~5,350/s, at the
    // price of rarer, longer stalls (p99 23 -> ~58 ms).
    conn.execute("PRAGMA wal_autocheckpoint = 10000").await?;
    Ok(())
}

/// SQLite connections for reads, kept by the `Db` itself rather than by
/// sqlx's pool: the pool pings every connection it takes back, and on
/// SQLite a ping is a round trip to the connection's worker thread, as
/// costly as the query (measured on refresh grants). A local file cannot go
/// stale, and reads never leave a transaction open, so a returned connection
/// is reused as it is.
struct Readers {
    idle: std::sync::Mutex<Vec<AnyConnection>>,
    permits: Arc<tokio::sync::Semaphore>,
    options: AnyConnectOptions,
}

/// A connection for reads (derefs to `AnyConnection`).
pub struct ReadConn {
    conn: Option<ReadInner>,
}

enum ReadInner {
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
    Kept(AnyConnection, Arc<Readers>, tokio::sync::OwnedSemaphorePermit),
}

impl std::ops::Deref for ReadConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self.conn.as_ref().expect("present until dropped") {
            ReadInner::Pooled(conn) => conn,
            ReadInner::Kept(conn, _, _) => conn,
        }
    }
}

impl std::ops::DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self.conn.as_mut().expect("present until dropped") {
            ReadInner::Pooled(conn) => conn,
            ReadInner::Kept(conn, _, _) => conn,
        }
    }
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        if let Some(ReadInner::Kept(conn, readers, permit)) = self.conn.take() {
            if let Ok(mut idle) = readers.idle.lock() {
                idle.push(conn);
            }
            drop(permit);
        }
    }
}

impl Db {
    /// Connects to `sqlite:PATH` (created if missing, WAL mode) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Corrupt(format!(
                "unsupported database URL scheme (use sqlite: or postgres://): {}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let url = if backend == Backend::Sqlite && !url.contains("mode=") {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}mode=rwc")
        } else {
            url.to_owned()
        };
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(&url).map(std::path::Path::new)
        {
            let cannot =
                |e: std::io::Error| StoreError::Corrupt(format!("cannot create {}: {e}", path.display()));
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                crate::private_fs::create_dir_all(parent).map_err(cannot)?;
            }
            // Created here, owner-only, before SQLite opens it (SQLite would
            // create it 0644, and its -wal and -shm files take its mode).
            if !path.exists() {
                crate::private_fs::create_file(path, false).map_err(cannot)?;
            }
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            // A SQLite connection is a file handle in this process and cannot
            // go stale; pinging it on every checkout was a round trip to its
            // worker thread per query.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        sqlite_pragmas(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        let readers = (backend == Backend::Sqlite).then(|| {
            Arc::new(Readers {
                idle: std::sync::Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(READERS)),
                options: options.clone(),
            })
        });
        Ok(Db {
            pool,
            readers,
            backend,
            url: url.into(),
            write_gate: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            change_hooks: Arc::default(),
            process_tag: new_id().into(),
            mail_queued: Arc::default(),
            webhooks_queued: Arc::default(),
            event_catalogue: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for reads.
    pub async fn read(&self) -> Result<ReadConn> {
        let Some(readers) = &self.readers else {
            let conn = self.pool.acquire().await.map_err(classify)?;
            return Ok(ReadConn { conn: Some(ReadInner::Pooled(conn)) });
        };
        let permit = readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Corrupt("readers closed".into()))?;
        let kept = readers.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match kept {
            Some(conn) => conn,
            None => {
                use sqlx::Connection;
                let mut conn = AnyConnection::connect_with(&readers.options).await.map_err(classify)?;
                sqlite_pragmas(&mut conn).await.map_err(classify)?;
                conn
            }
        };
        Ok(ReadConn { conn: Some(ReadInner::Kept(conn, readers.clone(), permit)) })
    }

    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&self.pool).await?,
        }
        Ok(())
    }

    /// Starts a write transaction.
    pub async fn write(&self) -> Result<WriteTx> {
        let gate = match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        };
        let tx = match self.backend {
            // IMMEDIATE takes the write lock up front so a read-then-write
            // transaction cannot fail half-way when another process writes.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(classify)?;
        Ok(WriteTx {
            tx,
            _gate: gate,
            recorded: false,
            changed: Vec::new(),
            queued_mail: false,
            queued_webhooks: false,
            db: self.clone(),
        })
    }

    /// Wakes when a commit of this process queued mail (see
    /// [`WriteTx::queue_mail`]); the mail worker also polls, for mail that
    /// other processes queued or that waits for a retry.
    pub fn mail_queued(&self) -> Arc<tokio::sync::Notify> {
        self.mail_queued.clone()
    }

    /// Sets the check of recorded event types against the catalogue.
    pub fn set_event_catalogue(&self, known: KnownEvent) {
        let _ = self.event_catalogue.set(known);
    }

    fn check_catalogued(&self, action: &str) {
        if let Some(known) = self.event_catalogue.get()
            && !known(action)
        {
            tracing::error!(action, "an event type missing from the catalogue was recorded");
            debug_assert!(false, "`{action}` is not in the event catalogue");
        }
    }

    /// Wakes when a commit of this process wrote webhook deliveries, and on
    /// PostgreSQL (through the change listener) when another process's
    /// did; the delivery worker also polls, for retries and for SQLite
    /// files shared between processes.
    pub fn webhooks_queued(&self) -> Arc<tokio::sync::Notify> {
        self.webhooks_queued.clone()
    }

    /// Starts a transaction for operational state that is not a
    /// configuration change: authorization codes, refresh-token rotation,
    /// session activity. It commits without an audit event of its own; the
    /// callers record what matters (`token.issued`, `session.revoked`)
    /// through the event sink or a [`WriteTx`].
    pub async fn write_state(&self) -> Result<WriteTx> {
        let mut tx = self.write().await?;
        tx.recorded = true;
        Ok(tx)
    }

    /// Registers `hook` to hear which environment's cached configuration
    /// changed: from this process's commits synchronously, after the commit
    /// and before [`WriteTx::commit`] returns (so the writer's next request
    /// never sees the old state), and on PostgreSQL, once [`Db::listen`]
    /// runs, from every other process.
    pub fn on_change(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.change_hooks.write().expect("hook lock").push(Arc::new(hook));
    }

    fn changed(&self, environment_id: &str) {
        let hooks = self.change_hooks.read().expect("hook lock").clone();
        for hook in &hooks {
            hook(environment_id);
        }
    }

    /// Relays other processes' change notifications to the hooks.
    /// Returns when the listener cannot be (re)established; callers restart it.
    pub async fn listen(&self) -> Result<()> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(CHANGE_CHANNEL).await?;
        // Anything may have changed while we were not listening.
        self.changed("*");
        loop {
            let notification = listener.recv().await?;
            match notification.payload().split_once(' ') {
                Some((tag, _)) if tag == &*self.process_tag => {}
                Some((_, DELIVERIES_QUEUED)) => self.webhooks_queued.notify_one(),
                Some((_, environment_id)) => self.changed(environment_id),
                None => self.changed("*"),
            }
        }
    }

    /// Appends events that are not tied to a row change (e.g. `token.issued`)
    /// in one transaction, with their audit and outbox rows.
    /// Each event comes with the time it happened (microseconds).
    pub async fn append_events(&self, events: &[(Origin, Event, i64)]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        for (_, event, _) in events {
            self.check_catalogued(event.action);
        }
        let (audits, outbox): (Vec<_>, Vec<_>) =
            events.iter().map(|(origin, event, at)| event_rows(origin, event, *at)).unzip();
        let mut tx = self.write().await?;
        record::insert_many(tx.conn(), &audits).await?;
        record::insert_many(tx.conn(), &outbox).await?;
        tx.fan_out(&outbox.iter().collect::<Vec<_>>()).await?;
        tx.recorded = true;
        tx.commit().await
    }
}

/// The audit row and the outbox row that record one event.
fn event_rows(origin: &Origin, event: &Event, now: i64) -> (AuditEvent, OutboxEvent) {
    let first = event.targets.first();
    let audit = AuditEvent {
        id: new_id(),
        environment_id: origin.environment_id.clone(),
        action: event.action.to_owned(),
        actor_type: origin.actor.kind.to_owned(),
        actor_id: origin.actor.id.clone(),
        actor_name: origin.actor.name.clone(),
        target_type: first.map(|t| t.kind.clone()),
        target_id: first.map(|t| t.id.clone()),
        targets: JsonText(event.targets.clone()),
        changes: JsonText(event.changes.clone()),
        ip_address: origin.ip_address.clone(),
        user_agent: origin.user_agent.clone(),
        occurred_at: now,
    };
    let outbox = OutboxEvent {
        id: new_id(),
        environment_id: origin.environment_id.clone(),
        event_type: event.action.to_owned(),
        payload: JsonText(json!({
            "type": event.action,
            "timestamp": crate::listing_time(now),
            "data": event.data,
            "actor": {"type": origin.actor.kind, "id": origin.actor.id, "name": origin.actor.name},
        })),
        created_at: now,
        published_at: None,
    };
    (audit, outbox)
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// A write transaction. It must [`record`](WriteTx::record) at least one event
/// before [`commit`](WriteTx::commit); dropping it rolls back.
pub struct WriteTx {
    tx: Transaction<'static, sqlx::Any>,
    _gate: Option<OwnedMutexGuard<()>>,
    recorded: bool,
    changed: Vec<String>,
    queued_mail: bool,
    queued_webhooks: bool,
    db: Db,
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends the audit event and the outbox event for this change.
    pub async fn record(&mut self, origin: &Origin, event: &Event) -> Result<()> {
        self.db.check_catalogued(event.action);
        let (audit, outbox) = event_rows(origin, event, now_micros());
        record::insert(self.conn(), &audit).await?;
        record::insert(self.conn(), &outbox).await?;
        self.fan_out(&[&outbox]).await?;
        self.recorded = true;
        Ok(())
    }

    /// Writes the deliveries of these events to the webhooks that
    /// subscribe to them, sent once this commits.
    async fn fan_out(&mut self, events: &[&OutboxEvent]) -> Result<()> {
        if crate::repo::webhooks::fan_out(self.conn(), events).await? > 0 {
            self.queued_webhooks = true;
        }
        Ok(())
    }

    /// Wakes the delivery worker once this commits (a delivery made due).
    pub fn wake_deliveries(&mut self) {
        self.queued_webhooks = true;
    }

    /// Queues a delivery written by hand (a webhook's test message).
    pub async fn queue_delivery(&mut self, delivery: &crate::model::WebhookDelivery) -> Result<()> {
        record::insert(self.conn(), delivery).await?;
        self.queued_webhooks = true;
        Ok(())
    }

    /// Queues a message for the mail worker: it is sent once this commits,
    /// and not at all if it rolls back.
    pub async fn queue_mail(&mut self, mail: &QueuedMail) -> Result<()> {
        record::insert(self.conn(), mail).await?;
        self.queued_mail = true;
        Ok(())
    }

    /// Marks an environment's cached configuration (clients, keys, resource
    /// servers, grants, revocations) as changed once this commits.
    pub fn invalidate(&mut self, environment_id: &str) {
        if !self.changed.iter().any(|e| e == environment_id) {
            self.changed.push(environment_id.to_owned());
        }
    }

    pub async fn commit(mut self) -> Result<()> {
        if !self.recorded {
            return Err(StoreError::Unaudited);
        }
        if self.db.backend == Backend::Postgres {
            let deliveries = self.queued_webhooks.then_some(DELIVERIES_QUEUED);
            for message in self.changed.iter().map(String::as_str).chain(deliveries) {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANGE_CHANNEL)
                    .bind(format!("{} {message}", self.db.process_tag))
                    .execute(&mut *self.tx)
                    .await
                    .map_err(classify)?;
            }
        }
        self.tx.commit().await.map_err(classify)?;
        for environment_id in &self.changed {
            self.db.changed(environment_id);
        }
        if self.queued_mail {
            self.db.mail_queued.notify_one();
        }
        if self.queued_webhooks {
            self.db.webhooks_queued.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite() -> (Db, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("portcullis-db-{}.db", new_id()));
        let db = Db::connect(&format!("sqlite:{}", path.display())).await.unwrap();
        (db, path)
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_data_directory_and_database_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("portcullis-perm-{}", new_id()));
        let dir = root.join("data");
        let path = dir.join("portcullis.db");
        let db = Db::connect(&format!("sqlite:{}", path.display())).await.unwrap();
        db.migrate().await.unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "data directory");
        for file in ["portcullis.db", "portcullis.db-wal", "portcullis.db-shm"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        db.pool().close().await;
        let _ = std::fs::remove_dir_all(root);
    }

    #[tokio::test]
    async fn sqlite_reads_reuse_kept_connections_and_are_bounded() {
        let (db, path) = sqlite().await;
        // A TEMP table lives on one connection: seeing it again proves reuse.
        let mut first = db.read().await.unwrap();
        first.execute("CREATE TEMP TABLE probe (x INTEGER)").await.unwrap();
        drop(first);
        let mut again = db.read().await.unwrap();
        again.execute("SELECT x FROM temp.probe").await.unwrap();
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *again).await.unwrap();
        assert_eq!(fk, 1, "kept connections get the same settings as pooled ones");
        drop(again);

        let held: Vec<ReadConn> = hold_every_reader(&db).await;
        assert_eq!(held.len(), READERS);
        let waiting = tokio::time::timeout(Duration::from_millis(100), db.read()).await;
        assert!(waiting.is_err(), "a read beyond {READERS} waits for a connection");
        drop(held);
        assert!(tokio::time::timeout(Duration::from_secs(5), db.read()).await.is_ok());
        let _ = std::fs::remove_file(path);
    }

    async fn hold_every_reader(db: &Db) -> Vec<ReadConn> {
        let mut held = Vec::new();
        for _ in 0..READERS {
            held.push(db.read().await.unwrap());
        }
        held
    }
}
