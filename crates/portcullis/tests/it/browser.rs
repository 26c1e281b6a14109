//! The browser acceptance test: Debian's Chromium, driven by playwright-core
//! (`e2e/signin.mjs`), signs a new user up on the hosted pages, confirms the
//! address from the dev outbox, signs in to a small relying party built on
//! openid-client (`e2e/rp.mjs`), consents, and the RP receives, refreshes
//! and uses tokens, then signs out through RP-initiated logout.
//!
//! Needs `node`, Chromium (`CHROMIUM`, default `/usr/bin/chromium`) and
//! `npm ci` in `e2e/`; `.ci/run` provides all three. Without them the test
//! says it is skipped, unless `PORTCULLIS_REQUIRE_BROWSER=1`, when it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::db_test;
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

/// A loopback port free right now (the RP binds it moments later).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

db_test!(a_new_user_signs_up_and_in_to_a_relying_party_in_chromium, |server| {
    if !browser_available() {
        return;
    }
    let admin = server.admin_token().await;
    let rp_port = free_port();
    let rp = format!("http://127.0.0.1:{rp_port}");
    // A confidential, third-party client (so consent is asked).
    let client = create_client(
        &server,
        &admin,
        json!({
            "name": "Browser Test RP",
            "redirect_uris": [format!("{rp}/callback")],
            "post_logout_redirect_uris": [format!("{rp}/signed-out")],
        }),
    )
    .await;
    assert!(!client.creds.client_secret.is_empty(), "a confidential client has a secret");

    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg("signin.mjs")
        .current_dir(e2e_dir())
        .env("ISSUER", server.issuer("acme-test"))
        .env("SERVER_PORT", server.port.to_string())
        .env("RP_PORT", rp_port.to_string())
        .env("CLIENT_ID", &client.creds.client_id)
        .env("CLIENT_SECRET", &client.creds.client_secret)
        .env("OUTBOX_DIR", server.outbox_dir())
        .env("EMAIL", EMAIL)
        .env("PASSWORD", PASSWORD)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node e2e/signin.mjs");
    // Awaited asynchronously: the server under test runs on this runtime.
    let Ok(output) = tokio::time::timeout(TIMEOUT, child.wait_with_output()).await else {
        panic!("the browser test did not finish within {TIMEOUT:?} (node was killed)");
    };
    let output = output.expect("wait for node");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let status = output.status;
    let elapsed = started.elapsed();
    assert!(
        status.success(),
        "the browser test failed ({status}, after {elapsed:.1?}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    println!("browser run on {:?} took {elapsed:.1?}:\n{stdout}{stderr}", server.backend);

    // What the browser did is in the database too.
    let verified = server
        .count(&format!("SELECT COUNT(*) FROM users WHERE email = '{EMAIL}' AND email_verified = TRUE"))
        .await;
    assert_eq!(verified, 1, "the signed-up user exists with a confirmed address");
});
