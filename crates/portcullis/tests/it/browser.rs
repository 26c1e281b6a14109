//! The browser acceptance tests: Debian's Chromium, driven by playwright-core.
//! - `e2e/signin.mjs` signs a new user up on the hosted pages, confirms the
//!   address from the dev outbox, signs in to a small relying party built on
//!   openid-client (`e2e/rp.mjs`), consents, and the RP receives, refreshes
//!   and uses tokens, then signs out through RP-initiated logout.
//! - `e2e/invitation.mjs` follows an invitation mail's link, signs up on the
//!   invitation page, accepts, and signs in to the RP for the organization:
//!   every token carries `org_id` and the membership's role.
//!
//! Needs `node`, Chromium (`CHROMIUM`, default `/usr/bin/chromium`) and
//! `npm ci` in `e2e/`; `.ci/run` provides all three. Without them the test
//! says it is skipped, unless `PORTCULLIS_REQUIRE_BROWSER=1`, when it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{create_role, id_of};
use crate::db_test;
use crate::harness::{Creds, free_port};
use crate::signin::support::create_client;

const REQUIRE_ENV: &str = "PORTCULLIS_REQUIRE_BROWSER";
const EMAIL: &str = "ada.browser@example.com";
const PASSWORD: &str = "Tangerine-Kite-47";
/// The whole browser run, a bit above `signin.mjs`'s own limit.
const TIMEOUT: Duration = Duration::from_secs(120);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing to run the browser test, if anything.
fn missing_prerequisite() -> Option<String> {
    match std::process::Command::new("node").arg("--version").output() {
        Ok(output) if output.status.success() => {}
        _ => return Some("`node` is not on PATH".into()),
    }
    if !chromium().is_file() {
        return Some(format!("no Chromium at {} (set CHROMIUM)", chromium().display()));
    }
    let modules = e2e_dir().join("node_modules");
    for package in ["playwright-core", "openid-client", "undici"] {
        if !modules.join(package).join("package.json").is_file() {
            return Some(format!("{} has no {package}: run `npm ci` in e2e/", modules.display()));
        }
    }
    None
}

/// `true` when the test may run; otherwise says why it is skipped (or
/// fails, when the browser is required).
fn browser_available() -> bool {
    let Some(missing) = missing_prerequisite() else {
        return true;
    };
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("the browser test cannot run ({REQUIRE_ENV}=1): {missing}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "NOTE: browser test SKIPPED: {missing} (set {REQUIRE_ENV}=1 to make this an error)"
    );
    false
}

/// Runs `node e2e/{script}` with the provider's and the RP's settings and
/// `env`; fails the test with the script's output unless it passes.
async fn run_scenario(
    server: &crate::harness::TestServer,
    script: &str,
    rp_port: u16,
    client: &Creds,
    env: &[(&str, &str)],
) {
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(e2e_dir())
        .env("ISSUER", server.issuer("acme-test"))
        .env("SERVER_PORT", server.port.to_string())
        .env("RP_PORT", rp_port.to_string())
        .env("CLIENT_ID", &client.client_id)
        .env("CLIENT_SECRET", &client.client_secret)
        .env("OUTBOX_DIR", server.outbox_dir())
        .env("CHROMIUM", chromium())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start node e2e/{script}: {e}"));
    // Awaited asynchronously: the server under test runs on this runtime.
    let Ok(output) = tokio::time::timeout(TIMEOUT, child.wait_with_output()).await else {
        panic!("{script} did not finish within {TIMEOUT:?} (node was killed)");
    };
    let output = output.expect("wait for node");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let status = output.status;
    let elapsed = started.elapsed();
    assert!(
        status.success(),
        "{script} failed ({status}, after {elapsed:.1?}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    println!("{script} on {:?} took {elapsed:.1?}:\n{stdout}{stderr}", server.backend);
}

/// A confidential, third-party client (so consent is asked) of an RP on
/// `rp_port`, with `attributes` on top.
async fn rp_client(
    server: &crate::harness::TestServer,
    admin: &str,
    rp_port: u16,
    attributes: Value,
) -> Creds {
    let rp = format!("http://127.0.0.1:{rp_port}");
    let mut body = json!({
        "name": "Browser Test RP",
        "redirect_uris": [format!("{rp}/callback")],
        "post_logout_redirect_uris": [format!("{rp}/signed-out")],
    });
    for (name, value) in attributes.as_object().cloned().unwrap_or_default() {
        body[name] = value;
    }
    let client = create_client(server, admin, body).await;
    assert!(!client.creds.client_secret.is_empty(), "a confidential client has a secret");
    client.creds
}

db_test!(a_new_user_signs_up_and_in_to_a_relying_party_in_chromium, |server| {
    if !browser_available() {
        return;
    }
    let admin = server.admin_token().await;
    let rp_port = free_port();
    let client = rp_client(&server, &admin, rp_port, json!({})).await;
    run_scenario(&server, "signin.mjs", rp_port, &client, &[("EMAIL", EMAIL), ("PASSWORD", PASSWORD)]).await;

    // What the browser did is in the database too.
    let verified = server
        .count(&format!("SELECT COUNT(*) FROM users WHERE email = '{EMAIL}' AND email_verified = TRUE"))
        .await;
    assert_eq!(verified, 1, "the signed-up user exists with a confirmed address");
});

db_test!(an_invited_person_joins_and_signs_in_to_the_organization_in_chromium, |server| {
    if !browser_available() {
        return;
    }
    const INVITED: &str = "grace.browser@example.com";
    let admin = server.admin_token().await;
    let organization = server
        .create(&admin, "/api/organizations", "organization", json!({"name": "Acme Corp"}), Value::Null)
        .await;
    let org_id = id_of(&organization);
    let slug = organization["data"]["attributes"]["slug"].as_str().unwrap().to_owned();
    assert_eq!(slug, "acme-corp");
    let role = create_role(&server, &admin, "billing-admin").await;
    server
        .create(
            &admin,
            "/api/invitations",
            "invitation",
            json!({"email": INVITED, "role_ids": [role]}),
            json!({"organization": {"data": {"type": "organization", "id": org_id}}}),
        )
        .await;
    let rp_port = free_port();
    let client = rp_client(&server, &admin, rp_port, json!({"organization_usage": "require"})).await;
    run_scenario(
        &server,
        "invitation.mjs",
        rp_port,
        &client,
        &[
            ("EMAIL", INVITED),
            ("PASSWORD", PASSWORD),
            ("ORG_ID", &org_id),
            ("ORG_NAME", "Acme Corp"),
            ("ORG_SLUG", &slug),
            ("ROLE", "billing-admin"),
        ],
    )
    .await;

    // The membership and its role, once; the invitation is spent.
    let sql = format!(
        "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id \
         JOIN membership_roles r ON r.membership_id = m.id WHERE u.email = '{INVITED}' AND m.organization_id = '{org_id}'"
    );
    assert_eq!(server.count(&sql).await, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM invitations WHERE status = 'accepted'").await, 1);
});
