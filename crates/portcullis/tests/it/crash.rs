//! Crash safety with real process kills. The `portcullis` binary serves a
//! database of the test's own; clients create invitations without pause and
//! the process is SIGKILLed among them, three times, then started once more.
//! Mail is queued in the transaction of the change that causes it and sent
//! after commit, so: every committed invitation's mail arrives, no mail goes
//! out for a change that did not commit, and a kill adds at most one
//! duplicate (the message it was sending: at-least-once delivery).
//!
//! Webhooks the same way: a burst of 1,000 changes with the process killed
//! in the middle, then restarted: every committed change is delivered, none
//! is invented, and a repeat carries the `webhook-id` of the first; and two
//! processes on one database deliver each event once between them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_store::Db;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Backend, FreshDatabase, free_port, http_client};

const KILLS: u64 = 3;
/// Clients creating invitations at the same time.
const WRITERS: usize = 4;

struct Node {
    child: tokio::process::Child,
    port: u16,
}

/// The binary with the test's database, data directory and outbox; a
/// one-second mail lease so that mail a killed process was sending is due
/// again quickly.
fn portcullis(database: &FreshDatabase, master_key: &str, port: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .env("PORTCULLIS_DATABASE_URL", &database.url)
        .env("PORTCULLIS_DATA_DIR", database.dir.path().join("data"))
        .env("PORTCULLIS_OUTBOX_DIR", outbox(database))
        .env("PORTCULLIS_MASTER_KEY", master_key)
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_RATE_LIMITS", "false")
        .env("PORTCULLIS_MAIL_LEASE_SECONDS", "1")
        // Webhooks to the test's receiver on loopback; a delivery a killed
        // process was sending is due again 15 s later.
        .env("PORTCULLIS_ALLOW_PRIVATE_TARGETS", "true")
        .env("PORTCULLIS_WEBHOOK_LEASE_SECONDS", "15")
        .env("PORTCULLIS_WEBHOOK_RETRY_BASE_SECONDS", "1")
        .env("PORTCULLIS_LOG", "error")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn outbox(database: &FreshDatabase) -> PathBuf {
    database.dir.path().join("outbox")
}

async fn run(database: &FreshDatabase, master_key: &str, args: &[&str]) -> String {
    let output = portcullis(database, master_key, 0).args(args).output().await.expect("run portcullis");
    assert!(output.status.success(), "portcullis {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

async fn serve(database: &FreshDatabase, master_key: &str) -> Node {
    let port = free_port();
    let child = portcullis(database, master_key, port)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start portcullis serve");
    let http = http_client(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let discovery = format!("http://acme-test.localhost:{port}/.well-known/openid-configuration");
    while http.get(&discovery).send().await.map(|r| r.status()).ok() != Some(StatusCode::OK) {
        assert!(Instant::now() < deadline, "portcullis serve did not answer within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Node { child, port }
}

async fn admin_token(node: &Node, admin: &Value) -> String {
    let base = format!("http://acme-test.localhost:{}", node.port);
    let response = http_client(node.port)
        .post(format!("{base}/oauth/token"))
        .basic_auth(admin["client_id"].as_str().unwrap(), admin["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials"), ("resource", &format!("{base}/api"))])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token JSON");
    body["access_token"].as_str().expect("access token").to_owned()
}

async fn post(port: u16, token: &str, path: &str, document: Value) -> Result<Value, reqwest::Error> {
    http_client(port)
        .post(format!("http://acme-test.localhost:{port}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/vnd.api+json")
        .json(&document)
        .send()
        .await?
        .json()
        .await
}

/// Recipients in the outbox, with how many messages each got.
fn recipients(dir: &Path) -> BTreeMap<String, u64> {
    let mut seen = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let mail: Value =
            serde_json::from_slice(&std::fs::read(entry.path()).expect("read mail")).expect("mail JSON");
        *seen.entry(mail["to"].as_str().expect("to").to_owned()).or_insert(0) += 1;
    }
    seen
}

async fn committed_invitations(db: &Db) -> BTreeSet<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT email FROM invitations").fetch_all(db.pool()).await.expect("invitations");
    rows.into_iter().map(|(email,)| email).collect()
}

async fn queued(db: &Db) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM queued_mails").fetch_one(db.pool()).await.expect("queue");
    n
}

/// A fresh database, migrated by the binary, with the environment
/// `acme-test` it created: the database, the master key and the admin
/// client (`env create --json`). `None` when PostgreSQL is not configured.
async fn installation(backend: Backend) -> Option<(FreshDatabase, String, Value)> {
    let database = FreshDatabase::create(backend).await?;
    let master_key = portcullis_crypto::aead::MasterKey::generate_base64();
    run(&database, &master_key, &["migrate"]).await;
    let admin = run(&database, &master_key, &["env", "create", "acme-test", "--json"]).await;
    let admin = serde_json::from_str(&admin).expect("env create --json");
    Some((database, master_key, admin))
}

async fn mail_survives_kills(backend: Backend) {
    let Some((database, master_key, admin)) = installation(backend).await else { return };

    let mut organization = None;
    let mut failed_requests = 0;
    for round in 0..KILLS {
        let mut node = serve(&database, &master_key).await;
        let token = admin_token(&node, &admin).await;
        let organization = match &organization {
            Some(id) => id,
            None => {
                let created = post(
                    node.port,
                    &token,
                    "/api/organizations",
                    json!({"data": {"type": "organization",
                    "attributes": {"name": "Acme"}}}),
                )
                .await
                .expect("create organization");
                organization.insert(created["data"]["id"].as_str().expect("organization id").to_owned())
            }
        };
        // Writers invite without pause; the kill comes once a few of their
        // invitations committed (a different number each round), so it
        // lands with requests, transactions and mail in flight.
        let answered = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (port, token, answered) = (node.port, token.clone(), answered.clone());
                let organization = organization.clone();
                tokio::spawn(async move {
                    let mut cut_off = 0;
                    for i in 0.. {
                        let document = json!({"data": {"type": "invitation",
                            "attributes": {"email": format!("r{round}-w{writer}-{i}@example.com")},
                            "relationships": {"organization": {"data": {"type": "organization", "id": organization}}}}});
                        match post(port, &token, "/api/invitations", document).await {
                            Ok(body) if body["data"]["id"].is_string() => answered.fetch_add(1, Ordering::SeqCst),
                            _ => {
                                cut_off += 1;
                                break;
                            }
                        };
                    }
                    cut_off
                })
            })
            .collect();
        let kill_after = 5 + 7 * usize::try_from(round).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while answered.load(Ordering::SeqCst) < kill_after {
            assert!(Instant::now() < deadline, "{kill_after} invitations not made within 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        node.child.start_kill().expect("SIGKILL portcullis");
        node.child.wait().await.expect("reap portcullis");
        for writer in writers {
            failed_requests += writer.await.expect("writer task");
        }
    }

    // One more start sends what the killed processes committed.
    let db = Db::connect(&database.url).await.expect("connect");
    let committed = committed_invitations(&db).await;
    assert!(!committed.is_empty(), "some invitations committed before the kills");
    let node = serve(&database, &master_key).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<String> = recipients(&outbox(&database)).into_keys().collect();
        if queued(&db).await == 0 && got.is_superset(&committed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s, {} messages are still queued and {} committed invitations have no mail",
            queued(&db).await,
            committed.difference(&got).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(node);

    let sent = recipients(&outbox(&database));
    let addresses: BTreeSet<String> = sent.keys().cloned().collect();
    assert_eq!(addresses, committed, "mail went to exactly the committed invitations");
    let duplicates: u64 = sent.values().map(|n| n - 1).sum();
    assert!(duplicates <= KILLS, "{duplicates} duplicates after {KILLS} kills: {sent:?}");
    println!(
        "{backend:?}: {} invitations committed, {failed_requests} requests cut off by {KILLS} kills, \
         every invitation mailed, {duplicates} duplicates",
        committed.len(),
    );
}

mod invitation_mail_is_neither_lost_nor_invented_when_the_process_is_killed {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        mail_survives_kills(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        mail_survives_kills(Backend::Postgres).await;
    }
}

/// Creates roles named `{prefix}-{writer}-{i}` through `nodes` (round
/// robin) until `total` were answered or a node stopped answering; returns
/// how many were answered.
async fn create_roles(
    nodes: &[(u16, String)],
    prefix: &str,
    total: usize,
    answered: Arc<AtomicUsize>,
) -> usize {
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (nodes, answered, prefix) = (nodes.to_vec(), answered.clone(), prefix.to_owned());
            tokio::spawn(async move {
                for i in 0.. {
                    if answered.load(Ordering::SeqCst) >= total {
                        return;
                    }
                    let (port, token) = &nodes[i % nodes.len()];
                    let document =
                        json!({"data": {"type": "role", "attributes": {"name": format!("{prefix}-{writer}-{i}")}}});
                    match post(*port, token, "/api/roles", document).await {
                        Ok(body) if body["data"]["id"].is_string() => answered.fetch_add(1, Ordering::SeqCst),
                        _ => return,
                    };
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task");
    }
    answered.load(Ordering::SeqCst)
}

async fn committed_roles(db: &Db) -> BTreeSet<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM roles").fetch_all(db.pool()).await.expect("roles");
    rows.into_iter().map(|(id,)| id).collect()
}

/// Waits until every committed role's event reached the receiver; returns
/// the deliveries per `webhook-id` (body, times received).
async fn delivered_roles(
    receiver: &crate::webhooks::receiver::Receiver,
    committed: &BTreeSet<String>,
) -> BTreeMap<String, (String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut by_id: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for request in receiver.received() {
            let entry =
                by_id.entry(request.header("webhook-id").to_owned()).or_insert((request.body.clone(), 0));
            assert_eq!(entry.0, request.body, "a repeated webhook-id carries the same body");
            entry.1 += 1;
        }
        let roles: BTreeSet<String> = by_id
            .values()
            .map(|(body, _)| {
                serde_json::from_str::<Value>(body).expect("JSON")["data"]["id"].as_str().unwrap().to_owned()
            })
            .collect();
        if roles.is_superset(committed) {
            assert_eq!(&roles, committed, "deliveries only for committed changes");
            return by_id;
        }
        assert!(
            Instant::now() < deadline,
            "after 90 s, {} of {} committed changes were not delivered",
            committed.difference(&roles).count(),
            committed.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn webhooks_survive_a_kill(backend: Backend) {
    let Some((database, master_key, admin)) = installation(backend).await else { return };
    let receiver = crate::webhooks::receiver::Receiver::start().await;
    let mut node = serve(&database, &master_key).await;
    let token = admin_token(&node, &admin).await;
    let webhook = json!({"data": {"type": "webhook", "attributes":
        {"name": "crash", "url": receiver.url("/crash"), "events": ["role.created"]}}});
    let created = post(node.port, &token, "/api/webhooks", webhook).await.expect("create webhook");
    assert!(created["data"]["id"].is_string(), "{created}");

    // The burst: 1,000 changes; the process is killed once 400 were answered.
    const BURST: usize = 1000;
    let answered = Arc::new(AtomicUsize::new(0));
    let burst = {
        let (nodes, answered) = (vec![(node.port, token.clone())], answered.clone());
        tokio::spawn(async move { create_roles(&nodes, "burst", BURST, answered).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::SeqCst) < 400 {
        assert!(Instant::now() < deadline, "400 changes not made within 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    node.child.start_kill().expect("SIGKILL portcullis");
    node.child.wait().await.expect("reap portcullis");
    let before_kill = burst.await.expect("burst");
    let node = serve(&database, &master_key).await;
    let token = admin_token(&node, &admin).await;
    let answered = Arc::new(AtomicUsize::new(before_kill));
    create_roles(&[(node.port, token)], "after", BURST, answered).await;

    let db = Db::connect(&database.url).await.expect("connect");
    let committed = committed_roles(&db).await;
    assert!(committed.len() >= BURST, "{} committed", committed.len());
    let delivered = delivered_roles(&receiver, &committed).await;
    drop(node);
    let repeats: u64 = delivered.values().map(|(_, n)| n - 1).sum();
    println!(
        "{backend:?}: {} changes committed around a SIGKILL, each delivered, {repeats} repeats (same webhook-id)",
        committed.len()
    );
}

async fn two_processes_deliver_each_event_once(backend: Backend) {
    let Some((database, master_key, admin)) = installation(backend).await else { return };
    let receiver = crate::webhooks::receiver::Receiver::start().await;
    let first = serve(&database, &master_key).await;
    let second = serve(&database, &master_key).await;
    let nodes = vec![
        (first.port, admin_token(&first, &admin).await),
        (second.port, admin_token(&second, &admin).await),
    ];
    let webhook = json!({"data": {"type": "webhook", "attributes":
        {"name": "pair", "url": receiver.url("/pair"), "events": ["role.*"]}}});
    let created = post(first.port, &nodes[0].1, "/api/webhooks", webhook).await.expect("create webhook");
    let webhook_id = created["data"]["id"].as_str().expect("webhook id").to_owned();
    create_roles(&nodes, "pair", 500, Arc::new(AtomicUsize::new(0))).await;
    let db = Db::connect(&database.url).await.expect("connect");
    let committed = committed_roles(&db).await;
    assert!(committed.len() >= 500, "{} committed", committed.len());
    let delivered = delivered_roles(&receiver, &committed).await;
    // Both processes claim; a claimed delivery is no one else's. (A late
    // repeat would show within the second.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let twice: Vec<_> = delivered.iter().filter(|(_, (_, n))| *n > 1).map(|(id, _)| id).collect();
    assert!(twice.is_empty(), "delivered twice without a crash: {twice:?}");

    // The console view agrees, once every outcome is written.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listing = loop {
        let listing = run(&database, &master_key, &["webhooks", "--env", "acme-test"]).await;
        if listing.contains(&format!("{webhook_id} yes"))
            && listing.contains(&format!(" 0       0 {:>10}", committed.len()))
        {
            break listing;
        }
        assert!(Instant::now() < deadline, "portcullis webhooks:\n{listing}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(listing.contains("events: role.*"), "{listing}");
    let log = run(
        &database,
        &master_key,
        &["webhooks", "--env", "acme-test", "--deliveries", &webhook_id, "--limit", "3"],
    )
    .await;
    assert_eq!(
        log.lines().filter(|line| line.contains("delivered") && line.contains("role.created")).count(),
        3,
        "{log}"
    );
    drop((first, second));
}

mod webhook_deliveries_are_neither_lost_nor_invented_when_the_process_is_killed {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        webhooks_survive_a_kill(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        webhooks_survive_a_kill(Backend::Postgres).await;
    }
}

mod two_processes_deliver_each_webhook_event_once {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        two_processes_deliver_each_event_once(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        two_processes_deliver_each_event_once(Backend::Postgres).await;
    }
}
