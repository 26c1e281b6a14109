//! `webhooks`: delivery throughput and the lag from commit to delivery,
//! in-process, against a receiver on loopback that answers 200 at once.
//!
//! - The ceiling: a plain client POSTing signed bodies to the same receiver
//!   with the worker's concurrency, measured in the same run. Deliveries
//!   per second are reported beside it.
//! - Throughput: N changes are committed with the delivery worker off (one
//!   core's worker disabled), then a second core on the same database
//!   starts its worker; the time until the receiver has all N.
//! - Lag: changes committed at a steady rate for a while; each delivery's
//!   lag is its arrival minus the event's timestamp (written in the
//!   change's transaction). Then the same with a second webhook whose
//!   endpoint never answers (every attempt runs into the 10 s timeout):
//!   the healthy webhook's lag must not suffer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, ensure};
use portcullis_core::services::signing_keys::NewSigningKey;
use portcullis_core::services::webhooks::{self, NewWebhook};
use portcullis_core::services::{environments, roles};
use portcullis_core::{Core, CoreConfig, Ctx};
use portcullis_crypto::aead::MasterKey;
use portcullis_store::Db;
use portcullis_store::model::Actor;
use receiver::Receiver;

/// The targets of the issue: deliveries per second and p99 lag on 2 cores.
const TARGET_RATE: f64 = 2000.0;
const TARGET_P99_MS: f64 = 1000.0;

#[derive(clap::Args)]
pub struct Args {
    /// A PostgreSQL server to run on, in a fresh schema dropped at the end
    /// (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
    /// Changes queued before the throughput run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Changes per second during the lag runs.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Length of each lag run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.events > 0 && args.rate > 0 && args.seconds > 0,
        "--events, --rate and --seconds must be positive"
    );
    let (url, cleanup, backend) =
        crate::fresh_database(args.database_url.as_deref(), "bench_webhooks").await?;
    let outcome = measure(&url, &args).await;
    cleanup.run().await?;
    let lines = outcome?;
    println!("## Webhook delivery · {backend}");
    println!();
    println!("| measurement | result | bound | ratio | verdict |");
    println!("|---|---:|---:|---:|---|");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// The benchmark's environment as the platform operator acts on it.
async fn operator(core: &Core) -> anyhow::Result<Ctx> {
    let env = core.environment("bench-webhooks").await?.context("the environment")?;
    Ok(Ctx {
        env,
        actor: Actor::system(),
        authority: portcullis_core::Authority::Operator,
        ip_address: None,
        user_agent: None,
    })
}

/// A core on the benchmark's database, with or without a delivery worker.
async fn start(url: &str, master_key: &str, worker: bool) -> anyhow::Result<Arc<Core>> {
    let mut config = CoreConfig { allow_private_targets: true, rate_limits: None, ..CoreConfig::default() };
    config.hub.enabled = false;
    config.webhooks.enabled = worker;
    let db = Db::connect(url).await?;
    Core::start(db, MasterKey::from_base64(master_key)?, config).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A webhook on `role.created` at the receiver's `path`.
async fn subscribe(core: &Core, ctx: &Ctx, receiver: &Receiver, path: &str) -> anyhow::Result<()> {
    let events = vec!["role.created".into()];
    let webhook =
        NewWebhook { name: path.into(), url: receiver.url(path), events, active: None, description: None };
    webhooks::create(core, ctx, webhook).await?;
    Ok(())
}

async fn measure(url: &str, args: &Args) -> anyhow::Result<Vec<String>> {
    let master_key = MasterKey::generate_base64();
    Db::connect(url).await?.migrate().await?;
    // The first core commits changes; its worker is off.
    let writer = start(url, &master_key, false).await?;
    let es256 = NewSigningKey { algorithm: Some("es256".into()), key_size: None };
    environments::create(&writer, "bench-webhooks", None, es256).await?;
    let ctx = operator(&writer).await?;
    let receiver = Receiver::start().await?;
    subscribe(&writer, &ctx, &receiver, "/healthy").await?;
    let mut lines = Vec::new();

    // The ceiling: signed POSTs straight to the receiver.
    let concurrency = portcullis_core::webhooks::WebhookSettings::default().per_webhook;
    let ceiling = receiver.ceiling(concurrency, Duration::from_secs(3)).await?;
    lines.push(format!(
        "| POST ceiling ({concurrency} concurrent, signed, same receiver) | {ceiling:.0}/s | | | |"
    ));

    // Throughput: N queued, then a worker starts.
    for i in 0..args.events {
        roles::create(&writer, &ctx, roles::NewRole { name: format!("queued-{i}"), description: None })
            .await?;
    }
    receiver.reset("/healthy");
    let started = Instant::now();
    let worker = start(url, &master_key, true).await?;
    receiver.wait("/healthy", args.events, Duration::from_secs(600)).await?;
    let rate = args.events as f64 / started.elapsed().as_secs_f64();
    lines.push(format!(
        "| deliveries/s ({} queued, one webhook) | {rate:.0}/s | ≥ {TARGET_RATE:.0}/s | {:.2} of ceiling | {} |",
        args.events,
        rate / ceiling,
        verdict(rate >= TARGET_RATE)
    ));

    // Lag at a steady rate, healthy receiver only; changes are committed
    // in the worker's process, as on a single server.
    let ctx = operator(&worker).await?;
    let (p50, p99) = lag_run(&worker, &ctx, &receiver, args, "steady").await?;
    lines.push(format!(
        "| lag p50 / p99 at {}/s | {p50:.0} / {p99:.0} ms | p99 < {TARGET_P99_MS:.0} ms | | {} |",
        args.rate,
        verdict(p99 < TARGET_P99_MS)
    ));

    // The same beside a webhook whose endpoint never answers.
    subscribe(&worker, &ctx, &receiver, "/dead").await?;
    let (p50, p99) = lag_run(&worker, &ctx, &receiver, args, "beside-dead").await?;
    let dead_attempts = receiver.count("/dead");
    lines.push(format!(
        "| lag p50 / p99 at {}/s, beside an endpoint that times out ({dead_attempts} attempts on it) | {p50:.0} / {p99:.0} ms | p99 < {TARGET_P99_MS:.0} ms | | {} |",
        args.rate,
        verdict(p99 < TARGET_P99_MS)
    ));
    Ok(lines)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "**FAIL**" }
}

/// Commits changes at `args.rate` per second for `args.seconds`; returns
/// the healthy webhook's lag p50 and p99 in milliseconds.
async fn lag_run(
    core: &Arc<Core>,
    ctx: &Ctx,
    receiver: &Receiver,
    args: &Args,
    label: &str,
) -> anyhow::Result<(f64, f64)> {
    receiver.reset("/healthy");
    let total = (args.rate * args.seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        tick.tick().await;
        roles::create(core, ctx, roles::NewRole { name: format!("{label}-{i}"), description: None }).await?;
    }
    receiver.wait("/healthy", total, Duration::from_secs(120)).await?;
    let mut lags = receiver.lags("/healthy");
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
    Ok((at(0.50), at(0.99)))
}

/// A receiver on loopback (axum, as a customer's endpoint might be):
/// `/dead` never answers in time; anything else answers 200 at once and
/// records the delivery's lag.
mod receiver {
    use std::collections::HashMap;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{StatusCode, Uri};

    use super::*;

    type Seen = Arc<Mutex<HashMap<String, Vec<f64>>>>;

    pub struct Receiver {
        addr: std::net::SocketAddr,
        seen: Seen,
    }

    async fn receive(State(seen): State<Seen>, uri: Uri, body: Bytes) -> StatusCode {
        let arrived = SystemTime::now();
        let path = uri.path().to_owned();
        if path == "/dead" {
            seen.lock().unwrap().entry(path).or_default().push(0.0);
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::OK;
        }
        let lag = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|payload| payload["timestamp"].as_str().and_then(time_of))
            .and_then(|sent| arrived.duration_since(sent).ok())
            .map_or(0.0, |lag| lag.as_secs_f64() * 1000.0);
        seen.lock().unwrap().entry(path).or_default().push(lag);
        StatusCode::OK
    }

    fn time_of(rfc3339: &str) -> Option<SystemTime> {
        let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
        let nanos = u64::try_from(t.unix_timestamp_nanos()).ok()?;
        Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
    }

    impl Receiver {
        pub async fn start() -> anyhow::Result<Receiver> {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let seen = Seen::default();
            let app = axum::Router::new().fallback(receive).with_state(seen.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            Ok(Receiver { addr, seen })
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        pub fn reset(&self, path: &str) {
            self.seen.lock().unwrap().remove(path);
        }

        pub fn count(&self, path: &str) -> usize {
            self.seen.lock().unwrap().get(path).map_or(0, Vec::len)
        }

        pub fn lags(&self, path: &str) -> Vec<f64> {
            self.seen.lock().unwrap().get(path).cloned().unwrap_or_default()
        }

        pub async fn wait(&self, path: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
            let deadline = Instant::now() + timeout;
            while self.count(path) < n {
                ensure!(
                    Instant::now() < deadline,
                    "{path}: {} of {n} deliveries after {timeout:?}",
                    self.count(path)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        }

        /// Signed POSTs per second straight to `/ceiling`, `concurrency` at a time.
        pub async fn ceiling(&self, concurrency: usize, length: Duration) -> anyhow::Result<f64> {
            let client = reqwest::Client::new();
            let url = self.url("/ceiling");
            let secret = portcullis_crypto::webhook::generate_secret();
            let now = portcullis_store::now_micros();
            let body = serde_json::json!({"type": "role.created", "timestamp": portcullis_store::listing_time(now), "data": {}})
                .to_string();
            let deadline = Instant::now() + length;
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, url, secret, body) =
                        (client.clone(), url.clone(), secret.clone(), body.clone());
                    tokio::spawn(async move {
                        let mut sent = 0u64;
                        while Instant::now() < deadline {
                            let id = portcullis_store::new_id();
                            let at = portcullis_store::now_micros() / 1_000_000;
                            let signature =
                                portcullis_crypto::webhook::sign(&secret, &id, at, body.as_bytes())
                                    .expect("sign");
                            let response = client
                                .post(&url)
                                .header("content-type", "application/json")
                                .header("webhook-id", id)
                                .header("webhook-timestamp", at.to_string())
                                .header("webhook-signature", signature)
                                .body(body.clone())
                                .send()
                                .await;
                            if response.is_ok_and(|r| r.status().is_success()) {
                                sent += 1;
                            }
                        }
                        sent
                    })
                })
                .collect();
            let mut sent = 0;
            for task in tasks {
                sent += task.await?;
            }
            Ok(sent as f64 / length.as_secs_f64())
        }
    }
}
