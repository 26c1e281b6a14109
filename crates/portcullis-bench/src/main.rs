//! `portcullis-bench`: the parts of `bench/run.sh` that need the library
//! rather than HTTP.
//!
//! - `sign-ceiling` signs RFC 9068 access tokens in a tight loop with an
//!   environment's own primary key, on as many threads as the server gets:
//!   the rate no token endpoint using that key can beat.
//! - `verify-ceiling` verifies one such token in a loop: the same bound for
//!   JWT introspection.
//! - `seed-users` bulk-inserts users into an environment (one Argon2id hash
//!   shared by all of them: hashing 100k passwords would take an hour and is
//!   not what the listing benchmark measures).
//! - `seed-domains` gives an environment an active custom domain and adds
//!   environments with active custom domains (the routing benchmark).
//! - `argon2-ceiling` verifies a password against an Argon2id hash made as
//!   the server makes them, on as many threads as the server's hashing pool:
//!   the rate no password login can beat.
//! - `load-refresh` and `load-code` drive the `refresh_token` and
//!   `authorization_code` grants over HTTP (see `load.rs`: wrk cannot chain
//!   rotating refresh tokens or spend each code once).
//! - `hub` reconciles N users against each simulator in-process, beside the
//!   floor set by that app's rate limits (see `hub.rs`).
//! - `webhooks` measures delivery throughput and commit-to-delivery lag
//!   against a receiver on loopback (see `webhooks.rs`).

mod hub;
mod load;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use portcullis_core::oauth::AccessClaims;
use portcullis_core::services::custom_domains::CustomDomain;
use portcullis_core::{Core, CoreConfig};
use portcullis_crypto::SigningKey;
use portcullis_crypto::aead::MasterKey;
use portcullis_store::model::User;
use portcullis_store::sql::Sql;
use portcullis_store::types::JsonText;
use portcullis_store::{Db, new_id, now_micros, record};

/// The server's allocator: Argon2id's 19 MiB buffers and the signing path
/// cost what they cost in the server.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "portcullis-bench")]
struct Cli {
    /// The server's database (`sqlite:PATH` or `postgres://...`), for the
    /// subcommands that read or seed it.
    #[arg(long, env = "PORTCULLIS_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Which key to exercise, and for how long.
#[derive(Args)]
struct KeyRun {
    #[arg(long)]
    handle: String,
    /// Base64 master key that encrypts the private key at rest.
    #[arg(long, env = "PORTCULLIS_MASTER_KEY")]
    master_key: String,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Prints `<signatures per second>` for the environment's primary key.
    SignCeiling(KeyRun),
    /// Prints `<verifications per second>` of a token signed by the
    /// environment's primary key (the ceiling of JWT introspection).
    VerifyCeiling(KeyRun),
    /// Inserts `count` users named bench-N@example.com.
    SeedUsers {
        #[arg(long)]
        handle: String,
        #[arg(long)]
        count: usize,
    },
    /// Gives `handle` the active custom domain `domain`, then adds `count`
    /// environments `route-N`, each with the active custom domain
    /// `auth.route-N.example` (rows as the Management API and a passed DNS
    /// check leave them; 10,000 real DNS checks are not what routing
    /// measures).
    SeedDomains {
        #[arg(long)]
        handle: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, default_value_t = 0)]
        count: usize,
    },
    /// Prints `<verifications per second>` of one password against an
    /// Argon2id hash with the server's parameters, on `threads` threads.
    Argon2Ceiling {
        /// The server's hashing pool has one thread per available core.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Prints `<requests per second> <p50> <p99>` of `refresh_token` grants,
    /// each worker chaining its own refresh-token family.
    LoadRefresh(load::Target),
    /// Prints `<requests per second> <p50> <p99>` of `authorization_code`
    /// grants, each redeeming a code minted before the timed run.
    LoadCode {
        #[command(flatten)]
        target: load::Target,
        /// How many codes to mint (the run ends early if all are redeemed).
        #[arg(long, default_value_t = 20_000)]
        codes: usize,
    },
    /// Prints a markdown table: reconciling `users` users against the Stripe
    /// and Expensify simulators, beside each app's rate-limit floor.
    Hub(hub::Args),
    /// Prints a markdown table: webhook deliveries per second beside the
    /// receiver's POST ceiling, and the lag from commit to delivery.
    Webhooks(webhooks::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let db = async || match &cli.database_url {
        Some(url) => Db::connect(url).await.context("cannot open the database"),
        None => bail!("--database-url (or PORTCULLIS_DATABASE_URL) is required"),
    };
    match cli.command {
        Command::SignCeiling(KeyRun { handle, master_key, threads, seconds }) => {
            let key = primary_key(db().await?, &handle, &master_key).await?;
            let rate = repeat(threads, Duration::from_secs(seconds), move || {
                portcullis_crypto::jws::sign(&key, "at+jwt", &claims()).expect("signing");
            });
            println!("{rate:.0}");
        }
        Command::VerifyCeiling(KeyRun { handle, master_key, threads, seconds }) => {
            let key = primary_key(db().await?, &handle, &master_key).await?;
            let verifier = key.verifying_key()?;
            let token = portcullis_crypto::jws::sign(&key, "at+jwt", &claims())?;
            let rate = repeat(threads, Duration::from_secs(seconds), move || {
                portcullis_crypto::jws::verify(&token, |_| Some(&verifier)).expect("verifying");
            });
            println!("{rate:.0}");
        }
        Command::SeedUsers { handle, count } => {
            let seeded = seed_users(&db().await?, &handle, count).await?;
            println!("{seeded}");
        }
        Command::SeedDomains { handle, domain, count } => {
            let db = db().await?;
            if let (Some(handle), Some(domain)) = (handle, domain) {
                let mut conn = db.read().await?;
                let environment = portcullis_store::repo::environments::by_handle(&mut conn, &handle)
                    .await?
                    .with_context(|| format!("no environment `{handle}`"))?;
                drop(conn);
                let mut tx = db.pool().begin().await?;
                insert_active_domain(&mut tx, &environment.id, &domain).await?;
                tx.commit().await?;
            }
            println!("{}", seed_domains(&db, count).await?);
        }
        Command::Argon2Ceiling { threads, seconds } => {
            let hash = portcullis_crypto::password::hash_password("correct horse battery staple")?;
            let rate = repeat(threads, Duration::from_secs(seconds), move || {
                assert!(portcullis_crypto::password::verify_password("correct horse battery staple", &hash));
            });
            println!("{rate:.1}");
        }
        Command::LoadRefresh(target) => println!("{}", load::refresh(target).await?),
        Command::LoadCode { target, codes } => println!("{}", load::code(target, codes).await?),
        Command::Hub(args) => hub::run(args).await?,
        Command::Webhooks(args) => webhooks::run(args).await?,
    }
    Ok(())
}

/// Where an in-process benchmark runs: a fresh SQLite file, or a fresh
/// schema on the PostgreSQL server `base` (dropped by [`Cleanup::run`]).
/// Returns the database URL and the backend's name.
async fn fresh_database(base: Option<&str>, prefix: &str) -> anyhow::Result<(String, Cleanup, &'static str)> {
    let dir = tempfile::tempdir()?;
    match base {
        None => {
            let url = format!("sqlite:{}", dir.path().join(format!("{prefix}.db")).display());
            Ok((url, Cleanup { _dir: dir, schema: None }, "SQLite"))
        }
        Some(base) if base.starts_with("postgres://") || base.starts_with("postgresql://") => {
            let schema = format!("{prefix}_{}", portcullis_crypto::secret::random_base62(12).to_lowercase());
            execute(base, &format!("CREATE SCHEMA {schema}")).await?;
            let separator = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
            Ok((url, Cleanup { _dir: dir, schema: Some((base.to_owned(), schema)) }, "PostgreSQL"))
        }
        Some(_) => bail!("--database-url must be postgres://… (SQLite runs on a file of its own)"),
    }
}

/// Removes what [`fresh_database`] made.
struct Cleanup {
    _dir: tempfile::TempDir,
    schema: Option<(String, String)>,
}

impl Cleanup {
    async fn run(self) -> anyhow::Result<()> {
        if let Some((base, schema)) = &self.schema {
            execute(base, &format!("DROP SCHEMA {schema} CASCADE")).await?;
        }
        Ok(())
    }
}

async fn execute(url: &str, statement: &str) -> anyhow::Result<()> {
    let db = Db::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned())).execute(db.pool()).await?;
    db.pool().close().await;
    Ok(())
}

/// The environment's primary signing key, decrypted as the server does it.
async fn primary_key(db: Db, handle: &str, master_key: &str) -> anyhow::Result<Arc<SigningKey>> {
    let master_key = MasterKey::from_base64(master_key).context("invalid master key")?;
    let core = Core::start(db, master_key, CoreConfig::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(env) = core.environment(handle).await? else { bail!("no environment `{handle}`") };
    env.keys().await?.primary.clone().context("the environment has no primary key")
}

/// Claims shaped like the token endpoint's for the benchmark client.
fn claims() -> AccessClaims {
    let now = now_micros() / 1_000_000;
    AccessClaims {
        iss: "http://bench-es256.localhost:18080".into(),
        sub: "bench-client-id-0000000000000000".into(),
        aud: "https://api.bench.test/invoices".into(),
        exp: now + 900,
        iat: now,
        jti: portcullis_crypto::secret::random_token::<16>(),
        client_id: "bench-client-id-0000000000000000".into(),
        scope: "read:invoices".into(),
        auth_time: None,
        roles: None,
        permissions: None,
        org_id: None,
    }
}

/// Runs `work` in a loop on `threads` threads for `span`; returns runs per second.
fn repeat(threads: usize, span: Duration, work: impl Fn() + Send + Sync + 'static) -> f64 {
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (work, stop, done) = (work.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut local = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    work();
                    local += 1;
                }
                done.fetch_add(local, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(span);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("benchmark thread");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// `count` environments, each with an active custom domain.
async fn seed_domains(db: &Db, count: usize) -> anyhow::Result<usize> {
    let mut inserted = 0;
    while inserted < count {
        let batch = (count - inserted).min(2000);
        let mut tx = db.pool().begin().await?;
        for i in inserted..inserted + batch {
            let (id, now) = (new_id(), now_micros());
            let mut environment =
                Sql::new("INSERT INTO environments (id, handle, name, inserted_at, updated_at) VALUES (");
            environment.bind(id.clone()).push(", ").bind(format!("route-{i}")).push(", ");
            environment.bind(format!("Route {i}")).push(", ").bind(now).push(", ").bind(now).push(")");
            environment.execute(&mut tx).await?;
            insert_active_domain(&mut tx, &id, &format!("auth.route-{i}.example")).await?;
        }
        tx.commit().await?;
        inserted += batch;
    }
    Ok(inserted)
}

/// A custom domain as a passed check leaves it: active, next checked in an hour.
async fn insert_active_domain(
    conn: &mut sqlx::AnyConnection,
    environment_id: &str,
    domain: &str,
) -> anyhow::Result<()> {
    let now = now_micros();
    let row = CustomDomain {
        id: new_id(),
        environment_id: environment_id.to_owned(),
        domain: domain.to_owned(),
        status: "active".into(),
        verification_token: portcullis_crypto::secret::random_token::<16>(),
        verified_at: Some(now),
        last_checked_at: Some(now),
        next_check_at: now + 3_600_000_000,
        checks: 0,
        failure: None,
        inserted_at: now,
        updated_at: now,
        certificate_expires_at: None,
        certificate_error: None,
    };
    record::insert(conn, &row).await?;
    Ok(())
}

async fn seed_users(db: &Db, handle: &str, count: usize) -> anyhow::Result<usize> {
    let mut conn = db.read().await?;
    let environment = portcullis_store::repo::environments::by_handle(&mut conn, handle)
        .await?
        .with_context(|| format!("no environment `{handle}`"))?;
    drop(conn);
    let hash = portcullis_crypto::password::hash_password("correct horse battery staple")?;
    let mut inserted = 0;
    while inserted < count {
        let batch = (count - inserted).min(2000);
        let mut tx = db.pool().begin().await?;
        for i in inserted..inserted + batch {
            let now = now_micros();
            let user = User {
                id: new_id(),
                environment_id: environment.id.clone(),
                email: format!("bench-{i}@example.com"),
                email_verified: true,
                first_name: Some(format!("Bench{i}")),
                last_name: Some("User".into()),
                password_hash: Some(hash.clone()),
                blocked: false,
                metadata: JsonText(serde_json::json!({})),
                inserted_at: now,
                updated_at: now,
                failed_logins: 0,
                locked_until: None,
                manager_id: None,
            };
            record::insert(&mut tx, &user).await?;
        }
        tx.commit().await?;
        inserted += batch;
    }
    Ok(inserted)
}
