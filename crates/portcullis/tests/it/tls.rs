//! Certificates for custom domains, both documented ways:
//! - behind Caddy (Debian's `caddy`) with on-demand TLS, whose `ask` hook is
//!   Portcullis's `/tls/ask`: Caddy gets a certificate from its internal CA
//!   for an active custom domain and proxies to the environment, and refuses
//!   a name Portcullis does not serve;
//! - built in: the ACME client against Let's Encrypt's test server (Debian's
//!   `pebble`), with HTTP-01, and the TLS listener serving what it obtained.
//!
//! Without the programs the tests say they are skipped, unless
//! `PORTCULLIS_REQUIRE_TLS_TOOLS=1` (as in `.ci/run`), when they fail.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::id_of;
use crate::dns::TestDns;
use crate::harness::{Backend, TestServer};
use crate::resources::support::doc;

const REQUIRE_ENV: &str = "PORTCULLIS_REQUIRE_TLS_TOOLS";
const DOMAIN: &str = "auth.customer.test";

/// `true` when `program` is on PATH; otherwise says the test is skipped
/// (or fails, when the tools are required).
fn tool_available(program: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("`{program}` is not installed and {REQUIRE_ENV}=1");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "NOTE: TLS test SKIPPED: `{program}` is not installed (apt-get install {program}; \
         set {REQUIRE_ENV}=1 to make this an error)"
    );
    false
}

/// A loopback port free right now (a child process binds it moments later).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Creates `domain` in the test environment, publishes its CNAME and
/// verifies it: the domain is active when this returns.
pub async fn activate(server: &TestServer, dns: &TestDns, domain: &str) -> String {
    let admin = server.admin_token().await;
    let (status, body) = server
        .api(
            Method::POST,
            "/api/custom-domains",
            &admin,
            Some(doc("custom_domain", json!({"domain": domain}))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = id_of(&body);
    dns.set_cname(domain, "acme-test.localhost");
    let (status, body) =
        server.api(Method::POST, &format!("/api/custom-domains/{id}/verify"), &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "active", "{body}");
    id
}

/// `curl --cacert {ca} https://{host}:{port}{path}` with `host` sent to
/// loopback: the body on success, curl's exit code and message otherwise.
async fn curl(ca: &Path, host: &str, port: u16, path: &str) -> Result<String, String> {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .await
        .expect("run curl");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr)))
    }
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.is_file() {
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The README's Caddyfile, on test ports, with Caddy's internal CA standing
/// in for a public one.
fn caddyfile(http_port: u16, https_port: u16, portcullis_port: u16) -> String {
    format!(
        "{{
	admin off
	local_certs
	skip_install_trust
	http_port {http_port}
	https_port {https_port}
	on_demand_tls {{
		ask http://127.0.0.1:{portcullis_port}/tls/ask
	}}
}}

https:// {{
	tls {{
		on_demand
	}}
	reverse_proxy 127.0.0.1:{portcullis_port}
}}
"
    )
}

async fn behind_caddy(backend: Backend) {
    if !tool_available("caddy") {
        return;
    }
    let dns = TestDns::start().await;
    let https_port = free_port();
    let dns_address = dns.addr;
    let configured = TestServer::start_configured(backend, |config| {
        config.dns.servers = vec![dns_address];
        // Issuers name the proxy's scheme and port, as in production.
        config.public_scheme = "https".into();
        config.public_port = Some(https_port);
    })
    .await;
    let Some(server) = configured else { return };

    // The ask hook on its own: default hosts and active domains only.
    let ask = |domain: &str| {
        server.http.get(format!("http://127.0.0.1:{}/tls/ask?domain={domain}", server.port)).send()
    };
    assert_eq!(ask(DOMAIN).await.unwrap().status(), StatusCode::NOT_FOUND, "not created yet");
    assert_eq!(ask("acme-test.localhost").await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask("no-such-env.localhost").await.unwrap().status(), StatusCode::NOT_FOUND);
    let missing = server.http.get(format!("http://127.0.0.1:{}/tls/ask", server.port)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    activate(&server, &dns, DOMAIN).await;
    assert_eq!(ask(DOMAIN).await.unwrap().status(), StatusCode::OK);
    assert_eq!(ask(&DOMAIN.to_uppercase()).await.unwrap().status(), StatusCode::OK);

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("Caddyfile");
    std::fs::write(&config, caddyfile(free_port(), https_port, server.port)).unwrap();
    let mut caddy = tokio::process::Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start caddy");
    wait_for_port(https_port).await;
    let root: PathBuf = dir.path().join("data/caddy/pki/authorities/local/root.crt");

    // The first handshake makes Caddy ask, then issue from its local CA.
    let first = curl(&root, DOMAIN, https_port, "/.well-known/openid-configuration").await;
    wait_for_file(&root).await;
    let discovery = match first {
        Ok(body) => body,
        Err(_) => curl(&root, DOMAIN, https_port, "/.well-known/openid-configuration")
            .await
            .expect("discovery over HTTPS through Caddy"),
    };
    let discovery: Value = serde_json::from_str(&discovery).expect("discovery is JSON");
    let issuer = format!("https://{DOMAIN}:{https_port}");
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/oauth/token").as_str());

    // The default host gets its certificate the same way.
    let default_host = curl(&root, "acme-test.localhost", https_port, "/.well-known/openid-configuration")
        .await
        .expect("the default host through Caddy");
    assert!(default_host.contains(&format!("https://acme-test.localhost:{https_port}")), "{default_host}");

    // A name Portcullis does not serve gets no certificate: the handshake fails.
    assert_eq!(ask("unknown.customer.test").await.unwrap().status(), StatusCode::NOT_FOUND);
    let refused = curl(&root, "unknown.customer.test", https_port, "/.well-known/openid-configuration").await;
    let error = refused.expect_err("Caddy must not get a certificate for an unknown name");
    assert!(error.contains("35") || error.to_ascii_lowercase().contains("ssl"), "{error}");

    caddy.start_kill().ok();
    let mut log = String::new();
    if let Some(mut stderr) = caddy.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut log)).await;
    }
    // Caddy obtained certificates for the two served names, and, told no by
    // the ask hook, never tried for the unknown one.
    let obtained = |name: &str| {
        log.lines().any(|line| line.contains("certificate obtained") && line.contains(&format!("\"{name}\"")))
    };
    assert!(obtained(DOMAIN) && obtained("acme-test.localhost"), "{log}");
    assert!(
        !log.lines().any(|line| line.contains("obtaining") && line.contains("unknown.customer.test")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_on_demand_tls_asks_portcullis_sqlite() {
    behind_caddy(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_on_demand_tls_asks_portcullis_postgres() {
    behind_caddy(Backend::Postgres).await;
}

crate::db_test!(
    the_ask_hook_ignores_the_default_environment_fallback,
    config = |config: &mut portcullis_core::CoreConfig| {
        config.default_environment = Some("acme-test".into());
    },
    |server| {
        let base = format!("http://127.0.0.1:{}", server.port);
        // Any host reaches the default environment...
        let discovery = server
            .http
            .get(format!("{base}/.well-known/openid-configuration"))
            .header("host", "anything.example")
            .send()
            .await
            .unwrap();
        assert_eq!(discovery.status(), StatusCode::OK);
        // ...but only names Portcullis serves as such may get certificates,
        // or anyone pointing a name here would spend the CA's rate limit.
        for (domain, expected) in [
            ("anything.example", StatusCode::NOT_FOUND),
            ("acme-test.localhost", StatusCode::OK),
            ("acme-test.localhost.", StatusCode::OK),
            ("localhost", StatusCode::NOT_FOUND),
            ("a.b.localhost", StatusCode::NOT_FOUND),
        ] {
            let answer = server.http.get(format!("{base}/tls/ask?domain={domain}")).send().await.unwrap();
            assert_eq!(answer.status(), expected, "{domain}");
        }
    }
);
