//! `hub`: reconciling N users against each simulator, beside the floor that
//! app's rate limits set.
//!
//! The directory (N users holding the access role) is bulk-inserted; each
//! simulator is seeded with exactly the accounts the hub would have made for
//! them (rendered by the hub's own [`Directory::render`]), so every
//! reconciliation must find N linked accounts and nothing to do. Stripe
//! pages its roster 100 customers at a time at 25 requests/s per endpoint,
//! so its floor is pages ÷ 25 s. Expensify's roster is two calls, which
//! its limits (5 per 10 s, 20 per 60 s) leave unthrottled: it has no
//! rate-limit floor, so its lines show the time beside the two calls' bare
//! transfer, without a verdict.
//! Reconciliation is called directly: the hub's background workers are off.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use portcullis_core::services::apps::{self, AppChanges, Credentials, NewApp};
use portcullis_core::services::signing_keys::NewSigningKey;
use portcullis_core::services::{Patch, environments, roles};
use portcullis_core::{Core, CoreConfig, Ctx};
use portcullis_crypto::aead::MasterKey;
use portcullis_crypto::secret::random_base62;
use portcullis_provision::Worker;
use portcullis_provision::connector::Desired;
use portcullis_provision::connector::http::shared_throttle;
use portcullis_provision::connector::stripe::USER_KEY;
use portcullis_provision::graph::Directory;
use portcullis_provision::reconcile::reconcile;
use portcullis_sim::expensify::{self, Employee, ExpensifySim, Partner, PolicySeed};
use portcullis_sim::stripe::{self, NewCustomer, StripeSim};
use portcullis_store::model::{Actor, App, User, UserRole};
use portcullis_store::types::JsonText;
use portcullis_store::{Db, new_id, now_micros, record};
use serde_json::{Value, json};

const POLICY_ID: &str = "B3E4C5D6A7F80912";
/// Stripe's published per-endpoint limit; a roster read is one endpoint.
const STRIPE_ENDPOINT_RPS: usize = 25;
const STRIPE_PAGE: usize = 100;
/// The acceptance bound: reconciliation within 1.2× of the floor.
const BOUND: f64 = 1.2;

#[derive(clap::Args)]
pub struct Args {
    /// Users holding the access role, hence accounts in each simulator.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// A PostgreSQL server to run on, in a fresh schema dropped at the end
    /// (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
    /// Timed repetitions of each measurement (best and median reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// One line of the table.
struct Line {
    app: &'static str,
    what: String,
    total: Duration,
    /// Until the roster was read (the last `progress` call), for reconciliations.
    roster: Option<Duration>,
    /// The app's floor, which `total` is divided by.
    floor: Duration,
    judge: Judge,
}

/// An app's reconciliation lines: its name, its floor and how they are judged.
struct Held {
    app: &'static str,
    floor: Duration,
    judge: Judge,
}

/// What the verdict column says of a line.
#[derive(Clone, Copy, PartialEq)]
enum Judge {
    /// A floor or reference line: no verdict.
    Reference,
    /// Held to [`BOUND`] × the floor the app's rate limits set.
    Bound,
    /// A reconciliation of an app whose limits put no wait on its roster
    /// read (Expensify's two calls): there is no rate-limit floor to hold
    /// it to, so the line shows the time and its ratio to bare transfer.
    NoRateFloor,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.users > 0 && args.runs > 0, "--users and --runs must be at least 1");
    let (url, cleanup, backend) = crate::fresh_database(args.database_url.as_deref(), "bench_hub").await?;
    let outcome = measure(&url, &args).await;
    cleanup.run().await?;
    print_table(backend, &args, &outcome?);
    Ok(())
}

/// Every line of the table.
async fn measure(url: &str, args: &Args) -> anyhow::Result<Vec<Line>> {
    let n = args.users;
    let db = Db::connect(url).await?;
    db.migrate().await?;
    // The simulators listen on loopback.
    let mut config = CoreConfig { allow_private_targets: true, ..CoreConfig::default() };
    config.hub.enabled = false;
    let master_key = MasterKey::from_base64(&MasterKey::generate_base64())?;
    let core = Core::start(db, master_key, config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let es256 = NewSigningKey { algorithm: Some("es256".into()), key_size: None };
    environments::create(&core, "bench-hub", None, es256).await?;
    let env = core.environment("bench-hub").await?.context("the environment just created")?;
    let ctx = Ctx {
        env,
        actor: Actor::system(),
        authority: portcullis_core::Authority::Operator,
        ip_address: None,
        user_agent: None,
    };
    let role =
        roles::create(&core, &ctx, roles::NewRole { name: "Employees".into(), description: None }).await?;
    let users = seed_directory(&core.db, ctx.environment_id(), &role.id, n).await?;

    // Fresh credentials for every timed read: the hub's throttle and the
    // simulators' limiters are per credential, so no read inherits the
    // window of the one before.
    let stripe_keys: Vec<String> =
        (0..=args.runs).map(|_| format!("sk_test_{}", random_base62(24))).collect();
    let (stripe, stripe_running) =
        StripeSim::start(stripe::Config { api_keys: stripe_keys.clone(), ..Default::default() }, 0).await?;
    // The same customers without the limiter, for the raw transfer time.
    let raw_key = format!("sk_test_{}", random_base62(24));
    let raw_config =
        stripe::Config { api_keys: vec![raw_key.clone()], rate_limits: false, ..Default::default() };
    let (stripe_raw, stripe_raw_running) = StripeSim::start(raw_config, 0).await?;
    // The integration's admin (the policy owner) is one of the N users, so
    // the roster is exactly the N employees.
    let partners: Vec<Partner> = (0..=2 * args.runs)
        .map(|_| Partner {
            partner_user_id: format!("aa_bench_{}", random_base62(12)),
            partner_user_secret: random_base62(24),
            email: users[0].email.clone(),
        })
        .collect();
    let expensify_config =
        expensify::Config { partners: partners.clone(), policies: Vec::new(), ..Default::default() };
    let (expensify, expensify_running) = ExpensifySim::start(expensify_config, 0).await?;

    let stripe_credentials =
        |key: &String| Credentials { secret_key: Some(key.clone()), ..Default::default() };
    let expensify_credentials = |p: &Partner| Credentials {
        partner_user_id: Some(p.partner_user_id.clone()),
        partner_user_secret: Some(p.partner_user_secret.clone()),
        ..Default::default()
    };
    let new_app = |name: &str, kind: &str, base_url: String, credentials, settings, mappings| NewApp {
        name: name.into(),
        kind: kind.into(),
        base_url: Some(base_url),
        credentials,
        settings,
        access_role_ids: vec![role.id.clone()],
        attribute_mappings: mappings,
        deprovision_mode: None,
        provisioning: None,
        enabled: None,
    };
    let stripe_app = apps::create(
        &core,
        &ctx,
        new_app(
            "Stripe",
            "stripe",
            stripe_running.base_url(),
            stripe_credentials(&stripe_keys[0]),
            None,
            Some(json!({"metadata.department": "metadata.department"})),
        ),
    )
    .await?;
    let expensify_app = apps::create(
        &core,
        &ctx,
        new_app(
            "Expensify",
            "expensify",
            expensify_running.base_url(),
            expensify_credentials(&partners[0]),
            Some(json!({"policy_id": POLICY_ID})),
            None,
        ),
    )
    .await?;

    // Seed what the hub would have written: rendered by the hub itself.
    let directory = {
        let mut conn = core.db.read().await?;
        Directory::with_users(&mut conn, ctx.environment_id(), users.clone()).await?
    };
    for user in &users {
        let customer = customer(&directory.render(&stripe_app, user))?;
        stripe.seed_customer(customer.clone());
        stripe_raw.seed_customer(customer);
    }
    let employees = users
        .iter()
        .map(|user| employee(&directory.render(&expensify_app, user)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    expensify.create_policy(PolicySeed {
        id: Some(POLICY_ID.into()),
        name: "Bench".into(),
        owner: users[0].email.clone(),
        employees,
        ..PolicySeed::default()
    });

    let worker = Worker::new(core.clone(), shared_throttle());
    let client = reqwest::Client::new();
    let mut lines = Vec::new();

    // Stripe.
    let pages = n.div_ceil(STRIPE_PAGE);
    let stripe_floor = Duration::from_secs_f64(pages as f64 / STRIPE_ENDPOINT_RPS as f64);
    lines.push(Line {
        app: "Stripe",
        what: format!("floor: {pages} pages ÷ {STRIPE_ENDPOINT_RPS} req/s"),
        total: stripe_floor,
        roster: None,
        floor: stripe_floor,
        judge: Judge::Reference,
    });
    lines.push(Line {
        app: "Stripe",
        what: format!("burst floor: a sliding 1 s window, ⌈{pages}/{STRIPE_ENDPOINT_RPS}⌉ − 1 s"),
        total: Duration::from_secs((pages.div_ceil(STRIPE_ENDPOINT_RPS) - 1) as u64),
        roster: None,
        floor: stripe_floor,
        judge: Judge::Reference,
    });
    let mut raw = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let read = stripe_roster(&client, &stripe_raw_running.base_url(), &raw_key).await?;
        raw.push(started.elapsed());
        ensure!(read == n, "the raw read found {read} customers, not {n}");
    }
    raw.sort();
    lines.push(Line {
        app: "Stripe",
        what: format!("raw transfer: the same pages, simulator limiter off (best of {})", args.runs),
        total: raw[0],
        roster: None,
        floor: stripe_floor,
        judge: Judge::Reference,
    });
    let mut keys = stripe_keys.iter().map(stripe_credentials);
    lines.extend(
        reconciliations(
            Held { app: "Stripe", floor: stripe_floor, judge: Judge::Bound },
            &worker,
            &ctx,
            &stripe_app,
            &mut keys,
            args,
        )
        .await?,
    );

    // Expensify.
    let mut partners = partners.iter();
    let mut floors = Vec::new();
    for partner in partners.by_ref().take(args.runs) {
        floors.push(expensify_roster(&client, &expensify_running.base_url(), partner, n).await?);
    }
    floors.sort();
    let expensify_floor = floors[0];
    lines.push(Line {
        app: "Expensify",
        what: format!(
            "no rate-limit floor: 2 calls fit 5 per 10 s and 20 per 60 s; their bare transfer (best of {})",
            args.runs
        ),
        total: expensify_floor,
        roster: None,
        floor: expensify_floor,
        judge: Judge::Reference,
    });
    let mut credentials = partners.map(expensify_credentials);
    lines.extend(
        reconciliations(
            Held { app: "Expensify", floor: expensify_floor, judge: Judge::NoRateFloor },
            &worker,
            &ctx,
            &expensify_app,
            &mut credentials,
            args,
        )
        .await?,
    );

    core.db.pool().close().await;
    Ok(lines)
}

/// N users without passwords (hashing 10,000 would take minutes and is not
/// what this measures), each holding `role`, in one transaction.
async fn seed_directory(db: &Db, environment_id: &str, role: &str, n: usize) -> anyhow::Result<Vec<User>> {
    let now = now_micros();
    let users: Vec<User> = (0..n)
        .map(|i| User {
            id: new_id(),
            environment_id: environment_id.to_owned(),
            email: format!("user{i}@bench.test"),
            email_verified: true,
            first_name: Some(format!("User{i}")),
            last_name: Some("Bench".into()),
            password_hash: None,
            blocked: false,
            metadata: JsonText(json!({"department": format!("Department {}", i % 10)})),
            inserted_at: now,
            updated_at: now,
            failed_logins: 0,
            locked_until: None,
            manager_id: None,
        })
        .collect();
    let links: Vec<UserRole> = users
        .iter()
        .map(|user| UserRole {
            id: new_id(),
            environment_id: environment_id.to_owned(),
            user_id: user.id.clone(),
            role_id: role.to_owned(),
            inserted_at: now,
            updated_at: now,
        })
        .collect();
    let mut tx = db.write_state().await?;
    record::insert_many(tx.conn(), &users).await?;
    record::insert_many(tx.conn(), &links).await?;
    tx.commit().await?;
    Ok(users)
}

/// The customer the Stripe connector creates for `desired` (its
/// `customer_form`: mapped fields, `metadata.*`, and the user link).
fn customer(desired: &Desired) -> anyhow::Result<NewCustomer> {
    let mut customer = NewCustomer { email: Some(desired.email.clone()), ..NewCustomer::default() };
    for (key, value) in &desired.attributes {
        let value = value.as_str().context("the bench maps only text attributes")?.to_owned();
        match (key.strip_prefix("metadata."), key.as_str()) {
            (Some(meta), _) => {
                customer.metadata.insert(meta.to_owned(), value);
            }
            (None, "name") => customer.name = Some(value),
            _ => bail!("the bench does not seed the Stripe attribute {key}"),
        }
    }
    customer.metadata.insert(USER_KEY.to_owned(), desired.user_id.clone());
    Ok(customer)
}

/// The employee the Expensify connector's updater row makes for `desired`.
fn employee(desired: &Desired) -> anyhow::Result<Employee> {
    let mut employee =
        Employee { employee_id: Some(desired.user_id.clone()), ..Employee::new(&desired.email, "user") };
    for (key, value) in &desired.attributes {
        let value = value.as_str().context("the bench maps only text attributes")?.to_owned();
        match key.as_str() {
            "firstName" => employee.first_name = value,
            "lastName" => employee.last_name = value,
            "managerEmail" => employee.submits_to = Some(value),
            _ => bail!("the bench does not seed the Expensify attribute {key}"),
        }
    }
    Ok(employee)
}

/// Reads every page as the connector does (`limit=100`, `starting_after`
/// the last id, JSON parsed), with nothing pacing it; returns the count.
async fn stripe_roster(client: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<usize> {
    let mut read = 0;
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/customers?limit={STRIPE_PAGE}");
        if let Some(id) = &after {
            url.push_str(&format!("&starting_after={id}"));
        }
        let request = client.get(url).bearer_auth(key).header("Stripe-Version", stripe::API_VERSION);
        let page: Value = request.send().await?.error_for_status()?.json().await?;
        let data = page["data"].as_array().context("a list answer without data")?;
        read += data.len();
        match data.last().and_then(|c| c["id"].as_str()) {
            Some(last) if page["has_more"] == true => after = Some(last.to_owned()),
            _ => return Ok(read),
        }
    }
}

/// The connector's two roster calls (policy list, then the policy's
/// employees) with the same bodies; the time until both answers are read.
async fn expensify_roster(
    client: &reqwest::Client,
    base: &str,
    partner: &Partner,
    n: usize,
) -> anyhow::Result<Duration> {
    let credentials =
        json!({"partnerUserID": partner.partner_user_id, "partnerUserSecret": partner.partner_user_secret});
    let jobs = [
        json!({"type": "get", "credentials": credentials,
               "inputSettings": {"type": "policyList", "adminOnly": true}}),
        json!({"type": "get", "credentials": credentials,
               "inputSettings": {"type": "policy", "policyIDList": [POLICY_ID], "fields": ["employees"]}}),
    ];
    let url = format!("{base}{}", expensify::ENDPOINT);
    let started = Instant::now();
    let mut answers = Vec::new();
    for job in &jobs {
        let form = [("requestJobDescription", job.to_string())];
        answers.push(client.post(&url).form(&form).send().await?.error_for_status()?.bytes().await?);
    }
    let elapsed = started.elapsed();
    // Checked outside the timing: the answer really held the whole roster.
    let roster: Value = serde_json::from_slice(&answers[1])?;
    let employees = roster["policyInfo"][POLICY_ID]["employees"].as_array().map_or(0, Vec::len);
    ensure!(employees == n, "the policy answer listed {employees} employees, not {n}: {roster}");
    Ok(elapsed)
}

/// The first reconciliation (an empty graph: it links N accounts), then
/// `runs` more on the linked graph; each with fresh credentials.
async fn reconciliations(
    Held { app: app_name, floor, judge }: Held,
    worker: &Worker,
    ctx: &Ctx,
    app: &App,
    credentials: &mut impl Iterator<Item = Credentials>,
    args: &Args,
) -> anyhow::Result<Vec<Line>> {
    let mut next = async || {
        let credentials = credentials.next().context("a fresh credential per run")?;
        reconcile_once(worker, ctx, app, credentials, args.users).await
    };
    let (total, roster) = next().await?;
    let mut lines = vec![Line {
        app: app_name,
        what: format!("reconcile, first (links {})", args.users),
        total,
        roster,
        floor,
        judge,
    }];
    let mut steady = Vec::new();
    for _ in 0..args.runs {
        steady.push(next().await?);
    }
    steady.sort();
    for (label, (total, roster)) in [("best", steady[0]), ("median", steady[steady.len() / 2])] {
        let what = format!("reconcile, steady ({label} of {})", args.runs);
        lines.push(Line { app: app_name, what, total, roster, floor, judge });
    }
    Ok(lines)
}

/// One timed reconciliation: the total, and when the roster was read.
async fn reconcile_once(
    worker: &Worker,
    ctx: &Ctx,
    app: &App,
    credentials: Credentials,
    n: usize,
) -> anyhow::Result<(Duration, Option<Duration>)> {
    let changes = AppChanges { credentials: Patch::Value(credentials), ..AppChanges::default() };
    let app = apps::update(&worker.core, ctx, &app.id, changes).await?;
    let roster_read = Mutex::new(None);
    let started = Instant::now();
    let progress = |_: usize| *roster_read.lock().unwrap() = Some(started.elapsed());
    let report = reconcile(worker, &app, false, &progress).await?;
    let total = started.elapsed();
    if report.accounts_read != n || report.linked != n || !report.steps.is_empty() {
        bail!(
            "{}: expected {n} accounts read and linked and no steps, got:\n{}",
            app.name,
            serde_json::to_string_pretty(&report)?
        );
    }
    Ok((total, roster_read.into_inner().unwrap()))
}

fn print_table(backend: &str, args: &Args, lines: &[Line]) {
    let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
    println!("### {backend}: {} users, {} runs\n", args.users, args.runs);
    println!("| app | measurement | seconds | roster read | rest | ÷ floor | ≤ {BOUND}× floor |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for line in lines {
        let ratio = line.total.as_secs_f64() / line.floor.as_secs_f64();
        let (roster, rest) = match line.roster {
            Some(roster) => (secs(roster), secs(line.total.saturating_sub(roster))),
            None => (String::new(), String::new()),
        };
        let verdict = match (line.judge, ratio <= BOUND) {
            (Judge::Reference, _) => "",
            (Judge::Bound, true) => "PASS",
            (Judge::Bound, false) => "FAIL",
            (Judge::NoRateFloor, _) => "n/a: no wait to be within",
        };
        println!(
            "| {} | {} | {} | {roster} | {rest} | {ratio:.2} | {verdict} |",
            line.app,
            line.what,
            secs(line.total)
        );
    }
}
