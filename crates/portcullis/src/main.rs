//! `portcullis`: the server and its command line.

mod config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_core::Core;
use portcullis_core::services::environments;
use portcullis_core::services::signing_keys::NewSigningKey;
use portcullis_store::Db;

use crate::config::Config;

/// mimalloc instead of glibc's allocator: Argon2id's 19 MiB buffers left
/// glibc's heap fragmented (RSS grew to over 1 GiB under a burst of
/// sign-ups and stayed there), and allocation is a tenth of the token path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Self-hostable identity provider and lifecycle hub")]
struct Cli {
    /// Configuration file (default: ./portcullis.toml, if present).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (applies migrations first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Read apps' rosters, refresh the identity graph and propose a plan of
    /// fixes (approve it with `PATCH /api/provisioning-plans/:id/approve`).
    Reconcile {
        /// The environment's handle.
        #[arg(long = "env")]
        handle: String,
        /// One app's id (default: every enabled app of the environment).
        #[arg(long)]
        app: Option<String>,
        /// Report what differs without storing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// One person across every app: their accounts with status and drift,
    /// and the apps where they should have an account and have none.
    Graph {
        /// The environment's handle.
        #[arg(long = "env")]
        handle: String,
        /// The user's id or email (the id also finds a deleted user's accounts).
        user: String,
    },
    /// Manual tasks: lists the open ones (or all), or completes one.
    Tasks {
        /// The environment's handle.
        #[arg(long = "env")]
        handle: String,
        /// List done and verified tasks too.
        #[arg(long)]
        all: bool,
        /// Marks this task done (its step succeeds, the graph records it).
        #[arg(long, value_name = "TASK_ID", requires = "by")]
        complete: Option<String>,
        /// Who did it, recorded on the task and in the audit log.
        #[arg(long, requires = "complete")]
        by: Option<String>,
        /// What differed, a ticket number.
        #[arg(long, requires = "complete")]
        note: Option<String>,
        /// The account's id in the app, if known.
        #[arg(long, requires = "complete")]
        external_id: Option<String>,
    },
    /// An environment's webhooks with their delivery counts, or one
    /// webhook's latest deliveries.
    Webhooks {
        /// The environment's handle.
        #[arg(long = "env")]
        handle: String,
        /// Lists this webhook's latest deliveries instead.
        #[arg(long, value_name = "WEBHOOK_ID")]
        deliveries: Option<String>,
        /// How many deliveries to list.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Run a simulator of a SaaS app on loopback, for trying the hub out.
    Sim {
        /// `expensify`, `stripe`, `scim`, `travelperk` or `payhawk`.
        app: String,
        #[arg(long, default_value_t = 12111)]
        port: u16,
        /// Seeds the simulator's generated ids.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The SCIM dialect (scim only): strict-rfc, entra-tolerant,
        /// okta-tolerant, aws-identity-center, stripe-dashboard or travelperk.
        #[arg(long, default_value = "strict-rfc")]
        profile: String,
    },
}

#[derive(Subcommand)]
enum EnvCommand {
    /// Create an environment with its Management API, a signing key and an
    /// admin client; prints the client's secret once.
    Create {
        handle: String,
        /// Display name (defaults to the handle).
        #[arg(long)]
        name: Option<String>,
        /// Algorithm of the first signing key: rs256, es256 or eddsa.
        #[arg(long, default_value = "rs256")]
        key_algorithm: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List environments.
    List,
    /// Recovery when no client can reach the Management API any more: mints
    /// a new client holding every Management API scope and prints its secret
    /// once. Audited as the operator's act.
    AdminClient {
        handle: String,
        /// Who is doing this, for the audit trail (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Sim { app, port, seed, profile } = &cli.command {
        init_tracing("text");
        return run_simulator(app, *port, *seed, profile).await;
    }
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(&config.log_format);
    let db = Db::connect(&config.database_url).await.context("cannot open the database")?;
    db.migrate().await.context("migrations failed")?;
    match cli.command {
        Command::Migrate => {
            println!("migrations applied");
            Ok(())
        }
        Command::Serve => serve(config, db).await,
        Command::Env(command) => {
            let core = start_core(&config, db)?;
            env_command(&core, command).await
        }
        Command::Reconcile { handle, app, dry_run } => {
            let core = start_core(&config, db)?;
            reconcile_command(core, &handle, app.as_deref(), dry_run).await
        }
        Command::Graph { handle, user } => {
            let core = start_core(&config, db)?;
            graph_command(&core, &handle, &user).await
        }
        Command::Tasks { handle, all, complete, by, note, external_id } => {
            let core = start_core(&config, db)?;
            match complete {
                Some(id) => {
                    let by = by.context("--by names who did the task")?;
                    let completion = portcullis_provision::tasks::Completion { note, external_id };
                    complete_task(&core, &handle, &id, &by, completion).await
                }
                None => list_tasks(&core, &handle, all).await,
            }
        }
        Command::Webhooks { handle, deliveries, limit } => {
            let core = start_core(&config, db)?;
            match deliveries {
                Some(webhook) => list_deliveries(&core, &handle, &webhook, limit).await,
                None => list_webhooks(&core, &handle).await,
            }
        }
        Command::Sim { .. } => unreachable!("handled before the database opens"),
    }
}

/// Reconciles one app or every enabled app, with a progress bar per app and
/// a summary table.
async fn reconcile_command(
    core: Arc<Core>,
    handle: &str,
    app_id: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<()> {
    use portcullis_provision::reconcile;
    use portcullis_store::model::App;
    let env = core
        .environment(handle)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("no environment `{handle}`"))?;
    let apps: Vec<App> = {
        let mut conn = core.db.read().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        portcullis_store::repo::all(&mut conn, env.id()).await.map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let apps: Vec<App> = match app_id {
        Some(id) => apps.into_iter().filter(|a| a.id == id).collect(),
        None => apps.into_iter().filter(|a| a.enabled).collect(),
    };
    if apps.is_empty() {
        anyhow::bail!("no such app in `{handle}`");
    }
    let worker = portcullis_provision::Worker::new(
        core.clone(),
        portcullis_provision::connector::http::shared_throttle(),
    );
    let bars = indicatif::MultiProgress::new();
    let mut rows = Vec::new();
    let mut failed = false;
    for app in &apps {
        let bar = bars.add(indicatif::ProgressBar::new_spinner());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix:20} {pos} accounts read  {elapsed}")
                .expect("template"),
        );
        bar.set_prefix(app.name.clone());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let progress = |n: usize| bar.set_position(n as u64);
        let outcome = reconcile::reconcile(&worker, app, dry_run, &progress).await;
        bar.finish();
        match outcome {
            Ok(report) => rows.push((app.name.clone(), Ok(report))),
            // Nothing to read is not a failure of the run.
            Err(error @ reconcile::ReconcileError::NotReadable(_)) => {
                rows.push((app.name.clone(), Err(error.to_string())));
            }
            Err(error) => {
                failed = true;
                rows.push((app.name.clone(), Err(error.to_string())));
            }
        }
    }
    println!(
        "{:<20} {:>8} {:>7} {:>8} {:>9} {:>14} {:>6} {:>10}  plan",
        "app", "accounts", "linked", "missing", "orphaned", "should-not-be", "drift", "unmanaged"
    );
    for (name, row) in rows {
        match row {
            Ok(r) => println!(
                "{:<20} {:>8} {:>7} {:>8} {:>9} {:>14} {:>6} {:>10}  {}",
                name,
                r.accounts_read,
                r.linked,
                r.missing,
                r.orphaned,
                r.active_but_should_not,
                r.drift,
                r.unmanaged,
                match (&r.plan_id, dry_run) {
                    (_, true) => format!("dry run: {} steps", r.steps.len()),
                    (Some(id), false) => format!("{id} (draft, {} steps)", r.steps.len()),
                    (None, false) => "nothing to do".into(),
                }
            ),
            Err(error) => println!("{name:<20} failed: {error}"),
        }
    }
    if failed {
        anyhow::bail!("some apps could not be reconciled");
    }
    Ok(())
}

/// `portcullis tasks`: the open manual tasks (or all), oldest first.
async fn list_tasks(core: &Core, handle: &str, all: bool) -> anyhow::Result<()> {
    use portcullis_store::model::ManualTask;
    let env = core
        .environment(handle)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("no environment `{handle}`"))?;
    let mut conn = core.db.read().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tasks: Vec<ManualTask> =
        portcullis_store::repo::all(&mut conn, env.id()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    tasks.retain(|t| all || matches!(t.status.as_str(), "open" | "verification_failed"));
    tasks.sort_by_key(|t| (t.due_at, t.inserted_at));
    if tasks.is_empty() {
        println!("no {}tasks", if all { "" } else { "open " });
        return Ok(());
    }
    println!("{:<36} {:<20} {:<17} {:<24} title", "id", "status", "due (UTC)", "assignee");
    for task in &tasks {
        let due = portcullis_store::listing_time(task.due_at);
        println!(
            "{:<36} {:<20} {:<17} {:<24} {}",
            task.id,
            task.status,
            due.get(..16).unwrap_or(&due),
            task.assignee.as_deref().unwrap_or("-"),
            task.title
        );
        for line in &task.instructions.0 {
            println!("{:<36} - {line}", "");
        }
        if let Some(found) = task.verification.as_deref().filter(|_| task.status == "verification_failed") {
            println!("{:<36} ! {found}", "");
        }
    }
    Ok(())
}

/// `portcullis webhooks --env H`: each webhook, whether it is active (and
/// why not), and how many of its deliveries are pending or failed.
async fn list_webhooks(core: &Core, handle: &str) -> anyhow::Result<()> {
    use portcullis_core::services::webhooks::Webhook;
    let env = environment(core, handle).await?;
    let mut conn = core.db.read().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut webhooks: Vec<Webhook> =
        portcullis_store::repo::all(&mut conn, env.id()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    webhooks.sort_by_key(|w| w.inserted_at);
    if webhooks.is_empty() {
        println!("no webhooks");
        return Ok(());
    }
    println!(
        "{:<36} {:<8} {:>8} {:>7} {:>10} url / events",
        "id", "active", "pending", "failed", "delivered"
    );
    for webhook in &webhooks {
        let counts = portcullis_store::repo::webhooks::counts(&mut conn, &webhook.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let count = |status: &str| counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        println!(
            "{:<36} {:<8} {:>8} {:>7} {:>10} {}",
            webhook.id,
            if webhook.active { "yes" } else { "no" },
            count("pending"),
            count("failed"),
            count("delivered"),
            webhook.url
        );
        println!("{:<36} events: {}", webhook.name, webhook.events.0.join(", "));
        if let Some(reason) = &webhook.disabled_reason {
            println!("{:<36} ! disabled: {reason}", "");
        } else if let Some(since) = webhook.failing_since {
            println!("{:<36} ! failing since {}", "", portcullis_store::listing_time(since));
        }
    }
    Ok(())
}

/// `portcullis webhooks --env H --deliveries ID`: the latest deliveries.
async fn list_deliveries(core: &Core, handle: &str, webhook_id: &str, limit: i64) -> anyhow::Result<()> {
    use portcullis_store::model::WebhookDelivery;
    let env = environment(core, handle).await?;
    let mut conn = core.db.read().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let deliveries: Vec<WebhookDelivery> =
        portcullis_store::repo::webhooks::latest(&mut conn, env.id(), webhook_id, limit.max(1))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    if deliveries.is_empty() {
        println!("no deliveries for webhook {webhook_id} in {handle}");
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:>8} {:>6} {:>8}  {:<32} outcome",
        "committed (UTC)", "status", "attempts", "code", "ms", "event"
    );
    for d in &deliveries {
        let at = portcullis_store::listing_time(d.inserted_at);
        let outcome = match (d.status.as_str(), &d.last_error) {
            ("pending", error) => format!(
                "next attempt {}{}",
                portcullis_store::listing_time(d.next_attempt_at).get(11..19).unwrap_or_default(),
                error.as_deref().map(|e| format!(" (last: {e})")).unwrap_or_default()
            ),
            (_, Some(error)) => error.clone(),
            _ => String::new(),
        };
        println!(
            "{:<20} {:<10} {:>8} {:>6} {:>8}  {:<32} {outcome}",
            at.get(..19).unwrap_or(&at),
            d.status,
            d.attempts,
            d.response_status.map_or("-".into(), |s| s.to_string()),
            d.latency_ms.map_or("-".into(), |ms| ms.to_string()),
            d.event_type,
        );
    }
    Ok(())
}

async fn environment(core: &Core, handle: &str) -> anyhow::Result<Arc<portcullis_core::EnvState>> {
    core.environment(handle)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("no environment `{handle}`"))
}

/// `portcullis tasks --complete`: as `POST /api/manual-tasks/:id/complete`,
/// by an operator at the console.
async fn complete_task(
    core: &Arc<Core>,
    handle: &str,
    id: &str,
    by: &str,
    completion: portcullis_provision::tasks::Completion,
) -> anyhow::Result<()> {
    let env = core
        .environment(handle)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("no environment `{handle}`"))?;
    let ctx = portcullis_core::Ctx::operator(env, Some(by.to_owned()));
    let task = portcullis_provision::tasks::complete(core, &ctx, id, completion)
        .await
        .map_err(|e| anyhow::anyhow!("cannot complete task {id}: {e}"))?;
    println!("{} is {} (by {})", task.title, task.status, by);
    Ok(())
}

/// `portcullis graph`: the person view of `GET /api/users/:id/app-accounts`
/// as a table.
async fn graph_command(core: &Core, handle: &str, user: &str) -> anyhow::Result<()> {
    use portcullis_store::model::User;
    let failed = |e: portcullis_store::StoreError| anyhow::anyhow!("{e}");
    let env = core
        .environment(handle)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("no environment `{handle}`"))?;
    let mut conn = core.db.read().await.map_err(failed)?;
    let user_id = if user.contains('@') {
        let found: Option<User> = portcullis_store::record::find_by(
            &mut conn,
            env.id(),
            "lower(email)",
            &user.trim().to_lowercase(),
        )
        .await
        .map_err(failed)?;
        found.with_context(|| format!("no user with the email {user} in `{handle}`"))?.id
    } else {
        user.to_owned()
    };
    let person = portcullis_provision::graph::person(&mut conn, env.id(), &user_id)
        .await
        .map_err(failed)?
        .with_context(|| format!("no user or account `{user}` in `{handle}`"))?;
    match &person.user {
        Some(u) => println!("{} ({}){}", u.email, u.id, if u.blocked { ", blocked" } else { "" }),
        None => println!("{user_id} (deleted user)"),
    }
    println!(
        "{:<20} {:<10} {:<32} {:<24} {:<12} {:<16} drift",
        "app", "kind", "login", "external id", "status", "state"
    );
    for entry in &person.accounts {
        let drift: Vec<&str> =
            entry.changes.as_object().map(|c| c.keys().map(String::as_str).collect()).unwrap_or_default();
        println!(
            "{:<20} {:<10} {:<32} {:<24} {:<12} {:<16} {}",
            entry.app.name,
            entry.app.kind,
            entry.account.login.as_deref().unwrap_or("-"),
            entry.account.external_id,
            entry.account.status,
            entry.state,
            drift.join(", ")
        );
    }
    for (app, reason) in &person.missing {
        println!(
            "{:<20} {:<10} {:<32} {:<24} {:<12} {:<16} {}",
            app.name, app.kind, "-", "-", "none", "missing", reason
        );
    }
    if person.accounts.is_empty() && person.missing.is_empty() {
        println!("no accounts in any app");
    }
    Ok(())
}

async fn serve(config: Config, db: Db) -> anyhow::Result<()> {
    let core = start_server_core(&config, db)?;
    match core.mailer.outbox() {
        Some(dir) => tracing::warn!(
            outbox = %dir.display(),
            "no smtp_url: confirmation and reset mail is written to the dev outbox, not sent"
        ),
        None => tracing::info!("mail goes through the configured SMTP relay"),
    }
    if config.rate_limits {
        tracing::info!("rate limits on login, sign-up, reset and token requests are on");
    } else {
        tracing::warn!("rate limits are OFF (rate_limits = false): use this only to benchmark");
    }
    match environments::all(&core).await {
        Ok(envs) if envs.is_empty() => tracing::warn!(
            "no environments yet: create one with `portcullis env create acme-test` \
             (it prints the admin client's credentials once)"
        ),
        Ok(envs) => {
            for env in envs {
                tracing::info!(handle = %env.handle, issuer = %core.issuer_for(&env.handle), "serving environment");
            }
        }
        Err(error) => return Err(anyhow::anyhow!("cannot read environments: {error}")),
    }
    // The lifecycle hub's relay and workers run beside the server.
    let _hub = portcullis_provision::Hub::start(core.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        address = %config.listen,
        example_issuer = %core.issuer_for("<handle>"),
        "portcullis is serving"
    );
    let app = portcullis_server::app(core.clone());
    let certificates = match config.listen_tls {
        Some(_) => Some(Arc::new(config.certificates()?)),
        None => None,
    };
    if let Some(acme) = config.acme()? {
        tracing::info!(directory = %acme.directory_url, "ACME: certificates for active custom domains");
        tokio::spawn(portcullis_server::tls::acme::run(Arc::downgrade(&core), acme, certificates.clone()));
    }
    if let (Some(address), Some(certificates)) = (config.listen_tls, certificates) {
        let tls = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        tracing::info!(%address, "serving HTTPS");
        tokio::spawn(portcullis_server::tls::listener::serve(tls, app.clone(), core.clone(), certificates));
    }
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// `portcullis sim`: a simulator on loopback until Ctrl-C.
async fn run_simulator(app: &str, port: u16, seed: u64, profile: &str) -> anyhow::Result<()> {
    let running = match app {
        "expensify" => {
            let config = portcullis_sim::expensify::Config { seed, ..Default::default() };
            portcullis_sim::expensify::ExpensifySim::start(config, port).await?.1
        }
        "stripe" => {
            let config = portcullis_sim::stripe::Config { seed, ..Default::default() };
            portcullis_sim::stripe::StripeSim::start(config, port).await?.1
        }
        "scim" => {
            let profile: portcullis_sim::scim::Profile = profile.parse().map_err(anyhow::Error::msg)?;
            let config =
                portcullis_sim::scim::Config { seed, ..portcullis_sim::scim::Config::profile(profile) };
            let running = portcullis_sim::scim::ScimSim::start(config, port).await?.1;
            tracing::info!(
                profile = profile.name(),
                token = portcullis_sim::scim::DEFAULT_TOKEN,
                "SCIM API under {}{}",
                running.base_url(),
                portcullis_sim::scim::BASE_PATH
            );
            running
        }
        "travelperk" => {
            let config = portcullis_sim::travelperk::Config { seed, ..Default::default() };
            let running = portcullis_sim::travelperk::TravelPerkSim::start(config, port).await?.1;
            tracing::info!(
                api_key = portcullis_sim::travelperk::DEFAULT_API_KEY,
                "TravelPerk SCIM API under {}/scim (send Api-Version: 1)",
                running.base_url()
            );
            running
        }
        "payhawk" => {
            let config = portcullis_sim::payhawk::Config { seed, ..Default::default() };
            let running = portcullis_sim::payhawk::PayhawkSim::start(config, port).await?.1;
            tracing::info!(
                account = portcullis_sim::payhawk::DEFAULT_ACCOUNT,
                api_key = portcullis_sim::payhawk::DEFAULT_API_KEY,
                "Payhawk API under {}/api/v3/accounts/{}",
                running.base_url(),
                portcullis_sim::payhawk::DEFAULT_ACCOUNT
            );
            running
        }
        other => anyhow::bail!("no simulator for `{other}` (expensify, stripe, scim, travelperk, payhawk)"),
    };
    tracing::info!(url = %running.base_url(), "{app} simulator listening; back door under /_sim");
    shutdown_signal().await;
    Ok(())
}

/// The core for a console command: no webhook delivery worker, which
/// would claim deliveries only to leave them leased when the command exits.
fn start_core(config: &Config, db: Db) -> anyhow::Result<Arc<Core>> {
    let mut core_config = config.core()?;
    core_config.webhooks.enabled = false;
    Core::start(db, config.master_key()?, core_config).map_err(|e| anyhow::anyhow!("cannot start: {e}"))
}

/// The core of `serve`, with every background worker.
fn start_server_core(config: &Config, db: Db) -> anyhow::Result<Arc<Core>> {
    Core::start(db, config.master_key()?, config.core()?).map_err(|e| anyhow::anyhow!("cannot start: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

async fn env_command(core: &Arc<Core>, command: EnvCommand) -> anyhow::Result<()> {
    match command {
        EnvCommand::Create { handle, name, key_algorithm, json } => {
            let key = NewSigningKey { algorithm: Some(key_algorithm), key_size: None };
            let created = environments::create(core, &handle, name.as_deref(), key)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create environment `{handle}`: {e}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "handle": created.environment.handle,
                        "id": created.environment.id,
                        "issuer": created.issuer,
                        "management_api": created.management_api,
                        "client_id": created.client_id,
                        "client_secret": created.client_secret,
                        "signing_key_kid": created.signing_key_kid,
                    })
                );
            } else {
                println!("Environment `{}` created.", created.environment.handle);
                println!("  issuer:          {}", created.issuer);
                println!("  management API:  {}", created.management_api);
                println!("  admin client_id: {}", created.client_id);
                println!("  client_secret:   {}", created.client_secret);
                println!("The secret is shown only this once; it is stored as a hash.");
            }
            Ok(())
        }
        EnvCommand::AdminClient { handle, by, json } => {
            let env = core
                .environment(&handle)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .with_context(|| format!("no environment `{handle}`"))?;
            let by = by.or_else(|| std::env::var("USER").ok());
            let ctx = portcullis_core::Ctx::operator(env, by);
            let minted = environments::mint_admin_client(core, &ctx)
                .await
                .map_err(|e| anyhow::anyhow!("cannot mint an admin client for `{handle}`: {e}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "management_api": minted.management_api,
                        "client_id": minted.client_id,
                        "client_secret": minted.client_secret,
                    })
                );
            } else {
                println!("Admin client for `{handle}` minted.");
                println!("  management API:  {}", minted.management_api);
                println!("  admin client_id: {}", minted.client_id);
                println!("  client_secret:   {}", minted.client_secret);
                println!("The secret is shown only this once; it is stored as a hash.");
            }
            Ok(())
        }
        EnvCommand::List => {
            for env in environments::all(core).await.map_err(|e| anyhow::anyhow!("{e}"))? {
                println!("{}\t{}\t{}", env.handle, core.issuer_for(&env.handle), env.name);
            }
            Ok(())
        }
    }
}
