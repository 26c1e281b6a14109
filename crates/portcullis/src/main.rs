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
    }
}

async fn serve(config: Config, db: Db) -> anyhow::Result<()> {
    let core = start_core(&config, db)?;
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        address = %config.listen,
        example_issuer = %core.issuer_for("<handle>"),
        "portcullis is serving"
    );
    axum::serve(listener, portcullis_server::app(core).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

fn start_core(config: &Config, db: Db) -> anyhow::Result<Arc<Core>> {
    Core::start(db, config.master_key()?, config.core()).map_err(|e| anyhow::anyhow!("cannot start: {e}"))
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
        EnvCommand::List => {
            for env in environments::all(core).await.map_err(|e| anyhow::anyhow!("{e}"))? {
                println!("{}\t{}\t{}", env.handle, core.issuer_for(&env.handle), env.name);
            }
            Ok(())
        }
    }
}
